"""Pure model builders of the cloud bridge a line with `spec.cloud` gets: ConfigMap, Deployment, NetworkPolicy.

The bridge connects to the line's broker as the line's host identity, whose certificate Secret the
`certificates` step makes like every other; its configuration is `cloud.render_bridge_config`, the
very renderer of `plantline up --cloud`, with the paths inside the pod. The Secrets `spec.cloud`
names (the SASL password or Event Hubs connection string, a CA bundle) are the user's: they are
mounted read-only as files, and their values never reach the ConfigMap, an env var or the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from plantline.dashboards.line import CLOUD_BRIDGE as CLOUD_BRIDGE_TARGET
from plantline.operator.api import CLOUD_BRIDGE, GROUP, CloudSpec, PlantLine
from plantline.operator.cloud import HEALTH_PORT, cloud_target, render_bridge_config, spec_settings
from plantline.operator.model import (
    CERTIFICATE_HASH_ANNOTATION,
    CONFIG_DIR,
    CONFIG_HASH_ANNOTATION,
    TLS_DIR,
    ConnectorSettings,
    Endpoint,
    Owner,
    child_metadata,
    dns_egress,
    egress_rule,
    labels,
    pod_monitor,
    probed_container,
    restricted_pod_security,
    secret_name,
    selector,
)
from plantline.operator.render import TRUST_BUNDLE
from plantline.operator.roles import host_identity

COMPONENT = "bridge"
BRIDGE_CONFIG_FILE = CONFIG_DIR / "bridge.yaml"
CREDENTIALS_DIR = CONFIG_DIR / "cloud-credentials"
CA_DIR = CONFIG_DIR / "cloud-ca"
PASSWORD_FILE = CREDENTIALS_DIR / "password"
CA_FILE = CA_DIR / "ca.crt"
BRIDGE_PORT = HEALTH_PORT  # /healthz, /readyz and /metrics
CREDENTIALS_HASH_ANNOTATION = f"{GROUP}/credentials-hash"


def bridge_name(owner_name: str) -> str:
    """Return the name of the line's cloud bridge ConfigMap and Deployment."""
    return f"{owner_name}-{CLOUD_BRIDGE}"


def bridge_config_text(line: PlantLine, cloud: CloudSpec) -> str:
    """Return the bridge's YAML configuration with the paths inside its pod (no secret: files are named)."""
    settings = spec_settings(cloud, password_file=PASSWORD_FILE, ca_file=CA_FILE)
    data = render_bridge_config(
        line,
        cloud_target(settings),
        tls_dir=TLS_DIR,
        health_port=BRIDGE_PORT,
        health_address="0.0.0.0",  # noqa: S104 - the pod's own address: the probes and Prometheus reach it
    )
    return yaml.safe_dump(data, sort_keys=True)


def bridge_config_map(owner: Owner, config_text: str) -> dict[str, Any]:
    """Return the ConfigMap holding `bridge.yaml`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, bridge_name(owner.name), COMPONENT),
        "data": {BRIDGE_CONFIG_FILE.name: config_text},
    }


def _volumes(owner: Owner, line: PlantLine, cloud: CloudSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the pod's volumes and the container's mounts: config, TLS, the cloud Secrets, /tmp."""
    host = host_identity(line.spec)
    tls_items = [{"key": "tls.crt", "path": f"{host}.crt"}, {"key": "tls.key", "path": f"{host}.key"},
                 {"key": "ca.crt", "path": TRUST_BUNDLE}]  # fmt: skip
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": bridge_name(owner.name)}},
        {
            "name": "tls",
            "secret": {"secretName": secret_name(owner, line, host), "items": tls_items, "defaultMode": 0o440},
        },
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": str(BRIDGE_CONFIG_FILE), "subPath": BRIDGE_CONFIG_FILE.name, "readOnly": True},
        {"name": "tls", "mountPath": str(TLS_DIR), "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
    ]
    refs = (("credentials", cloud.credentials_secret_ref, PASSWORD_FILE), ("cloud-ca", cloud.ca_secret_ref, CA_FILE))
    for volume, ref, path in refs:
        if ref is not None:
            items = [{"key": ref.key, "path": path.name}]
            volumes.append({"name": volume, "secret": {"secretName": ref.name, "items": items, "defaultMode": 0o440}})
            mounts.append({"name": volume, "mountPath": str(path.parent), "readOnly": True})
    return volumes, mounts


def bridge_deployment(
    owner: Owner, line: PlantLine, cloud: CloudSpec, settings: ConnectorSettings, hashes: Mapping[str, str]
) -> dict[str, Any]:
    """Return the cloud bridge's Deployment: one replica, Recreate, restricted, probed on its health port.

    One Sparkplug host session per line: two bridges at once would produce every sample twice.
    `hashes` (config, certificate, credentials) go in the pod template's annotations, so a new
    configuration, certificate or connection string restarts the bridge, which reads them at start.
    """
    volumes, mounts = _volumes(owner, line, cloud)
    annotations = {CONFIG_HASH_ANNOTATION: hashes.get("config", ""),
                   CERTIFICATE_HASH_ANNOTATION: hashes.get("certificate", ""),
                   CREDENTIALS_HASH_ANNOTATION: hashes.get("credentials", "")}  # fmt: skip
    argv = ["plantline-bridge", "run", "--config", str(BRIDGE_CONFIG_FILE)]
    container = probed_container("bridge", settings.cloud_bridge_image, settings, argv, BRIDGE_PORT, mounts)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, bridge_name(owner.name), COMPONENT),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(owner, COMPONENT)},
            "template": {
                "metadata": {"labels": labels(owner, COMPONENT), "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def bridge_network_policy(owner: Owner, line: PlantLine, cloud: CloudSpec) -> dict[str, Any]:
    """Return the bridge's NetworkPolicy: egress only to the line's broker, Kafka's ports and DNS.

    Inbound, only the metrics port (Prometheus; the probes come from the node). Kafka's bootstrap
    servers hand out the brokers' own addresses, which are not known here, so Kafka is allowed by
    port: those of the bootstrap servers (9093 for Event Hubs), where brokers advertise as a rule.
    """
    kafka = spec_settings(cloud, password_file=None, ca_file=None).bootstrap_servers.split(",")
    ports = sorted({int(server.rpartition(":")[2]) for server in kafka})
    broker = egress_rule(Endpoint(line.spec.broker.host, line.spec.broker.port))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, bridge_name(owner.name), COMPONENT),
        "spec": {
            "podSelector": {"matchLabels": selector(owner, COMPONENT)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": BRIDGE_PORT}]}],
            "egress": [broker, {"ports": [{"protocol": "TCP", "port": port} for port in ports]}, dns_egress()],
        },
    }


__all__ = [
    "BRIDGE_CONFIG_FILE",
    "CA_FILE",
    "PASSWORD_FILE",
    "bridge_config_map",
    "bridge_config_text",
    "bridge_deployment",
    "bridge_name",
    "bridge_network_policy",
]


def bridge_pod_monitor(owner: Owner, line: PlantLine) -> dict[str, Any]:
    """Return the PodMonitor of the line's cloud bridge pod, its targets labelled as its dashboard selects."""
    return pod_monitor(owner, line, bridge_name(owner.name), (COMPONENT, CLOUD_BRIDGE_TARGET))
