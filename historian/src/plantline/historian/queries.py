"""The KPI API's reads: every statement parameterised, every value bound by the server.

Times cross this boundary as milliseconds since the epoch (UTC; the SQL functions `ms` and
`at_ms` convert); rollup tables are chosen from a fixed table here, never spelled from input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from plantline.historian.kpi import Minute, Totals
from plantline.historian.rows import KPI_COLUMNS
from plantline.historian.store import Connection

ROLLUP_TABLES = {"1m": "rollup_1m", "5m": "rollup_5m", "1h": "rollup_1h"}
BUCKET_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}


@dataclass(frozen=True, slots=True)
class MachineRow:
    id: int
    site: str
    line: str
    machine: str
    group_id: str
    edge_node_id: str


def machines(conn: Connection, *, site: str | None, line: str | None, machine: str | None) -> list[MachineRow]:
    """Return the machines matching the filters (None: any), ordered by site, line, machine."""
    rows = conn.execute(
        "SELECT id, site, line, device_id, group_id, edge_node_id FROM machines"
        " WHERE (%(s)s::text IS NULL OR site = %(s)s) AND (%(l)s::text IS NULL OR line = %(l)s)"
        " AND (%(m)s::text IS NULL OR device_id = %(m)s) ORDER BY site, line, device_id",
        {"s": site, "l": line, "m": machine},
    ).fetchall()
    return [MachineRow(*row) for row in rows]


def known(conn: Connection, column: str, value: str) -> bool:
    """Return whether any machine has `value` as its site, line or device id (`column`)."""
    name = {"site": "site", "line": "line", "machine": "device_id"}[column]
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM machines WHERE {} = %s)").format(sql.Identifier(name))
    row = conn.execute(query, (value,)).fetchone()
    return bool(row and row[0])


_STATUS = """
SELECT m.id, n.online, ms(n.changed_at), st.state, ms(st.ts), f.code, ms(f.started_at),
       k.oee, k.availability, k.performance, k.quality, ms(k.ts)
FROM unnest(%(ids)s::integer[]) AS m(id)
LEFT JOIN node_status n ON n.machine_id = m.id
LEFT JOIN LATERAL (SELECT state, ts FROM machine_states WHERE machine_id = m.id ORDER BY ts DESC LIMIT 1) st ON true
LEFT JOIN LATERAL (SELECT code, started_at FROM faults WHERE machine_id = m.id AND ended_at IS NULL
                   ORDER BY started_at DESC LIMIT 1) f ON true
LEFT JOIN LATERAL (SELECT * FROM kpi_snapshots WHERE machine_id = m.id ORDER BY ts DESC LIMIT 1) k ON true
"""


def status(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Return each machine's online flag, current state, active fault and latest edge KPIs."""
    out: dict[int, dict[str, Any]] = {}
    for mid, online, changed, state, since, code, fault_since, oee, a, p, q, kpi_ts in conn.execute(
        _STATUS, {"ids": list(ids)}
    ):
        out[mid] = {
            "online": online,
            "online_changed_ms": changed,
            "state": state,
            "state_since_ms": since,
            "active_fault": None if code is None else {"code": code, "since_ms": fault_since},
            "edge_kpis": None
            if kpi_ts is None
            else {"oee": oee, "availability": a, "performance": p, "quality": q, "at_ms": kpi_ts},
        }
    return out


def minutes(conn: Connection, machine_id: int, from_ms: int, to_ms: int) -> list[Minute]:
    """Return the machine's KPI minutes starting in [from_ms, to_ms)."""
    rows = conn.execute(
        "SELECT ms(bucket), run_ms, idle_ms, blocked_ms, starved_ms, planned_stop_ms, calendar_stop_ms, unknown_ms,"
        " good, reject, total, ideal_work_us, unvalued FROM kpi_minutes"
        " WHERE machine_id = %(m)s AND bucket >= at_ms(%(f)s) AND bucket < at_ms(%(t)s) ORDER BY bucket",
        {"m": machine_id, "f": from_ms, "t": to_ms},
    ).fetchall()
    return [Minute(*row) for row in rows]


_EDGE_KEYS = ["at_ms", *KPI_COLUMNS.values(), "data_until_ms"]
_EDGE_SNAPSHOTS = sql.SQL(
    "SELECT m.id, ms(k.ts), {}, ms(k.data_until) FROM unnest(%(ids)s::integer[]) AS m(id)"
    " CROSS JOIN LATERAL (SELECT * FROM kpi_snapshots"
    "   WHERE machine_id = m.id AND ts <= at_ms(%(t)s) ORDER BY ts DESC LIMIT 1) k"
).format(sql.SQL(", ").join(sql.Identifier("k", c) for c in KPI_COLUMNS.values()))


_BUCKET_TOTALS = """
SELECT ms(date_bin(%(w)s * interval '1 ms', bucket, timestamptz 'epoch')) AS b, max(ms(bucket)) + 60000,
       sum(run_ms), sum(run_ms + idle_ms + blocked_ms + starved_ms), sum(total), sum(good), sum(reject),
       sum(ideal_work_us), sum(unvalued)
FROM kpi_minutes WHERE machine_id = %(m)s AND bucket >= at_ms(%(f)s) AND bucket < at_ms(%(t)s)
GROUP BY 1 ORDER BY 1
"""


