"""From what the Sparkplug host released to rows for the database; pure.

A device metric becomes a sample of the series (machine, signal), keyed by its source timestamp;
the edge's own KPI metrics (`kpi/*`, `fault/active_code`) become one KPI snapshot per machine and
timestamp; births and deaths change a machine's online status. Node metrics (bdSeq, Node Control)
are the session's, not samples. Values that are neither numbers, booleans nor text (bytes,
arrays, data sets, templates) are counted and left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from plantline.connectors.kpi import SPARKPLUG_METRICS as KPI_METRICS
from plantline.connectors.samples import Quality
from plantline.connectors.sparkplug import MessageType
from plantline.connectors.sparkplug.host import NodeKey, Release

QUALITY_CODES = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
KPI_COLUMNS = {
    "kpi/oee": "oee",
    "kpi/availability": "availability",
    "kpi/performance": "performance",
    "kpi/quality": "quality",
    "kpi/mttr_s": "mttr_s",
    "kpi/mtbf_s": "mtbf_s",
    "fault/active_code": "active_fault_code",
}
# The newest sample the edge computed a snapshot from, as it states it (kpi_snapshots.data_until).
DATA_UNTIL_METRIC = "kpi/data_until"
if {*KPI_COLUMNS, DATA_UNTIL_METRIC} != set(KPI_METRICS):  # the edge's KPI metrics are defined once, in connectors.kpi
    raise RuntimeError(f"KPI columns {sorted(KPI_COLUMNS)} do not match the edge's {sorted(KPI_METRICS)}")


@dataclass(frozen=True, slots=True)
class MachineKey:
    """A machine as Sparkplug names it: its edge node and device id."""

    group_id: str
    edge_node_id: str
    device_id: str


# (machine, signal, datatype code, source ts in ms, value, text value, quality code)
SampleRow = tuple[MachineKey, str, int, int, float | None, str | None, int]


@dataclass(slots=True)
class Rows:
    """The rows of a batch of released messages."""

    samples: list[SampleRow] = field(default_factory=list)
    kpis: dict[tuple[MachineKey, int], dict[str, float | int | None]] = field(default_factory=dict)
    status: dict[MachineKey, tuple[bool, int]] = field(default_factory=dict)  # online, since (ms)
    skipped: int = 0  # metrics whose values are not storable
    # Per machine, the newest source timestamp received so far (kept across batches by the caller):
    # a KPI snapshot whose edge does not state `kpi/data_until` (an older connector) records it as
    # `data_until`. Only a guess: a snapshot replayed from the edge's outbox after an outage arrives
    # behind samples its engine had not read when it computed it.
    horizons: dict[MachineKey, int] = field(default_factory=dict)

    def add(self, release: Release[Any], now_ms: int) -> None:
        """Add what one released message carries."""
        node, device = release.node, release.device_id
        if node is None:
            return
        if device is None:
            if release.kind is MessageType.NDEATH:
                self._node_down(node, now_ms)
            return
        machine = MachineKey(node.group_id, node.edge_node_id, device)
        if release.kind in (MessageType.DBIRTH, MessageType.DDEATH):
            self.status[machine] = (release.kind is MessageType.DBIRTH, now_ms)
        self._add_metrics(machine, release)

    def _node_down(self, node: NodeKey, now_ms: int) -> None:
        self.status[MachineKey(node.group_id, node.edge_node_id, "")] = (False, now_ms)

    def _add_metrics(self, machine: MachineKey, release: Release[Any]) -> None:
        append = self.samples.append
        newest = self.horizons.get(machine, -1)
        good = Quality.GOOD
        for name, datatype, value, ts, quality, _ in release.metrics:
            column = KPI_COLUMNS.get(name)
            if column is not None or name == DATA_UNTIL_METRIC:
                snapshot = self.kpis.setdefault((machine, ts), {})
                number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
                if column is None:  # stated by the edge: it wins over the guess, whichever metric came first
                    snapshot["data_until"] = None if number is None else int(number)
                else:
                    snapshot[column] = number
                    snapshot.setdefault("data_until", None if newest < 0 else newest)
                continue
            newest = max(newest, ts)
            code = 0 if quality is good else QUALITY_CODES[quality]  # hashing an enum member runs Python code
            if value is None or type(value) is float:
                append((machine, name, datatype, ts, value, None, code))
            elif isinstance(value, int | float):  # bools and float subclasses as well
                append((machine, name, datatype, ts, float(value), None, code))
            elif isinstance(value, str):
                append((machine, name, datatype, ts, None, value, code))
            else:
                self.skipped += 1
        if newest >= 0:
            self.horizons[machine] = newest

    def extend(self, releases: Iterable[Release[Any]], now_ms: int) -> None:
        for release in releases:
            self.add(release, now_ms)


def is_counter(signal: str) -> bool:
    return signal.startswith("counter.")
