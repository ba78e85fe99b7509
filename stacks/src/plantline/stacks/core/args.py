"""The core stack's arguments: a single-site plant's defaults, every one overridable by `pulumi config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pulumi

NAMESPACE = "plantline-system"  # operator/deploy's namespace: the core stack deploys into it
EMQX_IMAGE = "emqx/emqx:5.8.6"  # the last Apache-2.0 EMQX line
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
GRAFANA_IMAGE = "grafana/grafana:12.1.1"
# The sidecar of Grafana's Helm chart: loads labelled ConfigMaps into a folder, then pings a URL.
SIDECAR_IMAGE = "kiwigrid/k8s-sidecar:1.30.7"
POSTGRES_IMAGE = "postgres:16.10"
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.21.3-pg16"

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The broker's TLS listener: its server certificate and key (PEM), and the CA bundle clients trust."""

    certificate: pulumi.Input[str]
    key: pulumi.Input[str]  # keep it a secret Output: it lands in a Secret only
    ca_bundle: pulumi.Input[str]


@dataclass(frozen=True, slots=True)
class CoreArgs:
    """What the core side is made of. Secrets (`tls.key`, the passwords, the API secret) stay Outputs."""

    tls: BrokerTls
    emqx_api_secret: pulumi.Input[str]
    grafana_admin_password: pulumi.Input[str]
    postgres_password: pulumi.Input[str]
    operator_manifests: Path
    operator_image: str = "plantline-operator:0.1.0"
    connector_image: str = "plantline-connectors:0.1.0"
    broker_replicas: int = 1
    broker_image: str = EMQX_IMAGE
    broker_service_type: ServiceType = "ClusterIP"
    broker_storage: str = "1Gi"
    emqx_api_key: str = "plantline"
    prometheus_image: str = PROMETHEUS_IMAGE
    prometheus_retention: str = "15d"
    grafana_image: str = GRAFANA_IMAGE
    sidecar_image: str = SIDECAR_IMAGE
    timescaledb: bool = False
    postgres_image: str | None = None  # None: POSTGRES_IMAGE, or TIMESCALEDB_IMAGE with timescaledb
    postgres_storage: str = "8Gi"
    postgres_database: str = "historian"
    postgres_user: str = "historian"
    storage_class: str | None = None  # None: the cluster's default StorageClass
    # Scheduling for every pod the stack makes (the operator's included), e.g. onto tainted nodes.
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    # The operator's pod alone, when it runs elsewhere than the rest (None: the node selector above).
    operator_node_selector: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.broker_replicas < 1:
            raise ValueError(f"broker_replicas must be at least 1, not {self.broker_replicas}")

    @property
    def database_image(self) -> str:
        """Return the PostgreSQL image: the one named, else TimescaleDB's or PostgreSQL's default."""
        if self.postgres_image is not None:
            return self.postgres_image
        return TIMESCALEDB_IMAGE if self.timescaledb else POSTGRES_IMAGE
