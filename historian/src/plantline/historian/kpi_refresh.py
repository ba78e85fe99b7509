"""KPI minutes, machine states, faults and engine checkpoints, refreshed from the spans ingest batches added.

For each machine whose KPI signals a batch touched (after a watermark), the KPI engine replays its
samples from the minute holding the earliest new one (after a lead-in of each signal's last
reading), and the minutes, state changes and faults from there on are replaced. Live data dirties
the last minute or two; a replay of old data re-computes from its own time on.

The machine's own engine (its own window and calendar) goes along as a chain: restored from its
newest checkpoint at or before that minute, fed every sample since, saved every `CHECKPOINT_MS`
(15 s) of its samples (`kpi_checkpoints`, the later ones replaced: data that lands before a checkpoint
invalidates it and every one after it). So a checkpoint is the engine that was fed every stored
sample before its time, from which `/kpi/current` at a past time replays only the samples after
it. The chain starts afresh, from each signal's last reading, at a machine's first refresh and
when it has no checkpoint of its configuration (a database migrated from before checkpoints, a
configuration changed): then after a replay of the window before it, so its windows are whole
(MTBF reaches back as far as that replay, not to every earlier fault). Its window at the newest
KPI sample is kept in `kpi_current`, from which `/kpi/current` answers "now" without a replay
per request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from plantline.connectors.kpi import CheckpointError, KpiConfig, KpiEngine, KpiSnapshot, config_key
from plantline.connectors.samples import Sample
from plantline.historian.config import HistorianConfig
from plantline.historian.kpi import (
    KPI_SIGNALS,
    MINUTE_MS,
    Replay,
    current_body,
    engine_after,
    replay_checkpoints,
    replay_minutes,
    window_start,
)
from plantline.historian.readings import LEAD_MS, lead_in, span
from plantline.historian.refresh import RefreshResult, batches_after, forget_absorbed
from plantline.historian.store import Connection

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ts(ms: int | None) -> dt.datetime | None:
    return None if ms is None else _EPOCH + dt.timedelta(milliseconds=ms)


def refresh_kpis(conn: Connection, config: HistorianConfig, *, max_batches: int = 1000) -> RefreshResult:
    """Absorb up to `max_batches` ingest batches after the KPI watermark; return the new watermark."""
    with conn.transaction():
        after, upto = batches_after(conn, "kpi_minutes", max_batches)
        if upto == after:
            return RefreshResult(after, 0)
        machines = conn.execute(
            "SELECT m.id, m.group_id, m.edge_node_id, m.device_id, (extract(epoch FROM min(d.from_ts)) * 1000)::bigint"
            " FROM dirty_spans d JOIN series s ON s.id = d.series_id JOIN machines m ON m.id = s.machine_id"
            " WHERE d.batch_id > %s AND d.batch_id <= %s AND s.signal = ANY(%s) GROUP BY m.id",
            (after, upto, sorted(KPI_SIGNALS)),
        ).fetchall()
        for machine_id, group_id, node_id, device_id, earliest in machines:
            kpis = config.kpi_config(str(group_id), str(node_id), str(device_id))
            _refresh_machine(conn, int(machine_id), str(device_id), kpis, int(earliest) - int(earliest) % MINUTE_MS)
        conn.execute(
            "UPDATE rollup_watermarks SET batch_id = %s, refreshed_at = now() WHERE name = 'kpi_minutes'", (upto,)
        )
        forget_absorbed(conn)
        return RefreshResult(upto, len(machines))


def _refresh_machine(conn: Connection, machine_id: int, device: str, kpis: KpiConfig, start: int) -> None:
    """Replace the machine's minutes, states, faults and checkpoints from minute `start` on, and its window now."""
    before = lead_in(conn, machine_id, device, KPI_SIGNALS, start)
    engine, chain_from, saved = _chain(conn, machine_id, device, kpis, (start, before))
    samples = span(conn, machine_id, device, KPI_SIGNALS, chain_from)
    recent = [sample for sample in samples if sample.source_ts_ms >= start]
    _replace(conn, machine_id, start, replay_minutes(device, kpis, before, recent, start_ms=start))
    saved += replay_checkpoints(engine, samples, after_ms=chain_from)
    _keep_checkpoints(conn, machine_id, chain_from, config_key(kpis), saved)
    if samples:
        _keep_current(conn, machine_id, engine.snapshot(max(sample.source_ts_ms for sample in samples)))


