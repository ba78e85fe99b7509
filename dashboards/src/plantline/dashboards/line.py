"""The line as the dashboards and rules see it: plain data, made by whoever parsed the PlantLine.

The dashboards import no operator module: the operator (and its CLI) turns a validated PlantLine
into a `LineView`, and everything here is computed from that. The outbox bounds default to the
connectors' own (`OutboxSettings`), so a threshold follows the bound the connectors enforce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from plantline.connectors.config import OutboxSettings
from plantline.connectors.metric_names import SOURCE_CONNECTED

# Target labels every scrape of a line's programs carries (the scrape configuration adds them):
# the ISA-95 site and line, and which program answered. A connector's own labels name the device.
SITE_LABEL: Final = "site"
LINE_LABEL: Final = "line"
COMPONENT_LABEL: Final = "component"
CONNECTOR_LABEL: Final = "connector"  # a connector's group
DEVICE_LABEL: Final = SOURCE_CONNECTED.labels[0]

CONNECTOR: Final = "connector"
BROKER: Final = "broker"
PKI: Final = "pki"
OPERATOR: Final = "operator"
API: Final = "api"  # the historian's KPI API of the line
# The cloud bridge to Kafka (plantline-bridge), named as the operator names its pods' component; not
# the broker's own MQTT bridge to a core broker (`LineView.bridge`, watched through the broker's $SYS).
CLOUD_BRIDGE: Final = "bridge"
COMPONENTS: Final = (CONNECTOR, BROKER, PKI, OPERATOR, API, CLOUD_BRIDGE)

DEFAULT_RUNBOOK_BASE: Final = "https://example.invalid/plantline/blob/main/runbooks"

_OUTBOX = OutboxSettings.model_fields


@dataclass(frozen=True, slots=True)
class MachineView:
    """One machine: its Sparkplug device id, protocol and the canonical signals it is read for."""

    id: str
    protocol: str
    signals: tuple[str, ...] = ()

    @property
    def computes_kpis(self) -> bool:
        """Whether the connector computes this machine's KPIs (it does when a state.* signal is read)."""
        return any(signal.startswith("state.") for signal in self.signals)


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """One connector process of the line (its group name, as its `connector` target label) and its machines."""

    group: str
    machines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineView:
    """One line: where it is, its machines and connectors, its broker and its certificate policy."""

    name: str  # the PlantLine's name: dashboards' uids and the operator's `plantline` label
    namespace: str
    site: str
    area: str
    line: str
    machines: tuple[MachineView, ...]
    connectors: tuple[ConnectorView, ...]
    bridge: str | None = None  # the bridge connection's name, when the broker bridges to a core
    cloud_bridge: bool = False  # whether the line runs the cloud bridge to Kafka: its board, rules and SLO
    renew_before_days: float = 30.0
    maintenance_window: bool = False
    outbox_max_bytes: int = field(default=_OUTBOX["max_bytes"].default)
    outbox_max_age_s: float = field(default=_OUTBOX["max_age_s"].default)
    runbook_base: str = DEFAULT_RUNBOOK_BASE

    @property
    def title(self) -> str:
        return f"{self.site}/{self.area}/{self.line}"

    @property
    def machine_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.machines)
