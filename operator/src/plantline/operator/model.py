"""Pure model builders: one PlantLine in, the Kubernetes objects it needs out, as plain dicts.

No client imports and no I/O: the reconcile pipeline feeds these functions what it read from the
cluster (issued certificates, the CA bundle) and hands their dicts to the appliers, which
server-side apply them. Every object carries the labels of docs/architecture.md and an owner reference to
its PlantLine, so Kubernetes garbage-collects it with the line.
"""

from __future__ import annotations

import hashlib
import ipaddress
from base64 import b64encode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from plantline.connectors.addressing.endpoints import PlcProtocol, parse_endpoint
from plantline.connectors.config import DEFAULT_METRICS_PORT
from plantline.dashboards.boards import dashboards
from plantline.dashboards.line import CONNECTOR
from plantline.dashboards.line import CONNECTOR_LABEL as CONNECTOR_TARGET_LABEL
from plantline.dashboards.render import dashboard_json, rules_yaml, target_labels
from plantline.dashboards.rules import rule_file
from plantline.operator.api import API_VERSION, GROUP, KIND, PlantLine
from plantline.operator.render import (
    CRL,
    OPCUA_CRL,
    OPCUA_TRUST_BUNDLE,
    TRUST_BUNDLE,
    CertificateRequest,
    ConnectorTopology,
    connector_config_data,
    line_view,
    opcua_identity,
    opcua_server_certificates_file,
    render_connector_configs,
    render_opcua_server_certificates,
    topology,
)

FIELD_MANAGER = "plantline-operator"
FINALIZER = f"{GROUP}/finalizer"
PAUSE_ANNOTATION = f"{GROUP}/pause-reconciliation"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
CERTIFICATE_HASH_ANNOTATION = f"{GROUP}/certificate-hash"
IDENTITY_ANNOTATION = f"{GROUP}/identity"
PROFILE_ANNOTATION = f"{GROUP}/profile"

LINE_LABEL = f"{GROUP}/line"
CONNECTOR_LABEL = f"{GROUP}/connector"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = "plantline-operator"

CONFIG_DIR = Path("/etc/plantline")
TLS_DIR = CONFIG_DIR / "tls"
DATA_DIR = Path("/var/lib/plantline")
CONFIG_FILE = CONFIG_DIR / "connector.yaml"
METRICS_PORT = DEFAULT_METRICS_PORT  # in a pod: the Service, probes and NetworkPolicy use it
RUN_AS = 65532  # an unprivileged uid/gid with no entry in the image: restricted pod security

# Grafana's dashboard sidecar (the Grafana Helm chart's `sidecar.dashboards`) loads every ConfigMap
# labelled `grafana_dashboard: "1"` and files it in the folder its `grafana_folder` annotation names.
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"
GRAFANA_FOLDER_ANNOTATION = "grafana_folder"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1"

# libyaml's emitter when PyYAML has it (about 10x faster); both write YAML the connectors load.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True, slots=True)
class Owner:
    """The PlantLine that owns the children: what an owner reference needs."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(namespace=str(meta["namespace"]), name=str(meta["name"]), uid=str(meta["uid"]))


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    """How connector pods run: the operator's settings, not the line's."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    cpu_request: str = "50m"
    memory_request: str = "64Mi"
    memory_limit: str = "256Mi"
    storage_class: str | None = None  # of the outbox volumes; None: the cluster's default StorageClass
    bridge_image: str | None = None  # the cloud bridge's; None: `image` (the connectors' image holds it)

    @property
    def cloud_bridge_image(self) -> str:
        return self.bridge_image or self.image


@dataclass(frozen=True, slots=True)
class CertificateFact:
    """One identity's current certificate: when it expires, its role in the line, the machines it serves."""

    not_after: datetime
    role: str
    machines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """One issued certificate as stored in its Secret (PEM)."""

    certificate: bytes
    key: bytes
    ca: bytes


# -- names and metadata ---------------------------------------------------------------------------


def labels(owner: Owner, component: str, connector: str | None = None) -> dict[str, str]:
    """Return the labels docs/architecture.md ("Names and conventions") puts on everything the toolkit creates."""
    out = {
        "app.kubernetes.io/name": "plantline",
        "app.kubernetes.io/instance": owner.name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "plantline",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LINE_LABEL: owner.name,
    }
    if connector is not None:
        out[CONNECTOR_LABEL] = connector
    return out