def _chain(
    conn: Connection, machine_id: int, device: str, kpis: KpiConfig, lead: tuple[int, list[Sample]]
) -> tuple[KpiEngine, int, list[tuple[int, bytes]]]:
    """Return the machine's engine at its newest checkpoint at or before `start`, that checkpoint's time,
    and the checkpoints to add.

    Without a checkpoint of this configuration, the chain starts afresh at `start`: from `before`,
    each signal's last earlier reading (`lead`), for the machine's first data (there is none); else
    (a database from before checkpoints, a configuration changed) from a replay of the window ending
    at `start`, so that every window from `start` on is whole. MTBF then reaches back as far as
    that replay does, not to faults before it.
    """
    start, before = lead
    row = conn.execute(
        "SELECT ms(ts), config, state FROM kpi_checkpoints WHERE machine_id = %s AND ts <= at_ms(%s)"
        " ORDER BY ts DESC LIMIT 1",
        (machine_id, start),
    ).fetchone()
    if row is not None and row[1] == config_key(kpis):
        with contextlib.suppress(CheckpointError):  # another format: start afresh
            return KpiEngine.restore(kpis, bytes(row[2])), int(row[0]), []
    if before:
        begin = window_start(kpis, start) - LEAD_MS
        before = lead_in(conn, machine_id, device, KPI_SIGNALS, begin)
        before += span(conn, machine_id, device, KPI_SIGNALS, begin, start - 1)
    fresh = engine_after(device, kpis, before)
    return fresh, start, [(start, fresh.checkpoint())]


def _keep_checkpoints(
    conn: Connection, machine_id: int, after_ms: int, config: str, saved: list[tuple[int, bytes]]
) -> None:
    """Replace the machine's checkpoints after `after_ms` (samples may have landed before them) with `saved`."""
    conn.execute("DELETE FROM kpi_checkpoints WHERE machine_id = %s AND ts > at_ms(%s)", (machine_id, after_ms))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO kpi_checkpoints (machine_id, ts, config, state) VALUES (%s, at_ms(%s), %s, %s)"
            " ON CONFLICT (machine_id, ts) DO UPDATE SET config = EXCLUDED.config, state = EXCLUDED.state",
            [(machine_id, ts, config, state) for ts, state in saved],
        )


def _replace(conn: Connection, machine_id: int, start_ms: int, replay: Replay) -> None:
    start = _ts(start_ms)
    conn.execute("DELETE FROM kpi_minutes WHERE machine_id = %s AND bucket >= %s", (machine_id, start))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO kpi_minutes (machine_id, bucket, run_ms, idle_ms, blocked_ms, starved_ms, planned_stop_ms,"
            " calendar_stop_ms, unknown_ms, good, reject, total, ideal_work_us, unvalued)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    machine_id,
                    _ts(m.start_ms),
                    m.run_ms,
                    m.idle_ms,
                    m.blocked_ms,
                    m.starved_ms,
                    m.planned_stop_ms,
                    m.calendar_stop_ms,
                    m.unknown_ms,
                    m.good,
                    m.reject,
                    m.total,
                    m.ideal_work_us,
                    m.unvalued,
                )
                for m in replay.minutes
            ],
        )
        conn.execute("DELETE FROM machine_states WHERE machine_id = %s AND ts >= %s", (machine_id, start))
        cur.executemany(
            "INSERT INTO machine_states (machine_id, ts, state) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(machine_id, _ts(ts), state) for ts, state in replay.states],
        )
    conn.execute("DELETE FROM faults WHERE machine_id = %s AND started_at >= %s", (machine_id, start))
    for fault in replay.faults:
        if fault.started_ms < start_ms:
            # Active when the replay began (its true start is stored already): only its end is news.
            conn.execute(
                "UPDATE faults SET ended_at = %s WHERE machine_id = %s AND started_at < %s"
                " AND (ended_at IS NULL OR ended_at >= %s)",
                (_ts(fault.ended_ms), machine_id, start, start),
            )
            continue
        conn.execute(
            "INSERT INTO faults (machine_id, started_at, ended_at, code) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (machine_id, started_at) DO UPDATE SET ended_at = EXCLUDED.ended_at, code = EXCLUDED.code",
            (machine_id, _ts(fault.started_ms), _ts(fault.ended_ms), fault.code),
        )


def _keep_current(conn: Connection, machine_id: int, snapshot: KpiSnapshot) -> None:
    try:
        body = json.dumps(current_body(snapshot.window), allow_nan=False)
    except ValueError:  # a figure JSON cannot hold: /kpi/current replays the window instead
        conn.execute("DELETE FROM kpi_current WHERE machine_id = %s", (machine_id,))
        return
    conn.execute(
        "INSERT INTO kpi_current (machine_id, at_ms, body) VALUES (%s, %s, %s::jsonb)"
        " ON CONFLICT (machine_id) DO UPDATE SET at_ms = EXCLUDED.at_ms, body = EXCLUDED.body",
        (machine_id, snapshot.at_ms, body),
    )
