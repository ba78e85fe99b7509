"""Released messages into rows: a KPI snapshot's `data_until` is the edge's word, else the horizon."""

from __future__ import annotations

import pytest

from plantline.connectors.samples import Quality
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.rows import MachineKey, Rows

T0 = 1_763_800_000_000
NODE = NodeKey("site1", "line1")
FILLER = MachineKey("site1", "line1", "filler")
Metric = tuple[str, DataType, object, int]


def ddata(*metrics: Metric) -> Release[object]:
    hosted = tuple(HostMetric(n, t, v, ts, Quality.GOOD, False) for n, t, v, ts in metrics)
    return Release(0, MessageType.DDATA, NODE, "filler", hosted)


def kpis(at: int, stated: tuple[int | None, ...] = ()) -> list[Metric]:
    """The edge's KPI metrics at `at`, with `kpi/data_until` first when `stated` holds a value."""
    figures: list[Metric] = [("kpi/oee", DataType.Double, 0.5, at), ("fault/active_code", DataType.Int32, 0, at)]
    return [("kpi/data_until", DataType.DateTime, value, at) for value in stated] + figures


def test_a_snapshot_without_a_stated_data_until_gets_the_newest_sample_received_before_it() -> None:
    rows = Rows()
    rows.add(ddata(("counter.good", DataType.UInt32, 1, T0), ("counter.good", DataType.UInt32, 2, T0 + 900)), T0)
    rows.add(ddata(*kpis(T0 + 1000)), T0)
    assert rows.kpis[(FILLER, T0 + 1000)] == {"oee": 0.5, "active_fault_code": 0, "data_until": T0 + 900}


@pytest.mark.parametrize("stated_first", [True, False])
def test_the_edges_stated_data_until_wins_over_the_horizon(stated_first: bool) -> None:
    rows = Rows()
    # A snapshot replayed from the outbox after an outage: samples its engine had not read arrive first.
    rows.add(ddata(("counter.good", DataType.UInt32, 7, T0 + 5000)), T0)
    metrics = kpis(T0 + 1000, stated=(T0 + 800,))
    rows.add(ddata(*(metrics if stated_first else reversed(metrics))), T0)
    assert rows.kpis[(FILLER, T0 + 1000)] == {"oee": 0.5, "active_fault_code": 0, "data_until": T0 + 800}
    assert [row[3] for row in rows.samples] == [T0 + 5000]  # the stated time is no sample
    assert rows.horizons[FILLER] == T0 + 5000


def test_a_stated_null_data_until_stays_null() -> None:
    rows = Rows()
    rows.add(ddata(("counter.good", DataType.UInt32, 7, T0)), T0)
    rows.add(ddata(*kpis(T0 + 1000, stated=(None,))), T0)
    assert rows.kpis[(FILLER, T0 + 1000)]["data_until"] is None