def selector(owner: Owner, component: str | None = None) -> dict[str, str]:
    """Return the label selector of the line's children (of one component, if given)."""
    out = {LINE_LABEL: owner.name, "app.kubernetes.io/managed-by": MANAGED_BY}
    if component is not None:
        out[COMPONENT_LABEL] = component
    return out


def child_metadata(owner: Owner, name: str, component: str, connector: str | None = None) -> dict[str, Any]:
    """Return a child's metadata: its name, the labels of docs/architecture.md, the owner reference to the line."""
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component, connector),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _suffix(line: PlantLine, identity: str) -> str:
    return identity.removeprefix(f"{line.spec.site}-{line.spec.line}-")


def secret_name(owner: Owner, line: PlantLine, identity: str) -> str:
    """Return the name of the Secret holding `identity`'s certificate."""
    return f"{owner.name}-{_suffix(line, identity)}-tls"


def deployment_name(owner: Owner, group: str) -> str:
    return f"{owner.name}-{group}"


def config_map_name(owner: Owner) -> str:
    return f"{owner.name}-connectors"


def trust_config_map_name(owner: Owner) -> str:
    return f"{owner.name}-trust"


def service_account_name(owner: Owner) -> str:
    return f"{owner.name}-connector"


def network_policy_name(owner: Owner) -> str:
    return f"{owner.name}-connectors"


def claim_name(owner: Owner, group: str) -> str:
    """Return the name of the PersistentVolumeClaim holding one connector group's outbox and state."""
    return f"{owner.name}-{group}-data"


def dashboard_config_map_name(owner: Owner, kind: str) -> str:
    return f"{owner.name}-dashboard-{kind}"


def rules_name(owner: Owner) -> str:
    return f"{owner.name}-rules"


def pod_monitor_name(owner: Owner) -> str:
    return f"{owner.name}-connectors"


def digest(parts: Iterable[bytes]) -> str:
    """Return a short SHA-256 over `parts`, for pod template annotations."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:32]


# -- children -------------------------------------------------------------------------------------


def certificate_secret(
    owner: Owner, line: PlantLine, request: CertificateRequest, material: CertificateMaterial
) -> dict[str, Any]:
    """Return the kubernetes.io/tls Secret of one identity: certificate, key and CA chain."""
    metadata = child_metadata(owner, secret_name(owner, line, request.identity), "certificate")
    metadata["annotations"] = {IDENTITY_ANNOTATION: request.identity, PROFILE_ANNOTATION: request.profile}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": b64encode(material.certificate).decode(),
            "tls.key": b64encode(material.key).decode(),
            "ca.crt": b64encode(material.ca).decode(),
        },
    }


def service_account(owner: Owner) -> dict[str, Any]:
    """Return the connectors' ServiceAccount: they never talk to the Kubernetes API."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(owner, service_account_name(owner), "connector"),
        "automountServiceAccountToken": False,
    }


def connector_configs(line: PlantLine) -> dict[str, str]:
    """Return each connector group's YAML configuration, with the paths inside the pod."""
    configs = render_connector_configs(
        line,
        tls_dir=TLS_DIR,
        data_dir=DATA_DIR,
        metrics_base_port=METRICS_PORT,
        metrics_address="0.0.0.0",  # noqa: S104 - each pod has its own address
    )
    return {
        group: yaml.dump(
            connector_config_data(config.model_copy(update={"metrics_port": METRICS_PORT})),
            Dumper=_DUMPER,
            sort_keys=True,
        )
        for group, config in configs.items()
    }


def config_map(owner: Owner, configs: Mapping[str, str]) -> dict[str, Any]:
    """Return the ConfigMap with one key `<group>.yaml` per connector."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, config_map_name(owner), "config"),
        "data": {f"{group}.yaml": text for group, text in sorted(configs.items())},
    }


def trust_config_map(owner: Owner, line: PlantLine, ca_bundle: bytes, crl: bytes) -> dict[str, Any]:
    """Return the ConfigMap of the line's public trust material.

    The CA bundle and the current CRL serve the broker and the connectors' checks of OPC UA servers;
    beside them, the server certificates the line's OPC UA machines trust as they are.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, trust_config_map_name(owner), "trust"),
        "data": {TRUST_BUNDLE: ca_bundle.decode(), CRL: crl.decode(), **render_opcua_server_certificates(line)},
    }


