"""The cloud bridge beside a line: the cloud target URL, and the bridge's configuration rendered from the PlantLine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plantline.bridge.config import BridgeConfig
from plantline.operator.api import PlantLine, PlantLineInvalid, parse_plantline
from plantline.operator.cloud import (
    CloudTargetInvalid,
    cloud_target,
    equipment_types,
    parse_cloud_url,
    render_bridge_config,
    spec_settings,
)
from plantline.operator.emqx_model import LineRef, desired_state
from plantline.operator.render import render_acl, render_certificate_requests, render_connector_configs


def test_a_kafka_url_names_the_endpoint_credentials_file_and_options() -> None:
    target = parse_cloud_url(
        "kafka://bridge@127.0.0.1:9093?password_file=/run/pw&ca=/tls/ca.pem&topic_prefix=plant&partitions=6&linger_ms=50"
    )
    assert target.endpoint == "127.0.0.1:9093"
    assert target.topic("filler") == "plant.filler"
    assert target.kafka == {
        "bootstrap_servers": "127.0.0.1:9093",
        "security_protocol": "SASL_SSL",
        "dlq_topic": "plant.deadletter",
        "ca_file": "/tls/ca.pem",
        "sasl": {"mechanism": "PLAIN", "username": "bridge", "password_file": "/run/pw"},
        "create_topics_partitions": 6,
        "producer": {"compression": "lz4", "linger_ms": 50},
    }


def test_a_plain_kafka_url_is_plaintext_and_event_hubs_is_sasl_ssl_plain_with_the_connection_string() -> None:
    assert parse_cloud_url("kafka://localhost:9092").kafka["security_protocol"] == "PLAINTEXT"
    hubs = parse_cloud_url("eventhubs://plant.servicebus.windows.net?password_file=/run/cs")
    assert hubs.endpoint == "plant.servicebus.windows.net:9093"
    assert hubs.kafka["sasl"] == {"mechanism": "PLAIN", "username": "$ConnectionString", "password_file": "/run/cs"}
    assert hubs.kafka["producer"]["compression"] == "gzip", "Event Hubs' Kafka endpoint takes gzip only"
    assert "create_topics_partitions" not in hubs.kafka, "the cloud stack makes the hubs"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://bridge:s3cr3t@k:9093", "a password does not go in the URL"),
        ("http://k:9093", "expected kafka:// or eventhubs://"),
        ("kafka://k:9093?linger=5", "unknown option"),
        ("kafka://k:9093?partitions=many", "partitions: 'many' is not a whole number"),
        ("eventhubs://plant.servicebus.windows.net", "needs password_file"),
        ("kafka://?security=SSL", "no host"),
    ],
)
def test_unusable_urls_are_refused_saying_why(url: str, message: str) -> None:
    with pytest.raises(CloudTargetInvalid, match=message) as caught:
        parse_cloud_url(url)
    assert "s3cr3t" not in str(caught.value)


def test_the_rendered_config_is_the_bridges_with_a_topic_per_equipment_type(demo: PlantLine, tmp_path: Path) -> None:
    data = demo.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["machines"][0]["equipmentType"] = "bottling"
    data["spec"]["machines"][1]["equipmentType"] = "bottling"
    line = PlantLine.model_validate(data)
    target = parse_cloud_url("kafka://127.0.0.1:9092")
    config = BridgeConfig.model_validate(
        render_bridge_config(line, target, tls_dir=tmp_path, status_file=tmp_path / "s.json", health_port=9999)
    )
    assert equipment_types(line) == {"filler": "bottling", "capper": "bottling", "labeler": "labeler"}
    assert config.topics == {"bottling": "plantline.bottling", "labeler": "plantline.labeler"}
    assert config.mqtt.client_id == "site1-line1-bridge"
    assert config.mqtt.brokers[0].tls is not None
    assert config.mqtt.brokers[0].tls.cert_file == tmp_path / "site1-line1-host.crt"
    connectors = render_connector_configs(line, tls_dir=tmp_path, data_dir=tmp_path).values()
    (route,) = config.lines
    assert set(route.edge_node_ids) == {c.sparkplug.edge_node_id for c in connectors}
    assert (route.site, route.line, route.group_id) == ("site1", "line1", "site1")
    assert config.health.port == 9999
    assert config.kafka.create_topics_partitions == 3


def test_up_with_a_cloud_target_prepares_the_bridge_as_a_host_with_the_host_identity(
    demo: PlantLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plantline.operator import local

    monkeypatch.setattr(local, "postgres_bin", lambda: None)  # no historian: the bridge alone needs the identity
    target = parse_cloud_url("kafka://bridge@127.0.0.1:9093?password_file=/run/pw")
    line = local.LocalLine(demo, local.Layout(tmp_path / "state"), simulate=True, metrics_base_port=9400,
                           cloud=target, bridge_port=9555)  # fmt: skip
    line.prepare()
    (bridge,) = [c for c in line.hosts if c.name == "bridge"]
    assert bridge.argv[1:4] == ["-m", "plantline.bridge", "run"]
    assert bridge.listen == ("127.0.0.1", 9555)
    written = yaml.safe_load((tmp_path / "state" / "bridge" / "bridge.yaml").read_text())
    config = BridgeConfig.model_validate(written)
    assert config.mqtt.brokers[0].tls is not None
    assert config.mqtt.brokers[0].tls.cert_file.exists(), "the host identity is issued for the bridge"
    assert "user site1-line1-host" in (tmp_path / "state" / "broker" / "acl").read_text()
    assert line.bridge_status() == {"kafka": "127.0.0.1:9093", "mqtt": "starting"}


# -- one target for both doors: the URL of `up --cloud` and the operator's spec.cloud ---------------


def _with_cloud(demo: PlantLine, cloud: dict[str, object]) -> PlantLine:
    data = demo.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["cloud"] = cloud
    return PlantLine.model_validate(data)


def test_an_event_hubs_url_and_spec_cloud_make_the_same_target_the_cloud_stack_feeds(demo: PlantLine) -> None:
    url = parse_cloud_url("eventhubs://plant-1-ingest.servicebus.windows.net?password_file=/run/cs")
    line = _with_cloud(demo, {"eventHubsNamespace": "plant-1-ingest",
                              "credentialsSecretRef": {"name": "eventhubs", "key": "connection-string"}})  # fmt: skip
    assert line.spec.cloud is not None
    spec = cloud_target(spec_settings(line.spec.cloud, password_file=Path("/run/cs"), ca_file=None))
    assert spec == url
    # the hubs stacks/cloud makes: `<type>-equipment` per equipment type and `dead-letter`
    assert spec.topic("filler") == "filler-equipment"
    assert spec.kafka["dlq_topic"] == "dead-letter"
    assert spec.kafka["bootstrap_servers"] == "plant-1-ingest.servicebus.windows.net:9093"


def test_a_kafka_url_and_spec_cloud_with_the_same_settings_make_the_same_target(demo: PlantLine) -> None:
    url = parse_cloud_url(
        "kafka://bridge@k0:9093,k1:9093?mechanism=SCRAM-SHA-512&password_file=/s/pw&ca=/s/ca.crt"
        "&topic_prefix=plant&partitions=6&compression=zstd"
    )
    line = _with_cloud(demo, {"bootstrapServers": ["k0:9093", "k1:9093"], "saslMechanism": "SCRAM-SHA-512",
                              "username": "bridge", "credentialsSecretRef": {"name": "kafka", "key": "password"},
                              "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"}, "partitions": 6,
                              "compression": "zstd", "topics": {"prefix": "plant"}})  # fmt: skip
    assert line.spec.cloud is not None
    settings = spec_settings(line.spec.cloud, password_file=Path("/s/pw"), ca_file=Path("/s/ca.crt"))
    assert cloud_target(settings) == url
    assert url.kafka["sasl"] == {"mechanism": "SCRAM-SHA-512", "username": "bridge", "password_file": "/s/pw"}


def test_topic_naming_is_chosen_and_the_cloud_stacks_hubs_output_overrides_it(demo: PlantLine) -> None:
    assert parse_cloud_url("kafka://k:9092?naming=eventhubs").topic("filler") == "filler-equipment"
    hubs = parse_cloud_url("eventhubs://ns.servicebus.windows.net?password_file=/f&naming=prefixed&dlq=dlq")
    assert (hubs.topic("filler"), hubs.kafka["dlq_topic"]) == ("plantline.filler", "dlq")
    topics = {"naming": "eventHubs", "byEquipmentType": {"capper": "capping-hub"}}
    line = _with_cloud(demo, {"bootstrapServers": ["k:9092"], "topics": topics})
    assert line.spec.cloud is not None
    target = cloud_target(spec_settings(line.spec.cloud, password_file=None, ca_file=None))
    assert (target.topic("capper"), target.topic("labeler")) == ("capping-hub", "labeler-equipment")
    with pytest.raises(CloudTargetInvalid, match="naming: 'hubs': expected eventhubs or prefixed"):
        parse_cloud_url("kafka://k:9092?naming=hubs")


def test_a_cloud_line_grants_the_host_identity_in_mosquitto_and_emqx(demo: PlantLine) -> None:
    line = _with_cloud(demo, {"bootstrapServers": ["k:9092"]})
    assert "user site1-line1-host" not in render_acl(demo)
    acl = render_acl(line)
    assert "user site1-line1-host" in acl
    host_rules = acl.split("user site1-line1-host")[1].split("\n\n")[0]
    assert "topic read spBv1.0/site1/+/" in host_rules, "the bridge subscribes to the line's edge nodes"
    ref = LineRef("plantline", "site1-line1")
    assert "site1-line1-host" not in desired_state(demo, ref, None).users
    assert "site1-line1-host" in desired_state(line, ref, None).users
    assert "site1-line1-host" in {r.identity for r in render_certificate_requests(line)}


def test_a_connector_group_named_cloud_bridge_clashes_with_the_bridge(demo: PlantLine) -> None:
    data = demo.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["cloud"] = {"bootstrapServers": ["k:9092"]}
    data["spec"]["line"] = "cloud-bridge"
    data["spec"]["connectors"] = {"grouping": "perLine"}
    with pytest.raises(PlantLineInvalid, match=r"spec\.connectors: a connector group named 'cloud-bridge' clashes"):
        parse_plantline(data)


@pytest.mark.parametrize("cloud", [True, False])
def test_up_with_monitoring_scrapes_the_bridge_and_loads_its_rules_only_with_a_cloud_target(
    demo: PlantLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: bool
) -> None:
    from plantline.operator import local
    from plantline.operator.monitoring import Monitoring

    monkeypatch.setattr(local, "postgres_bin", lambda: None)
    monkeypatch.setattr(local, "find_prometheus", lambda: "/usr/bin/prometheus")  # not started here
    target = parse_cloud_url("kafka://127.0.0.1:9093") if cloud else None
    line = local.LocalLine(demo, local.Layout(tmp_path / "state"), simulate=True, metrics_base_port=9400,
                           monitoring=Monitoring(19090), cloud=target, bridge_port=9555)  # fmt: skip
    line.prepare()
    monitoring = tmp_path / "state" / "monitoring"
    jobs = yaml.safe_load((monitoring / "prometheus.yml").read_text())["scrape_configs"]
    bridge = [job["static_configs"][0] for job in jobs if job["job_name"].endswith("-bridge")]
    alerts = {
        r.get("alert") for g in yaml.safe_load((monitoring / "rules.yml").read_text())["groups"] for r in g["rules"]
    }
    if cloud:
        assert bridge == [
            {"targets": ["127.0.0.1:9555"], "labels": {"site": "site1", "line": "line1", "component": "bridge"}}
        ]
        assert "PlantLineCloudBridgeDown" in alerts
    else:
        assert bridge == []
        assert not any(str(a).startswith("PlantLineCloudBridge") for a in alerts)
