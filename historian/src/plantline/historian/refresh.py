"""The rollups (1 min, 5 min, 1 h), refreshed incrementally from the spans that ingest batches added.

Each rollup has a watermark: the last ingest batch it has absorbed. A refresh takes the batches
after it, merges their `dirty_spans` per series, and recomputes only the buckets those spans
touch, from the raw samples (1 min) or from the rollup below (5 min from 1 min, 1 h from 5 min).
Late data (an outbox replay hours later) is handled the same way: its batch dirties old buckets,
which are recomputed; nothing ever scans a whole table.

Counters (`counter.*`) also get their increase per bucket: the parts counted by readings in the
bucket, each against the reading before it (in or before the bucket), by the KPI engine's counter
rules (the SQL function `counter_increment`). A new reading changes the increase of the next
reading's bucket too, so a span is extended to the next reading after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from plantline.historian.store import Connection

ROLLUPS = (
    ("rollup_1m", "1 minute", None),
    ("rollup_5m", "5 minutes", "rollup_1m"),
    ("rollup_1h", "1 hour", "rollup_5m"),
)

_SPANS = """
CREATE TEMP TABLE refresh_spans ON COMMIT DROP AS
WITH merged AS (
    SELECT series_id, min(from_ts) AS lo, max(to_ts) AS hi
    FROM dirty_spans WHERE batch_id > %(after)s AND batch_id <= %(upto)s GROUP BY series_id)
SELECT m.series_id, m.lo, coalesce(nxt.ts, m.hi) AS hi, s.signal LIKE 'counter.%%' AS counter, c.counter_bits AS bits
FROM merged m
JOIN series s ON s.id = m.series_id
JOIN machines c ON c.id = s.machine_id
LEFT JOIN LATERAL (
    SELECT x.ts FROM samples x WHERE x.series_id = m.series_id AND x.ts > m.hi ORDER BY x.ts LIMIT 1
) nxt ON s.signal LIKE 'counter.%%'
"""

_FROM_RAW = """
WITH bounds AS (
    SELECT series_id, date_bin(%(width)s, lo, timestamptz 'epoch') AS lo,
           date_bin(%(width)s, hi, timestamptz 'epoch') + %(width)s::interval AS hi, counter, bits
    FROM refresh_spans),
readings AS (
    SELECT b.series_id, x.ts, x.value, b.counter, b.bits,
           lag(x.value) OVER (PARTITION BY b.series_id ORDER BY x.ts) AS prev, x.ts >= b.lo AS inside
    FROM bounds b
    CROSS JOIN LATERAL (
        (SELECT ts, value FROM samples WHERE series_id = b.series_id AND ts < b.lo ORDER BY ts DESC LIMIT 1)
        UNION ALL
        (SELECT ts, value FROM samples WHERE series_id = b.series_id AND ts >= b.lo AND ts < b.hi)
    ) x)
INSERT INTO {table} AS r (series_id, bucket, n, min, max, sum, last, last_ts, increase)
SELECT series_id, date_bin(%(width)s, ts, timestamptz 'epoch'), count(*), min(value), max(value), sum(value),
       (array_agg(value ORDER BY ts DESC))[1], max(ts),
       CASE WHEN bool_or(counter) THEN sum(counter_increment(
           counter_normalise(prev, bits), counter_normalise(value, bits), bits))::bigint END
FROM readings WHERE inside
GROUP BY series_id, 2
ON CONFLICT (series_id, bucket) DO UPDATE SET n = EXCLUDED.n, min = EXCLUDED.min, max = EXCLUDED.max,
    sum = EXCLUDED.sum, last = EXCLUDED.last, last_ts = EXCLUDED.last_ts, increase = EXCLUDED.increase
"""

_FROM_BELOW = """
WITH bounds AS (
    SELECT series_id, date_bin(%(width)s, lo, timestamptz 'epoch') AS lo,
           date_bin(%(width)s, hi, timestamptz 'epoch') + %(width)s::interval AS hi
    FROM refresh_spans)
INSERT INTO {table} AS r (series_id, bucket, n, min, max, sum, last, last_ts, increase)
SELECT x.series_id, date_bin(%(width)s, x.bucket, timestamptz 'epoch'), sum(x.n), min(x.min), max(x.max),
       sum(x.sum), (array_agg(x.last ORDER BY x.last_ts DESC))[1], max(x.last_ts), sum(x.increase)::bigint
FROM bounds b JOIN {below} x ON x.series_id = b.series_id AND x.bucket >= b.lo AND x.bucket < b.hi
GROUP BY x.series_id, 2
ON CONFLICT (series_id, bucket) DO UPDATE SET n = EXCLUDED.n, min = EXCLUDED.min, max = EXCLUDED.max,
    sum = EXCLUDED.sum, last = EXCLUDED.last, last_ts = EXCLUDED.last_ts, increase = EXCLUDED.increase
"""


@dataclass(frozen=True, slots=True)
class RefreshResult:
    upto_batch: int  # the watermark now
    spans: int  # series whose buckets were recomputed


def batches_after(conn: Connection, watermark: str, max_batches: int) -> tuple[int, int]:
    """Return (after, upto): the watermark's batch, locked for this transaction, and up to which to absorb.

    `upto == after` when no batch is new. Call inside a transaction; set the watermark to `upto`
    when the work is done.
    """
    row = conn.execute("SELECT batch_id FROM rollup_watermarks WHERE name = %s FOR UPDATE", (watermark,)).fetchone()
    after = int(row[0]) if row else 0
    row = conn.execute(
        "SELECT coalesce(max(id), %(after)s)"
        " FROM (SELECT id FROM ingest_batches WHERE id > %(after)s ORDER BY id LIMIT %(n)s) b",
        {"after": after, "n": max_batches},
    ).fetchone()
    return after, int(row[0]) if row else after


def forget_absorbed(conn: Connection) -> None:
    """Delete the spans every refresh has absorbed."""
    conn.execute("DELETE FROM dirty_spans WHERE batch_id <= (SELECT min(batch_id) FROM rollup_watermarks)")


def refresh_rollups(conn: Connection, *, max_batches: int = 1000) -> RefreshResult:
    """Absorb up to `max_batches` ingest batches after the rollups' watermark; return the new watermark."""
    with conn.transaction():
        after, upto = batches_after(conn, "rollup_1m", max_batches)
        if upto == after:
            return RefreshResult(after, 0)
        conn.execute(_SPANS, {"after": after, "upto": upto})
        spans_row = conn.execute("SELECT count(*) FROM refresh_spans").fetchone()
        for table, width, below in ROLLUPS:
            text = _FROM_RAW if below is None else _FROM_BELOW
            statement = sql.SQL(text).format(table=sql.Identifier(table), below=sql.Identifier(below or table))
            conn.execute(statement, {"width": width})
            conn.execute(
                "UPDATE rollup_watermarks SET batch_id = %s, refreshed_at = now() WHERE name = %s", (upto, table)
            )
        forget_absorbed(conn)
        return RefreshResult(upto, int(spans_row[0]) if spans_row else 0)
