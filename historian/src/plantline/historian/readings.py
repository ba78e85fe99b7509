"""Stored samples read back as the connectors' Samples, for the KPI engine (lead-in, a span, a window)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from plantline.connectors.kpi import KpiConfig, KpiSnapshot
from plantline.connectors.samples import Quality, Sample, Value
from plantline.connectors.sparkplug import DataType
from plantline.historian.kpi import KPI_SIGNALS, replay_window, window_start
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


def lead_in(conn: Connection, machine_id: int, device: str, signals: Collection[str], before_ms: int) -> list[Sample]:
    """Return each signal's last sample before `before_ms`: the state a replay starts from."""
    rows = conn.execute(
        "SELECT s.signal, s.datatype, x.ts_ms, x.value, x.text_value, x.quality FROM series s"
        " CROSS JOIN LATERAL (SELECT (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, value, text_value, quality"
        "   FROM samples WHERE series_id = s.id AND ts < timestamptz 'epoch' + %(t)s * interval '1 ms'"
        "   ORDER BY ts DESC LIMIT 1) x"
        " WHERE s.machine_id = %(m)s AND s.signal = ANY(%(signals)s)",
        {"m": machine_id, "signals": list(signals), "t": before_ms},
    ).fetchall()
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
