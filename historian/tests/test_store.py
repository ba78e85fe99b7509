"""Batches into PostgreSQL: COPY, staging, ON CONFLICT; each sample lands once; partitions by day."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantline.connectors.kpi import CounterRules
from plantline.connectors.samples import Quality
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.config import LineSettings
from plantline.historian.rows import Rows
from plantline.historian.schema import migrate
from plantline.historian.store import STAGED_AFTER_CONFLICT, Store, connect, partition_name

pytestmark = pytest.mark.peer

T0 = 1_763_800_000_000  # 2025-11-22 08:26:40 UTC
NODE = NodeKey("site1", "line1")
LINE = LineSettings(site="plant", line="l1", group_id="site1", edge_node_ids=["line1"])


def ddata(device: str, *metrics: tuple[str, DataType, object, int], token: int = 0) -> Release[object]:
    hosted = tuple(HostMetric(n, t, v, ts, Quality.GOOD, False) for n, t, v, ts in metrics)
    return Release(token, MessageType.DDATA, NODE, device, hosted)


@pytest.fixture
def store(dsn: str) -> Store:
    conn = connect(dsn)
    migrate(conn)
    return Store(conn, [LINE])


def count(store: Store, sql: str) -> int:
    row = store.conn.execute(sql).fetchone()
    store.conn.commit()
    assert row is not None
    return int(row[0])


def test_each_sample_lands_once_however_often_it_is_written(store: Store) -> None:
    rows = Rows()
    rows.add(ddata("filler", ("counter.good", DataType.UInt32, 7, T0), ("process.t", DataType.Double, 2.5, T0)), T0)
    rows.add(ddata("filler", ("counter.good", DataType.UInt32, 7, T0), ("process.t", DataType.Double, 2.5, T0)), T0)
    first = store.write(rows, messages=2)
    assert (first.received, first.inserted, first.newest_ms) == (4, 2, T0)
    again = Rows()
    again.add(
        ddata("filler", ("counter.good", DataType.UInt32, 7, T0), ("counter.good", DataType.UInt32, 8, T0 + 1)), T0
    )
    second = store.write(again, messages=1)
    assert (second.received, second.inserted) == (2, 1)
    assert count(store, "SELECT count(*) FROM samples") == 3
    spans = store.conn.execute("SELECT count(*) FROM dirty_spans WHERE batch_id = %s", (second.batch_id,)).fetchone()
    assert spans == (1,)
    site_line = store.conn.execute("SELECT site, line, device_id FROM machines").fetchall()
    assert site_line == [("plant", "l1", "filler")]


def test_text_booleans_and_nulls_keep_their_values(store: Store) -> None:
    rows = Rows()
    tricky = "tab\there\nnew\\line"
    rows.add(
        ddata(
            "capper",
            ("state.run", DataType.Boolean, True, T0),
            ("process.recipe", DataType.String, tricky, T0),
            ("process.t", DataType.Double, None, T0),
        ),
        T0,
    )
    store.write(rows, messages=1)
    got = {
        signal: (value, text)
        for signal, value, text in store.conn.execute(
            "SELECT s.signal, x.value, x.text_value FROM samples x JOIN series s ON s.id = x.series_id"
        )
    }
    assert got == {"state.run": (1.0, None), "process.recipe": (None, tricky), "process.t": (None, None)}


def test_partitions_are_created_for_the_days_written_and_ahead(store: Store) -> None:
    day = dt.date(2025, 11, 22)
    store.create_ahead(day, 2)
    rows = Rows()
    old = T0 - 40 * 86_400_000  # a replay from weeks ago gets its own partition
    rows.add(ddata("filler", ("counter.good", DataType.UInt32, 1, old)), T0)
    store.write(rows, messages=1)
    names = {r[0] for r in store.conn.execute("SELECT relname FROM pg_class WHERE relname LIKE 'samples_%'")}
    expected = {partition_name(day + dt.timedelta(days=n)) for n in range(-1, 3)} | {"samples_20251013"}
    assert expected <= names


def test_retention_drops_whole_days(store: Store) -> None:
    from plantline.historian.config import RetentionSettings

    rows = Rows()
    rows.add(ddata("filler", ("counter.good", DataType.UInt32, 1, T0 - 10 * 86_400_000)), T0)
    rows.add(ddata("filler", ("counter.good", DataType.UInt32, 2, T0)), T0)
    store.write(rows, messages=1)
    for ts in (T0 - 10 * 86_400_000, T0):  # the KPI engine's checkpoints go with the samples
        store.conn.execute(
            "INSERT INTO kpi_checkpoints (machine_id, ts, config, state)"
            " SELECT id, at_ms(%s), 'k', 'PLKE' FROM machines",
            (ts,),
        )
    store.conn.commit()
    dropped = store.drop_expired(dt.date(2025, 11, 22), RetentionSettings(samples_days=5))
    assert dropped == ["samples_20251112"]
    assert count(store, "SELECT count(*) FROM samples") == 1
    assert count(store, "SELECT count(*) FROM kpi_checkpoints") == 1
    assert count(store, "SELECT ms(min(ts)) FROM kpi_checkpoints") == T0


def test_kpi_metrics_become_snapshots_and_births_status(store: Store) -> None:
    rows = Rows()
    rows.add(ddata("filler", ("kpi/oee", DataType.Double, 0.5, T0), ("fault/active_code", DataType.Int32, 0, T0)), T0)
    rows.add(Release(1, MessageType.DBIRTH, NODE, "filler", ()), T0)
    store.write(rows, messages=2)
    assert store.conn.execute("SELECT oee, active_fault_code FROM kpi_snapshots").fetchall() == [(0.5, 0)]
    assert store.conn.execute("SELECT online FROM node_status").fetchall() == [(True,)]
    down = Rows()
    down.add(Release(2, MessageType.NDEATH, NODE, None, ()), T0 + 1)
    store.write(down, messages=1)
    assert store.conn.execute("SELECT online FROM node_status").fetchall() == [(False,)]


@settings(max_examples=200, deadline=None)
@given(
    bits=st.sampled_from([16, 32]),
    prev=st.integers(min_value=-(2**31), max_value=2**32 - 1),
    cur=st.integers(min_value=-(2**31), max_value=2**32 - 1),
)
def test_the_sql_counter_increment_is_the_kpi_engines(shared_store: Store, bits: int, prev: int, cur: int) -> None:
    rules = CounterRules(bits=bits)
    expected, _ = rules.increment(rules.normalise(prev), rules.normalise(cur))
    row = shared_store.conn.execute(
        "SELECT counter_increment(counter_normalise(%s, %s), counter_normalise(%s, %s), %s)",
        (prev, bits, cur, bits, bits),
    ).fetchone()
    assert row is not None
    assert row[0] == expected


@pytest.fixture(scope="module")
def shared_store(cluster: object) -> Store:
    from plantline_testing.postgres import PostgresCluster

    assert isinstance(cluster, PostgresCluster)
    conn = connect(cluster.dsn)
    migrate(conn)
    return Store(conn)


def test_a_snapshot_stores_the_data_until_its_edge_stated(store: Store) -> None:
    rows = Rows()
    rows.add(ddata("filler", ("counter.good", DataType.UInt32, 3, T0 + 500)), T0)
    stated = ("kpi/data_until", DataType.DateTime, T0 - 200, T0)
    rows.add(ddata("filler", ("kpi/oee", DataType.Double, 0.5, T0), stated), T0)
    store.write(rows, messages=2)
    row = store.conn.execute("SELECT ms(data_until) FROM kpi_snapshots").fetchone()
    assert row == (T0 - 200,)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
)
_BATCH = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 5), _VALUES), max_size=12)
_examples = iter(range(10**9))


def _stored(value: object) -> tuple[float | None, str | None]:
    if value is None or isinstance(value, str):
        return None, value
    assert isinstance(value, int | float)
    return float(value), None


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(_BATCH, min_size=1, max_size=STAGED_AFTER_CONFLICT + 4))
def test_batches_store_what_on_conflict_do_nothing_keeps(
    shared_store: Store, batches: list[list[tuple[str, int, object]]]
) -> None:
    # Whether a batch is COPied straight in or staged after a conflict, the first write of a key wins.
    device = f"d{next(_examples)}"
    kept: dict[tuple[str, int], tuple[float | None, str | None]] = {}
    for batch in batches:
        rows = Rows()
        types = {str: DataType.String, bool: DataType.Boolean, int: DataType.Int64, float: DataType.Double}
        rows.add(ddata(device, *((s, types.get(type(v), DataType.Double), v, T0 + t) for s, t, v in batch)), T0)
        new = {(s, t): _stored(v) for s, t, v in reversed(batch) if (s, t) not in kept}
        result = shared_store.write(rows, messages=1)
        assert (result.received, result.inserted) == (len(batch), len(new))
        kept.update(new)
        spans = shared_store.conn.execute(
            "SELECT s.signal, ms(d.from_ts), ms(d.to_ts) FROM dirty_spans d JOIN series s ON s.id = d.series_id"
            " WHERE d.batch_id = %s",
            (result.batch_id,),
        ).fetchall()
        signals = {s for s, _, _ in batch}
        expected = {
            (s, T0 + min(t for x, t, _ in batch if x == s), T0 + max(t for x, t, _ in batch if x == s)) for s in signals
        }
        assert set(spans) == expected
    got = shared_store.conn.execute(
        "SELECT s.signal, ms(x.ts), x.value, x.text_value FROM samples x JOIN series s ON s.id = x.series_id"
        " JOIN machines m ON m.id = s.machine_id WHERE m.device_id = %s",
        (device,),
    ).fetchall()
    shared_store.conn.commit()
    assert {(s, ts - T0): (v, x) for s, ts, v, x in got} == kept
