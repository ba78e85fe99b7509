"""KPI minutes, states and faults in the database, refreshed from what ingest added."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plantline.connectors.config import KpiSettings
from plantline.connectors.kpi import KpiEngine
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.api.app import create_app
from plantline.historian.api.models import KpiFigures
from plantline.historian.api.server import open_pool
from plantline.historian.config import ApiSettings, DatabaseSettings, HistorianConfig, LineSettings
from plantline.historian.kpi import (
    KPI_SIGNALS,
    MINUTE_MS,
    combine,
    current_body,
    replay_checkpoints,
    replay_minutes,
    replay_window,
)
from plantline.historian.kpi_refresh import refresh_kpis
from plantline.historian.rows import Rows
from plantline.historian.schema import migrate
from plantline.historian.store import Connection, Store, connect
from plantline_testing.machines import T0, roughened, simulated_samples

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


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


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


ROUGH = LineSettings(
    site="s", line="l", group_id="site1", edge_node_ids=["line1"],
    machines={"filler": KpiSettings(ideal_cycle_s=0.5, counter_bits=16)},
)  # fmt: skip


@pytest.fixture
def api(dsn: str, tmp_path: Path) -> Iterator[tuple[Store, HistorianConfig, TestClient]]:
    (tmp_path / "tokens").write_text("t\n")
    config = CONFIG.model_copy(update={"lines": [ROUGH], "api": ApiSettings(token_file=tmp_path / "tokens")})
    conn = connect(dsn)
    migrate(conn)
    store = Store(conn, [ROUGH])
    with (
        open_pool(config.model_copy(update={"database": DatabaseSettings(dsn=dsn)}), max_size=2) as pool,
        TestClient(create_app(config, pool), headers={"Authorization": "Bearer t"}) as client,
    ):
        yield store, config, client
    conn.close()


def _rough(seconds: int, *, seed: int) -> list[Sample]:
    """Return the filler's KPI samples with counters that roll over at 16 bits and now and then a bad one."""
    samples = simulated_samples("filler", seconds, seed=seed, signals=KPI_SIGNALS)
    return list(roughened(samples, counter_offset=65_000, bits=16, bad_every=53))


def _answers(client: TestClient, times: list[int]) -> list[Any]:
    return [client.get("/kpi/current", params={"machine": "filler", "at": _iso(at)}).json()[0] for at in times]


def _replayed(samples: list[Sample], times: list[int]) -> list[dict[str, Any]]:
    config = ROUGH.kpi_config("filler")
    return [current_body(replay_window("filler", config, [], samples, at_ms=at).window) for at in times]


def _same(answers: list[Any], bodies: list[dict[str, Any]]) -> bool:
    names = ("mttr_s", "mtbf_s", "fault_count", "warnings")
    return all(
        a["window"] == {k: b[k] for k in a["window"]} and all(a[k] == b[k] for k in names)
        for a, b in zip(answers, bodies, strict=True)
    )


def test_late_data_invalidates_the_checkpoints_after_it_and_answers_stay_the_full_replays(
    api: tuple[Store, HistorianConfig, TestClient],
) -> None:
    store, config, client = api
    samples = _rough(2400, seed=5)
    late = [s for s in samples if T0 + 8 * MINUTE_MS <= s.source_ts_ms < T0 + 12 * MINUTE_MS]
    first = [s for s in samples if s.source_ts_ms < T0 + 20 * MINUTE_MS and s not in late]
    _write(store, first)
    refresh_kpis(store.conn, config)
    _write(store, [s for s in samples if s.source_ts_ms >= T0 + 20 * MINUTE_MS])
    refresh_kpis(store.conn, config)
    times = [T0 + n * 97_531 for n in range(5, 26)]
    assert _same(_answers(client, times), _replayed([s for s in samples if s not in late], times))
    _write(store, late)  # an outbox replay: it lands before the checkpoints from minute 8 on
    assert _same(_answers(client, times), _replayed(samples, times))  # not refreshed yet: those are not used
    refresh_kpis(store.conn, config)
    assert _same(_answers(client, times), _replayed(samples, times))
    stored = store.conn.execute("SELECT ms(ts), state FROM kpi_checkpoints ORDER BY ts").fetchall()
    store.conn.commit()
    kpis = ROUGH.kpi_config("filler")
    single = [(T0, KpiEngine("filler", kpis).checkpoint())]
    single += replay_checkpoints(KpiEngine("filler", kpis), samples, after_ms=T0)
    assert [(int(m), bytes(s)) for m, s in stored] == single