def dashboard_config_maps(owner: Owner, line: PlantLine) -> list[dict[str, Any]]:
    """Return one ConfigMap per dashboard of the line, labelled and annotated for Grafana's sidecar."""
    view = line_view(line)
    folder = f"PlantLine {view.site}/{view.line}"
    found = []
    for kind, board in dashboards(view).items():
        metadata = child_metadata(owner, dashboard_config_map_name(owner, kind), "dashboards")
        metadata["labels"][GRAFANA_DASHBOARD_LABEL] = "1"
        metadata["annotations"] = {GRAFANA_FOLDER_ANNOTATION: folder}
        data = {f"{owner.namespace}-{owner.name}-{kind}.json": dashboard_json(board)}
        found.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return found


def prometheus_rule(owner: Owner, line: PlantLine) -> dict[str, Any]:
    """Return the line's rules as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": PROMETHEUS_RULE_API,
        "kind": "PrometheusRule",
        "metadata": child_metadata(owner, rules_name(owner), "rules"),
        "spec": rule_file(line_view(line)),
    }


def _pod_label_meta(label: str) -> str:
    """Return the meta label Prometheus's Kubernetes discovery gives a pod label (non-alphanumerics as _)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)


def connector_pod_monitor(owner: Owner, line: PlantLine) -> dict[str, Any]:
    """Return a prometheus-operator PodMonitor scraping the line's connector pods on their metrics port.

    Its relabelings give every target the labels the dashboards and rules select on: the line's
    site and line, `component="connector"` and `connector=<group>` (from the pod's label).
    """
    group = {"action": "replace", "sourceLabels": [_pod_label_meta(CONNECTOR_LABEL)],
             "targetLabel": CONNECTOR_TARGET_LABEL}  # fmt: skip
    return pod_monitor(owner, line, pod_monitor_name(owner), ("connector", CONNECTOR), [group])


def pod_monitor(
    owner: Owner, line: PlantLine, name: str, components: tuple[str, str], relabelings: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Return a PodMonitor of one kind of the line's pods (`components`: their pod label, their target label).

    Every target gets the line's site and line and `component=<target label>`, then `relabelings`.
    """
    pod_component, target_component = components
    static = [
        {"action": "replace", "targetLabel": label, "replacement": value}
        for label, value in target_labels(line_view(line), target_component).items()
    ]
    return {
        "apiVersion": PROMETHEUS_RULE_API,
        "kind": "PodMonitor",
        "metadata": child_metadata(owner, name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": selector(owner, pod_component)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "relabelings": [*static, *relabelings]}],
        },
    }


def rules_config_map(owner: Owner, line: PlantLine) -> dict[str, Any]:
    """Return the line's rule file in a ConfigMap, for a Prometheus without the prometheus-operator."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, rules_name(owner), "rules"),
        "data": {f"{owner.namespace}-{owner.name}.rules.yml": rules_yaml(line_view(line))},
    }


def group_identities(line: PlantLine, connector: ConnectorTopology) -> list[str]:
    """Return the identities whose certificates one connector mounts: its own, then its OPC UA apps."""
    found = [connector.identity]
    for machine in connector.machines:
        if machine.opcua is not None and machine.opcua.secured:
            found.append(opcua_identity(line.spec, machine))
    return found


def opcua_trust_items(line: PlantLine, connector: ConnectorTopology) -> list[dict[str, str]]:
    """Return what one connector mounts from the trust ConfigMap for its secured OPC UA machines.

    The operator's CA issues every certificate of the line, OPC UA ones included, so its bundle and
    CRL are also what the connectors check OPC UA servers against. Mounted as a projected volume
    (no subPath), they follow the ConfigMap when the CRL changes; the connector reads them at each
    connection attempt.
    """
    secured = [m for m in connector.machines if m.opcua is not None and m.opcua.secured]
    items = []
    if any(m.opcua is not None and m.opcua.server_trust.line_ca for m in secured):
        items += [{"key": TRUST_BUNDLE, "path": OPCUA_TRUST_BUNDLE}, {"key": CRL, "path": OPCUA_CRL}]
    for machine in secured:
        if machine.opcua is not None and machine.opcua.server_trust.certificates:
            name = opcua_server_certificates_file(line.spec, machine)
            items.append({"key": name, "path": name})
    return items


