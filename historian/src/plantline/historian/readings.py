"""Stored samples read back as the connectors' Samples, for the KPI engine (lead-in, a span, a window)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from plantline.connectors.kpi import CheckpointError, KpiConfig, KpiSnapshot, config_key
from plantline.connectors.samples import Quality, Sample, Value
from plantline.connectors.sparkplug import DataType
from plantline.historian.kpi import KPI_SIGNALS, replay_window, resume_window, window_start
from plantline.historian.store import Connection

_QUALITIES = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)
LEAD_MS = 60_000  # samples replayed before a window starts, beyond each signal's last reading
_INTEGERS = frozenset(range(DataType.Int8, DataType.UInt64 + 1)) | {DataType.DateTime}


def _value(datatype: int, value: float | None, text: str | None) -> Value | None:
    if value is None:
        return text
    if datatype == DataType.Boolean:
        return value != 0
    if datatype in _INTEGERS and value.is_integer():
        return int(value)
    return value


def _samples(device: str, rows: list[tuple[Any, ...]]) -> list[Sample]:
    return [
        Sample(device, str(signal), _value(int(dtype), value, text), _QUALITIES[int(quality)], int(ts))
        for signal, dtype, ts, value, text, quality in rows
    ]


# Each series' last sample before a time and, when that one has no value (bad quality), its last one
# with a value: the engine ignores a counter's bad reading and a fault's, and counts from the value
# before it, so a replay that starts there needs that value as a stream fed from the start had it.
_LEAD_IN = """
SELECT s.signal, s.datatype, ms(x.ts), x.value, x.text_value, x.quality FROM series s
CROSS JOIN LATERAL (
    (SELECT ts, value, text_value, quality FROM samples
     WHERE series_id = s.id AND ts < at_ms(%(t)s) ORDER BY ts DESC LIMIT 1)
    UNION
    (SELECT ts, value, text_value, quality FROM samples
     WHERE series_id = s.id AND ts < at_ms(%(t)s) AND quality <> 2 AND (value IS NOT NULL OR text_value IS NOT NULL)
     ORDER BY ts DESC LIMIT 1)) x
WHERE s.machine_id = %(m)s AND s.signal = ANY(%(signals)s)
"""


def lead_in(conn: Connection, machine_id: int, device: str, signals: Collection[str], before_ms: int) -> list[Sample]:
    """Return each signal's last sample before `before_ms` (and its last valued one): the state a replay starts from."""
    rows = conn.execute(_LEAD_IN, {"m": machine_id, "signals": list(signals), "t": before_ms}).fetchall()
    return _samples(device, rows)


def span(
    conn: Connection, machine_id: int, device: str, signals: Collection[str], from_ms: int, to_ms: int | None = None
) -> list[Sample]:
    """Return the machine's samples of `signals` from `from_ms` (inclusive) to `to_ms` (inclusive), by time."""
    rows = conn.execute(
        "SELECT s.signal, s.datatype, (extract(epoch FROM x.ts) * 1000)::bigint, x.value, x.text_value, x.quality"
        " FROM series s JOIN samples x ON x.series_id = s.id"
        " WHERE s.machine_id = %(m)s AND s.signal = ANY(%(signals)s)"
        " AND x.ts >= timestamptz 'epoch' + %(f)s * interval '1 ms'"
        " AND (%(t)s::bigint IS NULL OR x.ts <= timestamptz 'epoch' + %(t)s * interval '1 ms')"
        " ORDER BY x.ts, s.signal",
        {"m": machine_id, "signals": list(signals), "f": from_ms, "t": to_ms},
    ).fetchall()
    return _samples(device, rows)


def window_snapshot(
    conn: Connection, machine_id: int, device: str, kpis: KpiConfig, at_ms: int, until_ms: int
) -> KpiSnapshot:
    """Return the machine's KPI snapshot at `at_ms` from its stored samples up to `until_ms`, as the edge has it."""
    start = window_start(kpis, at_ms) - LEAD_MS
    before = lead_in(conn, machine_id, device, KPI_SIGNALS, start)
    return replay_window(
        device, kpis, before, span(conn, machine_id, device, KPI_SIGNALS, start, until_ms), at_ms=at_ms
    )


# Per machine, the newest checkpoint at or before `until` that no sample still to be refreshed can
# have changed: one that landed before it (a batch after the KPI watermark) invalidates it.
_CHECKPOINTS = """
WITH pending AS (
    SELECT s.machine_id, min(d.from_ts) AS from_ts FROM dirty_spans d JOIN series s ON s.id = d.series_id
    WHERE d.batch_id > (SELECT batch_id FROM rollup_watermarks WHERE name = 'kpi_minutes')
      AND s.machine_id = ANY(%(ids)s) AND s.signal = ANY(%(signals)s)
    GROUP BY s.machine_id)
SELECT m.id, c.ts, c.config, c.state
FROM unnest(%(ids)s::integer[]) AS m(id)
LEFT JOIN pending p ON p.machine_id = m.id
JOIN LATERAL (
    SELECT ts, config, state FROM kpi_checkpoints
    WHERE machine_id = m.id AND ts <= least(at_ms(%(until)s), p.from_ts)
    ORDER BY ts DESC LIMIT 1) c ON true
"""

# Each series' samples from its machine's checkpoint on: a range of the samples' key per series (the
# ORDER BY keeps the subquery a parameterised scan of that range).
_TAILS = """
SELECT t.id, s.signal, s.datatype, ms(x.ts), x.value, x.text_value, x.quality
FROM unnest(%(ids)s::integer[], %(froms)s::timestamptz[]) AS t(id, from_ts)
JOIN series s ON s.machine_id = t.id AND s.signal = ANY(%(signals)s)
CROSS JOIN LATERAL (
    SELECT ts, value, text_value, quality FROM samples
    WHERE series_id = s.id AND ts >= t.from_ts AND ts <= at_ms(%(until)s) ORDER BY ts) x
"""


def window_snapshots(
    conn: Connection, machines: Sequence[tuple[int, str, KpiConfig]], at_ms: int, until_ms: int
) -> list[KpiSnapshot]:
    """Return each (machine id, device, configuration)'s KPI snapshot at `at_ms` from its samples up to `until_ms`.

    A machine with a checkpoint of this configuration at or before `until_ms` (`kpi_refresh`) is
    restored from the newest and fed the samples after it: the engine that was fed every stored
    sample, as the edge's ran. The others are replayed from a minute before the window
    (`window_snapshot`): another `window_s`, a time before the first checkpoint.
    """
    params: dict[str, Any] = {"ids": [m for m, _, _ in machines], "until": until_ms, "signals": sorted(KPI_SIGNALS)}
    keys = {m: config_key(kpis) for m, _, kpis in machines}
    checkpoints = {
        int(m): (ts, bytes(state)) for m, ts, key, state in conn.execute(_CHECKPOINTS, params) if key == keys[m]
    }
    params |= {"ids": list(checkpoints), "froms": [ts for ts, _ in checkpoints.values()]}
    tails: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for m, *row in conn.execute(_TAILS, params) if checkpoints else ():
        tails[int(m)].append(tuple(row))
    out = []
    for machine_id, device, kpis in machines:
        found = checkpoints.get(machine_id)
        if found is not None:
            try:
                out.append(resume_window(kpis, found[1], _samples(device, tails[machine_id]), at_ms=at_ms))
                continue
            except CheckpointError:
                pass  # another format: replay
        out.append(window_snapshot(conn, machine_id, device, kpis, at_ms, until_ms))
    return out
