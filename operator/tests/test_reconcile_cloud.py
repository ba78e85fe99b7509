"""The cloud bridge a line with `spec.cloud` gets, reconciled against a recording cluster and an in-memory CA."""

from __future__ import annotations

import json
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from plantline.bridge.config import BridgeConfig
from plantline.operator.api import PlantLineStatus
from plantline.operator.cloud_model import CREDENTIALS_HASH_ANNOTATION
from plantline.operator.model import ConnectorSettings
from plantline.operator.reconcile import Context, Outcome, reconcile

from .recording import MemoryAuthority, RecordingCluster, demo_body

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
SETTINGS = ConnectorSettings(image="registry.example/plantline/connectors:0.1.0")
NAMESPACE = "plantline"
CONNECTION_STRING = "Endpoint=sb://plant-1-ingest.servicebus.windows.net/;SharedAccessKeyName=bridge-send;SharedAccessKey=c2VjcmV0LWtleQ="
BRIDGE = "site1-line1-cloud-bridge"
EVENT_HUBS = {
    "eventHubsNamespace": "plant-1-ingest",
    "credentialsSecretRef": {"name": "eventhubs", "key": "connection-string"},
}


def _cloud_body(cloud: dict[str, Any] | None = None) -> dict[str, Any]:
    body = demo_body()
    body["spec"]["cloud"] = cloud if cloud is not None else dict(EVENT_HUBS)
    return body


def _credentials(cluster: RecordingCluster, value: str = CONNECTION_STRING) -> None:
    """Store the user's Secret, as `kubectl create secret generic eventhubs --from-literal=...` would."""
    data = {"connection-string": b64encode(value.encode()).decode()}
    meta = {"name": "eventhubs", "namespace": NAMESPACE}
    cluster.apply(
        "Secret", NAMESPACE, "eventhubs", {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}
    )


def _run(body: dict[str, Any], cluster: RecordingCluster, authority: MemoryAuthority, now: datetime = NOW) -> Outcome:
    outcome = reconcile(body, Context(cluster, authority, SETTINGS, now))
    PlantLineStatus.model_validate(outcome.status)
    body["status"] = outcome.status
    return outcome


def _settled(cluster: RecordingCluster, authority: MemoryAuthority) -> tuple[dict[str, Any], list[Outcome]]:
    """Return the Event Hubs line, its first outcome and the one once its Deployments are available."""
    _credentials(cluster)
    body = _cloud_body()
    first = _run(body, cluster, authority)
    cluster.make_available()
    return body, [first, _run(body, cluster, authority, NOW + timedelta(minutes=1))]


def _condition(outcome: Outcome, type_: str) -> dict[str, Any] | None:
    return next((c for c in outcome.status["conditions"] if c["type"] == type_), None)


def _pod(cluster: RecordingCluster) -> dict[str, Any]:
    spec: dict[str, Any] = cluster.stored("Deployment")[BRIDGE]["spec"]["template"]["spec"]
    return spec


def test_a_cloud_line_gets_a_bridge_deployment_that_runs_the_rendered_config(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    _credentials(cluster)
    body = _cloud_body()
    outcome = _run(body, cluster, authority)
    deployment = cluster.stored("Deployment")[BRIDGE]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "one Sparkplug host session at a time"
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "PlantLine"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "bridge"
    pod = _pod(cluster)
    (container,) = pod["containers"]
    assert container["image"] == SETTINGS.image, "the connectors' image holds the bridge"
    assert container["command"] == ["plantline-bridge"]
    assert container["args"] == ["run", "--config", "/etc/plantline/bridge.yaml"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9410, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert not {"env", "envFrom"} & set(container), "no credential goes through the environment"
    # the configuration: the shared renderer's, with the paths of the pod's mounts
    config = BridgeConfig.model_validate(yaml.safe_load(cluster.stored("ConfigMap")[BRIDGE]["data"]["bridge.yaml"]))
    assert config.kafka.bootstrap_servers == "plant-1-ingest.servicebus.windows.net:9093"
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.sasl is not None
    assert config.kafka.sasl.username == "$ConnectionString"
    assert config.kafka.dlq_topic == "dead-letter"
    assert config.topics == {"capper": "capper-equipment", "filler": "filler-equipment", "labeler": "labeler-equipment"}
    assert (config.health.address, config.health.port) == ("0.0.0.0", 9410)  # noqa: S104 - the pod's address
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert config.kafka.sasl.password_file is not None
    assert config.kafka.sasl.password_file.parent.as_posix() == mounts["credentials"]["mountPath"]
    assert mounts["credentials"]["readOnly"] is True
    assert volumes["credentials"]["secret"]["secretName"] == "eventhubs"
    assert volumes["credentials"]["secret"]["items"] == [
        {"key": "connection-string", "path": config.kafka.sasl.password_file.name}
    ]
    tls = config.mqtt.brokers[0].tls
    assert tls is not None
    assert volumes["tls"]["secret"]["secretName"] == "site1-line1-host-tls"
    assert {i["path"] for i in volumes["tls"]["secret"]["items"]} == {
        tls.cert_file.name,
        tls.key_file.name,
        tls.ca_file.name if tls.ca_file else "",
    }
    assert tls.cert_file.parent.as_posix() == mounts["tls"]["mountPath"]
    assert "site1-line1-host-tls" in cluster.stored("Secret"), "the host identity is issued for the bridge"
    policy = cluster.stored("NetworkPolicy")[BRIDGE]["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "bridge"
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9410}]}]
    broker, kafka, dns = policy["egress"]
    assert broker == {"ports": [{"protocol": "TCP", "port": 8883}], "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}]}
    assert kafka == {"ports": [{"protocol": "TCP", "port": 9093}]}, "Event Hubs' Kafka endpoint, by port"
    assert {p["port"] for p in dns["ports"]} == {53}
    condition = _condition(outcome, "CloudBridgeReady")
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "DeploymentProgressing")
    assert outcome.retry_after is not None


