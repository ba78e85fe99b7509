"""`plantline up --simulate` with its historian: the demo line's samples reach PostgreSQL exactly once through a
broker outage and a historian SIGKILL, and the KPI API computes the OEE the edge published.

Ground truth is an independent Sparkplug host: the harness's reader with a persistent session at
the same broker, which is never killed. Over the span both listened, the historian must hold
exactly the (machine, signal, source time) the reader saw, no more and no fewer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from plantline_testing.lines import UpRun, line_copy
from plantline_testing.sparkplug_reader import SparkplugReader

pytestmark = [pytest.mark.peer, pytest.mark.slow]

Key = tuple[str, str, int]


def _historian(run: UpRun) -> dict[str, Any]:
    return dict(run.status().get("historian") or {})


def _db(run: UpRun) -> psycopg.Connection[Any]:
    socket_dir = (run.state_dir / "postgres").resolve()
    return psycopg.connect(f"host={socket_dir} port=5432 dbname=plantline user=plantline")


def _stored(run: UpRun, start_ms: int, end_ms: int) -> list[Key]:
    with _db(run) as conn:
        rows = conn.execute(
            "SELECT m.device_id, s.signal, ms(x.ts) FROM samples x JOIN series s ON s.id = x.series_id"
            " JOIN machines m ON m.id = s.machine_id WHERE x.ts >= at_ms(%s) AND x.ts < at_ms(%s)",
            (start_ms, end_ms),
        ).fetchall()
    return [(str(d), str(s), int(t)) for d, s, t in rows]


def _seen(reader: SparkplugReader, start_ms: int, end_ms: int) -> set[Key]:
    with reader._lock:  # the reader's paho thread appends meanwhile
        values = list(reader.values)
    return {
        (v.device_id, v.name, v.timestamp)
        for v in values
        if start_ms <= v.timestamp < end_ms and "/" not in v.name  # kpi/* are snapshots, not samples
    }


def _wait(check: Any, timeout: float, what: str, run: UpRun) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            log = run.state_dir / "logs" / "historian.log"
            raise TimeoutError(f"{what}; historian: {_historian(run)}\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def _restarted(run: UpRun, name: str, old_pid: int) -> bool:
    try:
        return run.child_pid(name) != old_pid
    except (KeyError, FileNotFoundError, ValueError):
        return False


def test_samples_land_once_through_a_broker_outage_and_a_historian_kill(tmp_path: Path) -> None:
    line_copy(tmp_path / "line.yaml")
    run = UpRun(tmp_path / "line.yaml", tmp_path / "state")
    try:
        run.up_detached()
        with run.reader("truth", persistent=True) as reader:
            _wait(lambda: _historian(run).get("samples_inserted", 0) > 0, 90, "the historian stores samples", run)
            start = int(time.time() * 1000) + 2000  # both the reader and the historian listen from here on
            time.sleep(6)
            broker = run.child_pid("broker")
            os.kill(broker, signal.SIGTERM)  # mosquitto saves its sessions; `up` restarts it
            _wait(lambda: _restarted(run, "broker", broker), 60, "the broker restarted", run)
            _wait(lambda: _historian(run).get("mqtt") == "connected", 60, "the historian reconnected", run)
            time.sleep(6)
            historian = run.child_pid("historian")
            os.kill(historian, signal.SIGKILL)
            _wait(lambda: _restarted(run, "historian", historian), 60, "the historian restarted", run)
            time.sleep(6)
            end = int(time.time() * 1000) - 3000
            _wait(
                lambda: set(_stored(run, start, end)) >= _seen(reader, start, end), 90, "the historian caught up", run
            )
            stored, seen = _stored(run, start, end), _seen(reader, start, end)
        assert len(stored) == len(set(stored)), "a sample stored twice"
        assert set(stored) == seen
        per_series = {(m, s) for m, s, _ in seen}
        assert {m for m, _ in per_series} == {"filler", "capper", "labeler"}
        assert len(per_series) >= 10  # sources report changes: the values that moved in the span
        _check_edge_oee(run, start)
    finally:
        run.down()
        run.kill_all()


def _check_edge_oee(run: UpRun, since_ms: int) -> None:
    """Every KPI snapshot the edge published is what the API computes from the data the edge had."""
    with _db(run) as conn:
        snapshots = conn.execute(
            "SELECT m.device_id, ms(k.ts), ms(k.data_until), k.oee, k.availability, k.performance, k.quality"
            " FROM kpi_snapshots k JOIN machines m ON m.id = k.machine_id"
            " WHERE k.ts >= at_ms(%s) AND k.data_until IS NOT NULL ORDER BY k.ts",
            (since_ms,),
        ).fetchall()
    assert len(snapshots) >= 6
    for machine, at, until, *edge in snapshots:
        (current,) = run.api("/kpi/current", machine=machine, at=_iso(at), until=_iso(until))
        window = current["window"]
        core = [window["oee"], window["availability"], window["performance"], window["quality"]]
        assert core == edge, f"{machine} at {at}: the API computed {core}, the edge published {edge}"


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"
