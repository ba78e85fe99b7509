"""The pure renderers: connector configs, certificate requests, mosquitto.conf, ACL, bridge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors.config import ConnectorConfig, ReconnectSettings, parse_config
from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.render import (
    BrokerFiles,
    CertificateRequest,
    connector_config_data,
    render_acl,
    render_bridge,
    render_certificate_requests,
    render_connector_configs,
    render_mosquitto_conf,
    render_opcua_server_certificates,
)

from .certificates import self_signed_pem

DemoData = Callable[[], dict[str, Any]]
TLS = Path("/etc/plantline/tls")
DATA = Path("/var/lib/plantline")


def test_one_connector_config_per_machine(demo: PlantLine) -> None:
    configs = render_connector_configs(demo, tls_dir=TLS, data_dir=DATA, metrics_base_port=9500)
    assert list(configs) == ["capper", "filler", "labeler"]
    filler = configs["filler"]
    assert filler.sparkplug.group_id == "site1"
    assert filler.sparkplug.edge_node_id == "line1-filler"
    assert filler.brokers[0].tls is not None
    assert filler.brokers[0].tls.cert_file == TLS / "site1-line1-filler.crt"
    assert filler.brokers[0].tls.ca_file == TLS / "ca.crt"
    assert filler.outbox.directory == DATA / "filler" / "outbox"
    assert filler.state_directory == DATA / "filler" / "state"
    assert [c.metrics_port for c in configs.values()] == [9500, 9501, 9502]
    assert filler.devices[0].sampling_interval_ms == 500
    assert filler.devices[0].kpi.ideal_cycle_s == 0.5
    assert filler.shifts is not None


def test_rendered_yaml_is_a_valid_connector_config(demo: PlantLine) -> None:
    for group, config in render_connector_configs(demo, tls_dir=TLS, data_dir=DATA).items():
        text = yaml.safe_dump(connector_config_data(config), sort_keys=False)
        assert parse_config(yaml.safe_load(text), source=group) == config


def test_per_line_grouping_makes_the_line_one_edge_node(demo_data: DemoData) -> None:
    data = demo_data()
    del data["spec"]["connectors"]  # perLine is the default
    line = parse_plantline(data)
    configs = render_connector_configs(line, tls_dir=TLS, data_dir=DATA)
    assert list(configs) == ["line1"]
    (config,) = configs.values()
    assert config.sparkplug.edge_node_id == "line1"  # docs/architecture.md: edge_node_id = the line
    assert [d.id for d in config.devices] == ["filler", "capper", "labeler"]
    acl = render_acl(line)
    assert "topic write spBv1.0/site1/NBIRTH/line1" in acl
    assert "line1-filler" not in acl


def test_every_connector_of_the_line_gets_its_uint32_field(demo: PlantLine, demo_data: DemoData) -> None:
    default = render_connector_configs(demo, tls_dir=TLS, data_dir=DATA)
    assert {c.sparkplug.uint32_field for c in default.values()} == {"int_value"}
    data = demo_data()
    data["spec"]["uint32Field"] = "long_value"
    configs = render_connector_configs(parse_plantline(data), tls_dir=TLS, data_dir=DATA)
    assert len(configs) == 3
    assert all(connector_config_data(c)["sparkplug"]["uint32_field"] == "long_value" for c in configs.values())


def test_every_connector_of_the_line_gets_what_to_do_when_its_host_goes_offline(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"] |= {"primaryHostId": "scada", "primaryHostOffline": "hold"}
    configs = render_connector_configs(parse_plantline(data), tls_dir=TLS, data_dir=DATA)
    assert len(configs) == 3
    assert all(connector_config_data(c)["sparkplug"]["primary_host_offline"] == "hold" for c in configs.values())


def test_per_protocol_grouping(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["machines"].append(
        {"id": "palletizer", "protocol": "s7", "endpoint": "s7://10.0.0.9",
         "tags": [{"signal": "state.run", "address": "DB1.DBX0.0", "datatype": "bool"}]}
    )  # fmt: skip
    data["spec"]["connectors"] = {"grouping": "perProtocol"}
    configs = render_connector_configs(parse_plantline(data), tls_dir=TLS, data_dir=DATA)
    assert list(configs) == ["cip", "opcua", "s7"]
    assert [d.id for d in configs["s7"].devices] == ["capper", "palletizer"]
    assert isinstance(configs["s7"], ConnectorConfig)


def test_a_tag_keeps_its_own_sampling_interval(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["machines"][1]["tags"][0]["samplingInterval"] = 0.1
    configs = render_connector_configs(parse_plantline(data), tls_dir=TLS, data_dir=DATA)
    device = configs["capper"].devices[0]
    assert device.sampling_interval_ms == 1000
    assert [t.sampling_interval_ms for t in device.tags[:2]] == [100, None]
    assert device.interval_of(device.tags[0]) == 100


def test_certificate_requests(demo: PlantLine) -> None:
    assert render_certificate_requests(demo) == [
        CertificateRequest("site1-line1-capper", "mqtt-client", (), 90, 30, "connector"),
        CertificateRequest("site1-line1-filler", "mqtt-client", (), 90, 30, "connector"),
        CertificateRequest("site1-line1-labeler", "mqtt-client", (), 90, 30, "connector"),
        CertificateRequest("site1-line1-broker", "mqtt-server", ("ip:127.0.0.1",), None, 30, "broker"),
        CertificateRequest("site1-line1-reader", "mqtt-client", (), 90, 30, "reader"),
    ]


def test_a_primary_host_gets_a_client_certificate(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    data["spec"]["broker"]["bridge"] = {"host": "core.example.com"}
    requests = render_certificate_requests(parse_plantline(data))
    assert [(r.identity, r.role) for r in requests[3:]] == [
        ("site1-line1-broker", "broker"),
        ("site1-line1-reader", "reader"),
        ("site1-line1-host", "host"),
        ("site1-line1-bridge", "bridge"),
    ]
    host = requests[5]
    assert (host.profile, host.sans, host.validity_days, host.renew_before_days) == ("mqtt-client", (), 90, 30)
    assert host.to_json()["role"] == "host"


def test_secured_opcua_machine_gets_an_application_certificate(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["machines"][0]["opcua"] = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}
    data["spec"]["broker"] = {"host": "broker.site1.local", "bridge": {"host": "core.example.com"}}
    line = parse_plantline(data)
    requests = {r.identity: r for r in render_certificate_requests(line)}
    assert requests["site1-line1-filler-ua"].profile == "opcua-application"
    assert requests["site1-line1-filler-ua"].sans == ("uri:urn:plantline:site1:line1:filler",)
    assert requests["site1-line1-broker"].sans == ("dns:broker.site1.local",)
    assert requests["site1-line1-bridge"].profile == "mqtt-client"
    device = render_connector_configs(line, tls_dir=TLS, data_dir=DATA)["filler"].devices[0]
    assert device.opcua.certificate_file == TLS / "site1-line1-filler-ua.crt"
    assert device.opcua.private_key_file == TLS / "site1-line1-filler-ua.key"
    # The server is checked against the line's OPC UA CA and its CRL; nothing is accepted unverified.
    assert device.opcua.application_uri == "urn:plantline:site1:line1:filler"
    assert (device.opcua.trusted_ca_file, device.opcua.crl_file) == (TLS / "opcua-ca.pem", TLS / "opcua-crl.pem")
    assert (device.opcua.server_certificate_file, device.opcua.accept_unknown_server) == (None, False)


def test_a_machine_may_trust_server_certificates_as_they_are(demo_data: DemoData) -> None:
    data = demo_data()
    plc = self_signed_pem()
    trust = {"lineCa": False, "certificates": [plc, self_signed_pem("spare")], "acceptUnknown": False}
    data["spec"]["machines"][0]["opcua"] = {
        "securityPolicy": "Basic256Sha256",
        "securityMode": "Sign",
        "applicationUri": "urn:acme:filler-connector",
        "serverTrust": trust,
    }
    line = parse_plantline(data)
    device = render_connector_configs(line, tls_dir=TLS, data_dir=DATA)["filler"].devices[0]
    assert device.opcua.application_uri == "urn:acme:filler-connector"
    assert (device.opcua.trusted_ca_file, device.opcua.crl_file) == (None, None)
    assert device.opcua.server_certificate_file == TLS / "site1-line1-filler-ua-servers.pem"
    files = render_opcua_server_certificates(line)
    assert list(files) == ["site1-line1-filler-ua-servers.pem"]
    assert files["site1-line1-filler-ua-servers.pem"].startswith(plc)
    requests = {r.identity: r for r in render_certificate_requests(line)}
    assert requests["site1-line1-filler-ua"].sans == ("uri:urn:acme:filler-connector",)


def test_a_machine_renders_its_reconnect_back_off(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["machines"][1]["reconnect"] = {"initialDelay": 0.2, "maxDelay": 2}
    configs = render_connector_configs(parse_plantline(data), tls_dir=TLS, data_dir=DATA)
    assert configs["capper"].devices[0].reconnect == ReconnectSettings(initial_delay_s=0.2, max_delay_s=2.0)
    assert configs["filler"].devices[0].reconnect == ReconnectSettings(initial_delay_s=0.5, max_delay_s=5.0)


def test_acl_is_exact(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["machines"] = data["spec"]["machines"][1:2]
    data["spec"]["primaryHostId"] = "scada"
    assert render_acl(parse_plantline(data)) == (
        "# Rendered by plantline-operator for PlantLine site1/packaging/line1; do not edit.\n"
        "\n"
        "user site1-line1-capper\n"
        "topic write spBv1.0/site1/NBIRTH/line1-capper\n"
        "topic write spBv1.0/site1/NDEATH/line1-capper\n"
        "topic write spBv1.0/site1/NDATA/line1-capper\n"
        "topic write spBv1.0/site1/DBIRTH/line1-capper/capper\n"
        "topic write spBv1.0/site1/DDEATH/line1-capper/capper\n"
        "topic write spBv1.0/site1/DDATA/line1-capper/capper\n"
        "topic read spBv1.0/site1/NCMD/line1-capper\n"
        "topic read spBv1.0/site1/DCMD/line1-capper/+\n"
        "topic read spBv1.0/STATE/scada\n"
        "\n"
        "user site1-line1-host\n"
        "topic write spBv1.0/STATE/scada\n"
        "topic read spBv1.0/STATE/scada\n"
        "topic write spBv1.0/site1/NCMD/line1-capper\n"
        "topic write spBv1.0/site1/DCMD/line1-capper/capper\n"
        "topic read spBv1.0/site1/+/line1-capper/#\n"
        "\n"
        "user site1-line1-reader\n"
        "topic read spBv1.0/site1/+/line1-capper/#\n"
        "topic read spBv1.0/STATE/scada\n"
        "topic read $SYS/broker/#\n"
        "\n"
        "user site1-line1-dashboard\n"
        "topic read spBv1.0/site1/NBIRTH/line1-capper\n"
        "topic read spBv1.0/site1/NDEATH/line1-capper\n"
        "topic read spBv1.0/site1/NDATA/line1-capper\n"
        "topic read spBv1.0/site1/DBIRTH/line1-capper/+\n"
        "topic read spBv1.0/site1/DDEATH/line1-capper/+\n"
        "topic read spBv1.0/site1/DDATA/line1-capper/+\n"
        "topic read spBv1.0/STATE/scada\n"
        "\n"
        "user site1-line1-admin\n"
        "topic readwrite spBv1.0/site1/+/line1-capper/#\n"
        "topic readwrite spBv1.0/STATE/scada\n"
    )


def test_acl_without_a_primary_host_grants_no_state_and_no_commands(demo: PlantLine) -> None:
    acl = render_acl(demo)
    assert "STATE/scada" not in acl
    assert "site1-line1-host" not in acl
    assert not [line for line in acl.splitlines() if line.startswith("topic write") and "CMD/" in line]


def test_acl_has_no_rule_for_everyone(demo: PlantLine) -> None:
    acl = render_acl(demo).splitlines()
    first_user = next(i for i, line in enumerate(acl) if line.startswith("user "))
    assert all(line == "" or line.startswith("#") for line in acl[:first_user])
    assert not any(line.startswith("pattern") for line in acl)
    readwrite = [line for line in acl if line.startswith("topic readwrite")]
    # Only the admin reads and writes, and only within the line's own edge nodes.
    assert readwrite == [f"topic readwrite spBv1.0/site1/+/line1-{m}/#" for m in ("capper", "filler", "labeler")]


def test_mosquitto_conf(demo: PlantLine) -> None:
    files = BrokerFiles.under(demo.spec, tls_dir=TLS, broker_dir=DATA / "broker")
    conf = render_mosquitto_conf(demo, files=files).splitlines()
    for line in (
        "allow_anonymous false",
        "listener 8883 127.0.0.1",  # the demo's broker.host
        "cafile /etc/plantline/tls/ca.crt",
        "certfile /etc/plantline/tls/site1-line1-broker.crt",
        "keyfile /etc/plantline/tls/site1-line1-broker.key",
        "crlfile /etc/plantline/tls/crl.pem",
        "require_certificate true",
        "use_identity_as_username true",
        "set_tcp_nodelay true",
        "persistence true",
        "persistence_location /var/lib/plantline/broker/data/",
        "autosave_interval 5",
        "max_queued_messages 100000000",
        f"max_queued_bytes {256 * 1024 * 1024}",
        "acl_file /var/lib/plantline/broker/acl",
    ):
        assert line in conf
    assert not any(line.startswith("connection ") for line in conf)


@pytest.mark.parametrize(
    ("broker", "listener"),
    [
        ({"host": "127.0.0.1"}, "listener 8883 127.0.0.1"),
        ({"host": "10.0.0.5", "port": 8884}, "listener 8884 10.0.0.5"),
        ({"host": "fd00::5"}, "listener 8883 fd00::5"),
        ({"host": "broker.site1.local"}, "listener 8883 0.0.0.0"),  # a DNS name: every interface
        ({"host": "127.0.0.1", "listenAddress": "0.0.0.0"}, "listener 8883 0.0.0.0"),  # noqa: S104 - asked for
        ({"host": "broker.site1.local", "listenAddress": "10.0.0.5"}, "listener 8883 10.0.0.5"),
    ],
)
def test_the_broker_listens_where_the_line_says(demo_data: DemoData, broker: dict[str, Any], listener: str) -> None:
    data = demo_data()
    data["spec"]["broker"] = broker
    line = parse_plantline(data)
    conf = render_mosquitto_conf(line, files=BrokerFiles.under(line.spec, tls_dir=TLS, broker_dir=DATA))
    assert [row for row in conf.splitlines() if row.startswith("listener ")] == [listener]


def test_mosquitto_conf_queue_and_autosave_from_the_spec(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["broker"].update(queueLimitMib=1024, autosaveSeconds=10)
    line = parse_plantline(data)
    conf = render_mosquitto_conf(line, files=BrokerFiles.under(line.spec, tls_dir=TLS, broker_dir=DATA)).splitlines()
    assert "autosave_interval 10" in conf
    assert f"max_queued_bytes {1024 * 1024 * 1024}" in conf


def test_bridge_section(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    data["spec"]["machines"] = data["spec"]["machines"][:2]
    data["spec"]["broker"]["bridge"] = {"host": "core.example.com", "port": 8884}
    line = parse_plantline(data)
    assert render_bridge(line, tls_dir=TLS) == (
        "connection site1-line1-bridge\n"
        "address core.example.com:8884\n"
        "remote_clientid site1-line1-bridge\n"
        "bridge_cafile /etc/plantline/tls/ca.crt\n"
        "bridge_certfile /etc/plantline/tls/site1-line1-bridge.crt\n"
        "bridge_keyfile /etc/plantline/tls/site1-line1-bridge.key\n"
        "bridge_insecure false\n"
        "bridge_protocol_version mqttv311\n"
        "try_private true\n"
        "cleansession false\n"
        "local_cleansession false\n"
        "notifications true\n"
        "notifications_local_only true\n"
        "restart_timeout 2 60\n"
        "topic spBv1.0/site1/+/line1-capper/# out 1\n"
        "topic spBv1.0/site1/+/line1-filler/# out 1\n"
        "topic spBv1.0/site1/NCMD/line1-capper in 1\n"
        "topic spBv1.0/site1/DCMD/line1-capper/+ in 1\n"
        "topic spBv1.0/site1/NCMD/line1-filler in 1\n"
        "topic spBv1.0/site1/DCMD/line1-filler/+ in 1\n"
        "topic spBv1.0/STATE/scada in 1\n"
    )
    files = BrokerFiles.under(line.spec, tls_dir=TLS, broker_dir=DATA / "broker")
    assert "connection site1-line1-bridge" in render_mosquitto_conf(line, files=files)


def test_bridge_remote_prefix(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["broker"]["bridge"] = {"host": "core", "remotePrefix": "plants/"}
    text = render_bridge(parse_plantline(data), tls_dir=TLS)
    assert 'topic spBv1.0/site1/+/line1-filler/# out 1 "" plants/' in text