def test_mtbf_reaches_back_before_the_window_as_the_edges_engine_does(
    api: tuple[Store, HistorianConfig, TestClient],
) -> None:
    store, config, client = api

    def s(signal: str, value: bool, t_s: int) -> Sample:
        return Sample("filler", signal, value, Quality.GOOD, T0 + t_s * 1000)

    _write(store, [s("state.run", True, 0), s("fault.active", False, 0), s("fault.active", True, 60),
                   s("fault.active", False, 70), s("fault.active", True, 1800), s("fault.active", False, 1830),
                   s("state.run", True, 1860)])  # fmt: skip
    refresh_kpis(store.conn, config)
    (got,) = client.get("/kpi/current", params={"machine": "filler", "at": _iso(T0 + 1900_000)}).json()
    assert (got["fault_count"], got["mtbf_s"], got["mttr_s"]) == (1, 1730.0, 30.0)
    (kept,) = client.get("/kpi/current", params={"machine": "filler"}).json()
    assert kept["window"]["end_ms"] == T0 + 1860_000
    assert kept["mtbf_s"] == 1730.0


def _back_to_version_2(conn: Connection) -> None:
    """Take the database back to what migrations 0001 and 0002 leave (what a historian before checkpoints ran)."""
    conn.execute("DROP TABLE kpi_checkpoints")
    conn.execute("DROP INDEX faults_started, faults_ended")
    conn.execute("ALTER FUNCTION ms(timestamptz) IMMUTABLE")
    conn.execute("DELETE FROM schema_migrations WHERE version > 2")
    conn.commit()


def test_a_database_from_before_checkpoints_migrates_and_its_windows_stay_whole(
    api: tuple[Store, HistorianConfig, TestClient],
) -> None:
    store, config, client = api
    samples = _rough(3600, seed=8)
    _write(store, [s for s in samples if s.source_ts_ms < T0 + 40 * MINUTE_MS])
    refresh_kpis(store.conn, config)
    faults = store.conn.execute("SELECT * FROM faults ORDER BY started_at").fetchall()
    _back_to_version_2(store.conn)
    assert migrate(store.conn) == [3, 4]
    assert migrate(store.conn) == []
    assert store.conn.execute("SELECT * FROM faults ORDER BY started_at").fetchall() == faults
    store.conn.commit()
    _write(store, [s for s in samples if s.source_ts_ms >= T0 + 40 * MINUTE_MS])
    times = [T0 + n * 131_071 for n in range(2, 28)]

    def windows() -> list[Any]:
        return [answer["window"] for answer in _answers(client, times)]

    replayed = [{k: body[k] for k in KpiFigures.model_fields} for body in _replayed(samples, times)]
    assert windows() == replayed  # no checkpoint yet: each window replayed
    refresh_kpis(store.conn, config)
    # The chain starts at the new data, from a replay of the window before it: its windows are whole.
    first = store.conn.execute("SELECT ms(min(ts)), count(*) FROM kpi_checkpoints").fetchone()
    store.conn.commit()
    assert first is not None
    assert (first[0], first[1] > 15) == (T0 + 40 * MINUTE_MS, True)
    assert windows() == replayed
    (kept,) = client.get("/kpi/current", params={"machine": "filler"}).json()
    newest = max(s.source_ts_ms for s in samples)
    (body,) = _replayed(samples, [newest])
    assert kept["window"] == {k: body[k] for k in KpiFigures.model_fields}


def test_a_machine_without_a_checkpoint_is_replayed_from_the_values_before_its_window(
    api: tuple[Store, HistorianConfig, TestClient],
) -> None:
    store, _, client = api

    def s(signal: str, value: bool | int | None, t_s: int) -> Sample:
        return Sample("filler", signal, value, Quality.GOOD if value is not None else Quality.BAD, T0 + t_s * 1000)

    # The counter's last reading before the window's lead-in is bad: the engine counts on from the one before.
    samples = [s("state.run", True, 0), s("counter.good", 10, 0), s("counter.good", 20, 30),
               s("counter.good", None, 60), s("counter.good", 40, 1200), s("counter.good", 45, 1500)]  # fmt: skip
    _write(store, samples)  # not refreshed: no checkpoint yet
    times = [T0 + 1700_000, T0 + 1800_000]
    (body_a, body_b) = _replayed(samples, times)
    assert (body_a["good"], body_b["good"]) == (25, 25)
    assert [a["window"] for a in _answers(client, times)] == [
        {k: body[k] for k in KpiFigures.model_fields} for body in (body_a, body_b)
    ]