def restricted_container_security() -> dict[str, Any]:
    """Return the container securityContext of the restricted Pod Security Standard (and a read-only root)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security() -> dict[str, Any]:
    """Return the pod securityContext of the restricted Pod Security Standard: the fixed uid/gid 65532."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def probed_container(
    name: str, image: str, settings: ConnectorSettings, argv: Sequence[str], port: int, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return a restricted container serving /healthz, /readyz and /metrics on the port `metrics`, probed there."""
    probe = {"port": "metrics"}
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [argv[0]],
        "args": list(argv[1:]),
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 5, "failureThreshold": 2},
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"memory": settings.memory_limit},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    }


def deployment(
    owner: Owner,
    line: PlantLine,
    connector: ConnectorTopology,
    settings: ConnectorSettings,
    *,
    config_hash: str,
    certificate_hash: str,
) -> dict[str, Any]:
    """Return one connector group's Deployment.

    One replica with the Recreate strategy: a Sparkplug edge node must never have two sessions at
    once (each process owns the bdSeq and the NDEATH will), and a rollout stops the old pod before
    it starts the new one. A deleted or evicted pod is another matter: its ReplicaSet starts the
    replacement at once, while the old pod may still be ending (docs/operator.md). The config and
    certificate hashes in the pod template roll the pod when either changes.
    """
    pod_labels = labels(owner, "connector", connector.group)
    tls_sources = []
    for identity in group_identities(line, connector):
        items = [
            {"key": "tls.crt", "path": f"{identity}.crt"},
            {"key": "tls.key", "path": f"{identity}.key"},
        ]
        if identity == connector.identity:
            items.append({"key": "ca.crt", "path": TRUST_BUNDLE})
        tls_sources.append({"secret": {"name": secret_name(owner, line, identity), "items": items}})
    trust_items = opcua_trust_items(line, connector)
    if trust_items:
        tls_sources.append({"configMap": {"name": trust_config_map_name(owner), "items": trust_items}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, deployment_name(owner, connector.group), "connector", connector.group),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(owner, "connector") | {CONNECTOR_LABEL: connector.group}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        CONFIG_HASH_ANNOTATION: config_hash,
                        CERTIFICATE_HASH_ANNOTATION: certificate_hash,
                    },
                },
                "spec": {
                    "serviceAccountName": service_account_name(owner),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # The volume's files are chowned once, not at every start of a pod with a full outbox.
                    "securityContext": restricted_pod_security() | {"fsGroupChangePolicy": "OnRootMismatch"},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        probed_container(
                            "connector",
                            settings.image,
                            settings,
                            ["plantline-connector", "run", "--config", str(CONFIG_FILE)],
                            METRICS_PORT,
                            [
                                {"name": "config", "mountPath": str(CONFIG_FILE), "subPath": "connector.yaml"},
                                {"name": "tls", "mountPath": str(TLS_DIR), "readOnly": True},
                                {"name": "data", "mountPath": str(DATA_DIR)},
                                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
                            ],
                        )
                    ],
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {
                                "name": config_map_name(owner),
                                "items": [{"key": f"{connector.group}.yaml", "path": "connector.yaml"}],
                            },
                        },
                        {"name": "tls", "projected": {"defaultMode": 0o440, "sources": tls_sources}},
                        # The outbox and bdSeq survive the pod: a rescheduled pod resumes from them.
                        {"name": "data", "persistentVolumeClaim": {"claimName": claim_name(owner, connector.group)}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }


MIB = 1 << 20
# SQLite's write-ahead log and the session state beside the outbox: a quarter more, and 64 MiB.
CLAIM_HEADROOM_SHARE = 0.25
CLAIM_HEADROOM_FIXED = 64 * MIB


def claim_size(outbox_max_bytes: int) -> str:
    """Return the storage request for an outbox bounded at `outbox_max_bytes`, in whole MiB."""
    wanted = outbox_max_bytes * (1 + CLAIM_HEADROOM_SHARE) + CLAIM_HEADROOM_FIXED
    return f"{-(-int(wanted) // MIB)}Mi"


def data_claim(owner: Owner, group: str, settings: ConnectorSettings, outbox_max_bytes: int) -> dict[str, Any]:
    """Return one connector group's PersistentVolumeClaim: ReadWriteOnce, sized from its outbox bound."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": claim_size(outbox_max_bytes)}},
    }
    if settings.storage_class is not None:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_metadata(owner, claim_name(owner, group), "connector", group),
        "spec": spec,
    }