def bucket_totals(conn: Connection, machine_id: int, from_ms: int, to_ms: int, width_ms: int) -> list[BucketTotals]:
    """Return the machine's KPI minutes added up per bucket of `width_ms` (as `kpi.combine` adds them)."""
    rows = conn.execute(_BUCKET_TOTALS, {"m": machine_id, "f": from_ms, "t": to_ms, "w": width_ms}).fetchall()
    return [
        BucketTotals(
            int(b),
            int(last),
            Totals(int(run), int(planned), int(total), _int(good), _int(reject), int(ideal), int(unvalued)),
        )
        for b, last, run, planned, total, good, reject, ideal, unvalued in rows
    ]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class BucketTotals:
    start_ms: int
    end_ms: int  # the end of its last minute
    totals: Totals


def current_kpis(conn: Connection, machine_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Return the rolling-window KPIs the KPI refresh keeps per machine (`kpi.current_body`), by machine id."""
    rows = conn.execute(
        "SELECT machine_id, body FROM kpi_current WHERE machine_id = ANY(%(ids)s)", {"ids": list(machine_ids)}
    ).fetchall()
    return {int(machine_id): dict(body) for machine_id, body in rows}


def edge_snapshots(conn: Connection, machine_ids: Sequence[int], at_ms: int) -> dict[int, dict[str, Any]]:
    """Return, by machine id, the KPIs each machine's edge published last at or before `at_ms` (if any)."""
    rows = conn.execute(_EDGE_SNAPSHOTS, {"ids": list(machine_ids), "t": at_ms}).fetchall()
    return {int(row[0]): dict(zip(_EDGE_KEYS, row[1:], strict=True)) for row in rows}


_ACTIVE_FAULTS = """
SELECT machine_id, ms(started_at), NULL, code FROM faults
WHERE machine_id = ANY(%(ids)s) AND ended_at IS NULL ORDER BY started_at, machine_id LIMIT %(n)s
"""

# Faults overlapping [from, to), after the keyset cursor: those that started in it (by the index on
# their start, in page order) and those that started before it and were still going on at its
# start (by the index on their end, and the active ones'). Asked as one condition, every fault ever
# started before `to` would be read.
_OVERLAPPING_FAULTS = """
SELECT machine_id, ms(started_at), ms(ended_at), code FROM (
    (SELECT machine_id, started_at, ended_at, code FROM faults
     WHERE machine_id = ANY(%(ids)s) AND started_at >= at_ms(%(f)s) AND started_at < at_ms(%(t)s)
       AND coalesce(ended_at, 'infinity') >= at_ms(%(f)s)
       AND (started_at, machine_id) > (coalesce(at_ms(%(as)s), '-infinity'), coalesce(%(am)s, 0))
     ORDER BY started_at, machine_id LIMIT %(n)s)
    UNION ALL
    (SELECT machine_id, started_at, ended_at, code FROM faults
     WHERE machine_id = ANY(%(ids)s) AND started_at < at_ms(%(f)s) AND started_at < at_ms(%(t)s)
       AND (ended_at >= at_ms(%(f)s) OR ended_at IS NULL)
       AND (started_at, machine_id) > (coalesce(at_ms(%(as)s), '-infinity'), coalesce(%(am)s, 0))
     ORDER BY started_at, machine_id LIMIT %(n)s)
) f ORDER BY started_at, machine_id LIMIT %(n)s
"""


def faults(
    conn: Connection,
    ids: Sequence[int],
    *,
    active: bool,
    from_ms: int | None = None,
    to_ms: int | None = None,
    after: tuple[int, int] | None = None,
    limit: int = 500,
) -> list[tuple[int, int, int | None, int]]:
    """Return (machine id, started ms, ended ms, code) by start time; `after` is a keyset cursor.

    `active`: the faults going on now; otherwise those overlapping [from_ms, to_ms), both required.
    """
    params: dict[str, Any] = {"ids": list(ids), "n": limit, "f": from_ms, "t": to_ms}
    params.update({"as": None, "am": None} if after is None else {"as": after[0], "am": after[1]})
    if not active and (from_ms is None or to_ms is None):
        raise ValueError("faults overlapping a span need its from_ms and to_ms")
    rows = conn.execute(_ACTIVE_FAULTS if active else _OVERLAPPING_FAULTS, params)
    return [(int(m), int(s), None if e is None else int(e), int(c)) for m, s, e, c in rows]


def series_id(conn: Connection, machine_id: int, signal: str) -> int | None:
    row = conn.execute("SELECT id FROM series WHERE machine_id = %s AND signal = %s", (machine_id, signal)).fetchone()
    return None if row is None else int(row[0])


def raw(conn: Connection, series: int, from_ms: int, to_ms: int, after_ms: int | None, limit: int) -> list[Any]:
    """Return (ts ms, value, text value, quality) of a series in [from_ms, to_ms), after the cursor."""
    return conn.execute(
        "SELECT ms(ts), value, text_value, quality FROM samples WHERE series_id = %(s)s"
        " AND ts >= at_ms(%(f)s) AND ts < at_ms(%(t)s) AND (%(a)s::bigint IS NULL OR ts > at_ms(%(a)s))"
        " ORDER BY ts LIMIT %(n)s",
        {"s": series, "f": from_ms, "t": to_ms, "a": after_ms, "n": limit},
    ).fetchall()


def rolled(conn: Connection, series: int, bucket: str, from_ms: int, to_ms: int) -> list[Any]:
    """Return (bucket ms, n, min, max, avg, last, increase) of a series' rollup in [from_ms, to_ms)."""
    query = sql.SQL(
        "SELECT ms(bucket), n, min, max, sum / nullif(n, 0), last, increase FROM {}"
        " WHERE series_id = %(s)s AND bucket >= at_ms(%(f)s) AND bucket < at_ms(%(t)s) ORDER BY bucket"
    ).format(sql.Identifier(ROLLUP_TABLES[bucket]))
    return conn.execute(query, {"s": series, "f": from_ms, "t": to_ms}).fetchall()
