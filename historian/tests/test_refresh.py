"""Rollups from the spans ingest added: values per bucket, counters as increases, late data re-rolled."""

from __future__ import annotations

import pytest
from psycopg import sql

from plantline.connectors.samples import Quality
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.refresh import refresh_rollups
from plantline.historian.rows import Rows
from plantline.historian.schema import migrate
from plantline.historian.store import Store, connect

pytestmark = pytest.mark.peer

T0 = 1_763_769_600_000  # 2025-11-22 00:00:00 UTC, a whole hour
MIN = 60_000


def write(store: Store, signal: str, points: list[tuple[int, float]]) -> None:
    rows = Rows()
    metrics = tuple(HostMetric(signal, DataType.Double, v, T0 + ts, Quality.GOOD, False) for ts, v in points)
    rows.add(Release(0, MessageType.DDATA, NodeKey("site1", "line1"), "filler", metrics), T0)
    store.write(rows, messages=1)


def rollup(store: Store, table: str, signal: str) -> dict[int, tuple[object, ...]]:
    query = sql.SQL(
        "SELECT (extract(epoch FROM bucket) * 1000)::bigint - %s, n, min, max, sum, last, increase FROM {} r"
        " JOIN series s ON s.id = r.series_id WHERE s.signal = %s ORDER BY bucket"
    ).format(sql.Identifier(table))
    rows = store.conn.execute(query, (T0, signal)).fetchall()
    store.conn.commit()
    return {int(r[0]): tuple(r[1:]) for r in rows}


@pytest.fixture
def store(dsn: str) -> Store:
    conn = connect(dsn)
    migrate(conn)
    return Store(conn)


def test_values_roll_up_per_minute_five_minutes_and_hour(store: Store) -> None:
    write(store, "process.t", [(0, 1.0), (30_000, 3.0), (MIN + 1, 5.0), (6 * MIN, 7.0)])
    result = refresh_rollups(store.conn)
    assert result.spans == 1
    assert rollup(store, "rollup_1m", "process.t") == {
        0: (2, 1.0, 3.0, 4.0, 3.0, None),
        MIN: (1, 5.0, 5.0, 5.0, 5.0, None),
        6 * MIN: (1, 7.0, 7.0, 7.0, 7.0, None),
    }
    assert rollup(store, "rollup_5m", "process.t") == {
        0: (3, 1.0, 5.0, 9.0, 5.0, None),
        5 * MIN: (1, 7.0, 7.0, 7.0, 7.0, None),
    }
    assert rollup(store, "rollup_1h", "process.t") == {0: (4, 1.0, 7.0, 16.0, 7.0, None)}
    assert refresh_rollups(store.conn).spans == 0, "nothing new: nothing to do"


def test_counters_roll_up_as_increases_with_resets_and_late_readings(store: Store) -> None:
    write(store, "counter.good", [(0, 10.0), (30_000, 15.0), (MIN, 20.0), (2 * MIN, 3.0)])  # a reset to 3
    refresh_rollups(store.conn)
    increases = {k: v[-1] for k, v in rollup(store, "rollup_1m", "counter.good").items()}
    assert increases == {0: 5, MIN: 5, 2 * MIN: 3}, "the first reading is a base; a reset counts from zero"
    write(store, "counter.good", [(MIN + 30_000, 25.0)])  # late: changes its minute and the next one's
    refresh_rollups(store.conn)
    increases = {k: v[-1] for k, v in rollup(store, "rollup_1m", "counter.good").items()}
    assert increases == {0: 5, MIN: 10, 2 * MIN: 3}
    assert rollup(store, "rollup_1h", "counter.good")[0][-1] == 18


def test_the_watermark_limits_each_refresh(store: Store) -> None:
    for minute in range(3):
        write(store, "process.t", [(minute * MIN, float(minute))])
    first = refresh_rollups(store.conn, max_batches=2)
    assert set(rollup(store, "rollup_1m", "process.t")) == {0, MIN}
    second = refresh_rollups(store.conn, max_batches=2)
    assert second.upto_batch == first.upto_batch + 1
    assert set(rollup(store, "rollup_1m", "process.t")) == {0, MIN, 2 * MIN}