def test_no_secret_value_reaches_the_config_map_the_status_the_events_or_the_pod(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    _, (outcome, second) = _settled(cluster, authority)
    written = [
        json.dumps(cluster.stored("ConfigMap")),
        json.dumps(cluster.stored("Deployment")),
        json.dumps(outcome.status),
        json.dumps(second.status),
        *(e.message for e in [*outcome.events, *second.events]),
    ]
    secret_b64 = b64encode(CONNECTION_STRING.encode()).decode()
    for text in written:
        assert "SharedAccessKey=" not in text
        assert "c2VjcmV0LWtleQ=" not in text
        assert secret_b64 not in text


def test_the_bridge_becomes_ready_and_a_rotated_connection_string_rolls_it(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body, (_, outcome) = _settled(cluster, authority)
    condition = _condition(outcome, "CloudBridgeReady")
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "DeploymentAvailable")
    assert "plant-1-ingest" in condition["message"]
    assert outcome.ready
    before = _pod_annotations(cluster)[CREDENTIALS_HASH_ANNOTATION]
    _credentials(cluster, CONNECTION_STRING.replace("c2VjcmV0LWtleQ=", "bmV3LWtleQ="))
    _run(body, cluster, authority, NOW + timedelta(minutes=2))
    assert _pod_annotations(cluster)[CREDENTIALS_HASH_ANNOTATION] != before


def _pod_annotations(cluster: RecordingCluster) -> dict[str, str]:
    annotations: dict[str, str] = cluster.stored("Deployment")[BRIDGE]["spec"]["template"]["metadata"]["annotations"]
    return annotations


def test_a_missing_credentials_secret_is_a_false_condition_naming_the_field(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    outcome = _run(_cloud_body(), cluster, authority)
    condition = _condition(outcome, "CloudBridgeReady")
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "CredentialsMissing")
    assert "spec.cloud.credentialsSecretRef: Secret eventhubs has no key connection-string" in condition["message"]
    assert not outcome.ready


def test_a_kafka_with_a_ca_and_prefixed_topics_mounts_the_ca(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    cloud = {"bootstrapServers": ["kafka-0.kafka:9093", "kafka-1.kafka:9093"], "securityProtocol": "SSL",
             "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"}, "partitions": 6,
             "topics": {"byEquipmentType": {"filler": "bottling"}}}  # fmt: skip
    _run(_cloud_body(cloud), cluster, authority)
    config = BridgeConfig.model_validate(yaml.safe_load(cluster.stored("ConfigMap")[BRIDGE]["data"]["bridge.yaml"]))
    assert config.kafka.bootstrap_servers == "kafka-0.kafka:9093,kafka-1.kafka:9093"
    assert config.kafka.sasl is None
    assert config.kafka.create_topics_partitions == 6
    assert config.topics == {"capper": "plantline.capper", "filler": "bottling", "labeler": "plantline.labeler"}
    volumes = {v["name"]: v for v in _pod(cluster)["volumes"]}
    assert "credentials" not in volumes
    assert volumes["cloud-ca"]["secret"] == {"secretName": "kafka-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                             "defaultMode": 0o440}  # fmt: skip
    (container,) = _pod(cluster)["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "cloud-ca"]
    assert config.kafka.ca_file is not None
    assert config.kafka.ca_file.parent.as_posix() == mount["mountPath"]


def test_removing_spec_cloud_removes_the_bridge_its_certificate_and_its_condition(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body, _ = _settled(cluster, authority)
    del body["spec"]["cloud"]
    body["metadata"]["generation"] += 1
    outcome = _run(body, cluster, authority, NOW + timedelta(minutes=2))
    assert BRIDGE not in cluster.stored("Deployment")
    assert BRIDGE not in cluster.stored("ConfigMap")
    assert BRIDGE not in cluster.stored("NetworkPolicy")
    assert "site1-line1-host-tls" not in cluster.stored("Secret"), "no primary host: the host identity goes too"
    assert "eventhubs" in cluster.stored("Secret"), "the user's Secret is not the operator's to delete"
    assert _condition(outcome, "CloudBridgeReady") is None
    assert outcome.ready


def test_the_cloud_bridge_is_scraped_and_watched_as_its_dashboard_selects_until_spec_cloud_goes(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    cluster.served.add("PodMonitor")
    body, _ = _settled(cluster, authority)
    monitor = cluster.stored("PodMonitor")[BRIDGE]
    assert (
        monitor["spec"]["selector"]["matchLabels"]
        == cluster.stored("Deployment")[BRIDGE]["spec"]["selector"]["matchLabels"]
    ), "it selects the bridge's pod"
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "metrics"
    relabelled = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
    assert relabelled == {"site": "site1", "line": "line1", "component": "bridge"}
    assert "site1-line1-connectors" in cluster.stored("PodMonitor"), "beside the connectors' own"
    boards = [name for name in cluster.stored("ConfigMap") if name.startswith("site1-line1-dashboard")]
    assert any(name.endswith("cloud") for name in boards), boards
    del body["spec"]["cloud"]
    body["metadata"]["generation"] += 1
    _run(body, cluster, authority, NOW + timedelta(minutes=2))
    assert BRIDGE not in cluster.stored("PodMonitor")
    assert not any(name.endswith("cloud") for name in cluster.stored("ConfigMap") if "dashboard" in name)
