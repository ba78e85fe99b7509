"""KPI minutes, states and faults in the database, refreshed from what ingest added."""

from __future__ import annotations

import pytest

from plantline.connectors.config import KpiSettings
from plantline.connectors.samples import Sample
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.config import HistorianConfig, LineSettings
from plantline.historian.kpi import KPI_SIGNALS, MINUTE_MS, combine, replay_minutes
from plantline.historian.kpi_refresh import refresh_kpis
from plantline.historian.rows import Rows
from plantline.historian.schema import migrate
from plantline.historian.store import Store, connect
from plantline_testing.machines import T0, simulated_samples

pytestmark = pytest.mark.peer

LINE = LineSettings(
    site="s", line="l", group_id="site1", edge_node_ids=["line1"], machines={"filler": KpiSettings(ideal_cycle_s=0.5)}
)
CONFIG = HistorianConfig.model_validate(
    {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "insecure_plaintext": True}]},
        "database": {"dsn": "x"},
        "lines": [LINE],
    }
)
TYPES = {"state": DataType.Boolean, "counter": DataType.UInt32, "fault": DataType.Int32, "cycle": DataType.Double}


def _write(store: Store, samples: list[Sample]) -> None:
    rows = Rows()
    metrics = tuple(
        HostMetric(s.signal, TYPES[s.signal.split(".")[0]], s.value, s.source_ts_ms, s.quality, False) for s in samples
    )
    rows.add(Release(0, MessageType.DDATA, NodeKey("site1", "line1"), "filler", metrics), T0)
    store.write(rows, messages=1)


def test_minutes_in_the_database_are_the_engines_and_late_data_recomputes_them(dsn: str) -> None:
    conn = connect(dsn)
    migrate(conn)
    store = Store(conn, [LINE])
    samples = list(simulated_samples("filler", 1800, signals=KPI_SIGNALS))
    early = [s for s in samples if s.source_ts_ms < T0 + 10 * MINUTE_MS]
    late = [s for s in samples if s.source_ts_ms >= T0 + 10 * MINUTE_MS]
    _write(store, late[: len(late) // 2])
    refresh_kpis(conn, CONFIG)
    _write(store, early)  # a replay of older data after newer data
    _write(store, late[len(late) // 2 :])
    result = refresh_kpis(conn, CONFIG)
    assert result.spans == 1
    expected = replay_minutes("filler", LINE.kpi_config("filler"), [], samples, start_ms=T0)
    stored = conn.execute("SELECT run_ms, total, ideal_work_us FROM kpi_minutes ORDER BY bucket").fetchall()
    assert stored == [(m.run_ms, m.total, m.ideal_work_us) for m in expected.minutes]
    assert combine(expected.minutes).total > 0
    states = conn.execute("SELECT (extract(epoch FROM ts) * 1000)::bigint, state FROM machine_states ORDER BY ts")
    assert [tuple(r) for r in states] == list(expected.states)
    faults = conn.execute("SELECT count(*) FROM faults").fetchone()
    assert faults == (len(expected.faults),)