def connector_claims(owner: Owner, line: PlantLine, settings: ConnectorSettings) -> list[dict[str, Any]]:
    """Return the durable volume of every connector group, each sized from that group's outbox bound."""
    configs = render_connector_configs(line, tls_dir=TLS_DIR, data_dir=DATA_DIR)
    return [
        data_claim(owner, connector.group, settings, configs[connector.group].outbox.max_bytes)
        for connector in topology(line.spec)
    ]


def dns_egress() -> dict[str, Any]:
    """Return the NetworkPolicy egress rule to the cluster's DNS (kube-dns, UDP and TCP 53)."""
    return {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """Where a connector must be able to connect: a host and a TCP port."""

    host: str
    port: int


def endpoint_of(protocol: PlcProtocol, endpoint: str) -> Endpoint:
    """Return the host and port of a (validated) PLC endpoint URL, with the protocol's default port."""
    parts = parse_endpoint(protocol, endpoint)
    return Endpoint(host=parts.host, port=parts.port)


def egress_rule(target: Endpoint) -> dict[str, Any]:
    """Return a NetworkPolicy egress rule to one endpoint: its port, and its address when it is an IP address."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": target.port}]}
    try:
        address = ipaddress.ip_address(target.host)
    except ValueError:
        return rule  # a DNS name: NetworkPolicy can only narrow it to the port
    rule["to"] = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    return rule


def network_policy(owner: Owner, line: PlantLine) -> dict[str, Any]:
    """Return the connectors' NetworkPolicy: egress only to the PLCs, the broker and DNS.

    Inbound, only the metrics port is open (Prometheus scrapes it; the probes come from the node).
    An endpoint given by DNS name is allowed by port only, as NetworkPolicy knows no host names.
    """
    spec = line.spec
    targets = {endpoint_of(m.protocol, m.endpoint) for m in spec.machines}
    targets.add(Endpoint(spec.broker.host, spec.broker.port))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, network_policy_name(owner), "connector"),
        "spec": {
            "podSelector": {"matchLabels": selector(owner, "connector")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
            "egress": [*(egress_rule(t) for t in sorted(targets)), dns_egress()],
        },
    }


def connector_deployments(
    owner: Owner,
    line: PlantLine,
    settings: ConnectorSettings,
    configs: Mapping[str, str],
    certificates: Mapping[str, CertificateMaterial],
) -> list[dict[str, Any]]:
    """Return every connector Deployment, hashing each group's config and its certificates."""
    out = []
    for connector in topology(line.spec):
        pems: Sequence[bytes] = [certificates[i].certificate for i in group_identities(line, connector)]
        out.append(
            deployment(
                owner,
                line,
                connector,
                settings,
                config_hash=digest([configs[connector.group].encode()]),
                certificate_hash=digest(pems),
            )
        )
    return out


__all__ = [
    "FIELD_MANAGER",
    "FINALIZER",
    "PAUSE_ANNOTATION",
    "CertificateMaterial",
    "ConnectorSettings",
    "Endpoint",
    "Owner",
    "certificate_secret",
    "child_metadata",
    "claim_name",
    "claim_size",
    "config_map",
    "connector_claims",
    "connector_configs",
    "connector_deployments",
    "connector_pod_monitor",
    "dashboard_config_maps",
    "data_claim",
    "deployment",
    "digest",
    "dns_egress",
    "egress_rule",
    "endpoint_of",
    "labels",
    "network_policy",
    "pod_monitor",
    "pod_monitor_name",
    "probed_container",
    "prometheus_rule",
    "restricted_container_security",
    "restricted_pod_security",
    "rules_config_map",
    "secret_name",
    "selector",
    "service_account",
    "trust_config_map",
]
