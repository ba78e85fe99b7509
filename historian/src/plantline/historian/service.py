"""The historian process: MQTT in, the Sparkplug host session, batches into PostgreSQL, PUBACKs out.

One ingest thread takes inbound messages in arrival order, lets the host session resolve them and
collects their rows until `max_rows` or `linger_ms`; a writer thread writes each batch in one
transaction and only then acknowledges its messages, in order (two batches in hand at most, so
PostgreSQL works on one while Python decodes the next). A failed write is retried (with back-off) with the same rows,
unacknowledged meanwhile. A second thread refreshes the rollups and KPI minutes every
`refresh_interval_s`, on its own connection. Every second the historian writes its status (lag,
counters) to `status_file` for `plantline status`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from plantline.connectors.hostlink import AckToken, HostLink, Inbound, host_session
from plantline.connectors.sparkplug.host import Command, HostSession, Outcome, Release
from plantline.historian.config import HistorianConfig
from plantline.historian.kpi_refresh import refresh_kpis
from plantline.historian.refresh import refresh_rollups
from plantline.historian.rows import MachineKey, Rows
from plantline.historian.schema import migrate
from plantline.historian.store import Store, connect, timescaledb_available

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 3600.0
RETRY_MAX_S = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Counters:
    """What the historian did since it started, as its status file says it."""

    messages: int = 0
    batches: int = 0
    samples_received: int = 0
    samples_inserted: int = 0
    write_errors: int = 0
    newest_sample_ms: int | None = None
    last_commit_at: float | None = None
    lag_s: float | None = None  # commit time minus the newest sample's source time, last batch
    refresh_lag_batches: int = 0
    refresh_errors: int = 0


@dataclass
class _Batch:
    rows: Rows = field(default_factory=Rows)
    releases: list[Release[AckToken]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    messages: int = 0


class Historian:
    """One historian process for a configuration; `run` until `stop` is set."""

    def __init__(self, config: HistorianConfig) -> None:
        self.config = config
        self.host: HostSession[AckToken] = host_session(config.mqtt, config.group_ids)
        self.link = HostLink.of(config.mqtt, self.host)
        self.counters = Counters()
        self._conninfo = config.database.conninfo()
        self._store: Store | None = None
        self._horizons: dict[MachineKey, int] = {}  # newest source time received per machine
        # Batches from the ingest thread to the writer: the database works on one while the next is decoded.
        self._writes: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self._housekeeping_at = 0.0
        self._status_at = 0.0

    # -- the process ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        with contextlib.closing(connect(self._conninfo)) as conn:
            applied = migrate(conn)
            if applied:
                log.info("applied schema migrations %s", applied)
            if timescaledb_available(conn):
                log.info("TimescaleDB is available; the historian uses native day partitions (see docs/historian.md)")
            self._store = Store(conn, self.config.lines)
            refresher = threading.Thread(target=self._refresh_loop, args=(stop,), name="refresh", daemon=True)
            refresher.start()
            writer = threading.Thread(target=self._write_loop, args=(stop,), name="writer")
            writer.start()
            self.link.open(self.host, _now_ms())
            try:
                while not stop.is_set():
                    self._step()
            finally:
                self._writes.put(None)  # after the batches already handed over
                writer.join()
                self.link.stop(self.host.shutdown())
                refresher.join(timeout=10)
                self._write_status()

    def _step(self) -> None:
        """Collect a batch and hand it to the writer (which holds at most two: back-pressure)."""
        batch = self._collect()
        if batch.messages or batch.releases:
            self._writes.put(batch)
        now = time.monotonic()
        if now >= self._status_at:
            self._status_at = now + 1.0
            ticked = self.host.tick(_now_ms())
            if ticked.released or ticked.commands:
                tick_batch = _Batch(Rows(horizons=self._horizons))
                self._absorb(tick_batch, ticked)
                self._writes.put(tick_batch)
            self._write_status()

    def _write_loop(self, stop: threading.Event) -> None:
        """Write and acknowledge batches in order, while the ingest thread decodes the next one."""
        while True:
            batch = self._writes.get()
            if batch is None:
                return
            self._commit(batch, stop)
            now = time.monotonic()
            if now >= self._housekeeping_at:
                self._housekeeping_at = now + HOUSEKEEPING_S
                self._housekeeping()

    # -- batches ----------------------------------------------------------------------------------

    def _collect(self) -> _Batch:
        """Take inbound messages until the batch is full or the first one has lingered long enough."""
        batch = _Batch(Rows(horizons=self._horizons))
        settings = self.config.ingest
        inbox = self.link.inbox
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            return batch
        deadline = time.monotonic() + settings.linger_ms / 1000
        self._receive(batch, first)
        while len(batch.rows.samples) < settings.max_rows:
            timeout = deadline - time.monotonic()
            try:
                message = inbox.get_nowait() if timeout <= 0 else inbox.get(timeout=timeout)
            except queue.Empty:
                break
            self._receive(batch, message)
            if timeout <= 0 and inbox.empty():
                break
        return batch

    def _receive(self, batch: _Batch, message: Inbound) -> None:
        batch.messages += 1
        self._absorb(batch, self.host.receive(message.token, message.topic, message.payload, _now_ms()))

    def _absorb(self, batch: _Batch, outcome: Outcome[AckToken]) -> None:
        now = _now_ms()
        for release in outcome.released:
            if release.error is not None:
                log.warning("message on %s set aside: %s", release.kind, release.error)
            batch.rows.add(release, now)
        batch.releases += outcome.released
        batch.commands += outcome.commands

    def _commit(self, batch: _Batch, stop: threading.Event) -> None:
        """Write the batch (retrying until it is stored or the historian stops), then acknowledge it."""
        delay = 0.5
        while True:
            try:
                result = self._require_store().write(batch.rows, messages=batch.messages)
                break
            except psycopg.Error as exc:
                self.counters.write_errors += 1
                log.error("writing a batch failed (%s); retrying in %.1f s, its messages unacknowledged", exc, delay)
                if stop.wait(delay):
                    return  # never acknowledged: the broker delivers the messages again
                delay = min(RETRY_MAX_S, delay * 2)
                self._reconnect()
        for release in batch.releases:
            self.link.ack(release.token)
        for command in batch.commands:
            self.link.publish(command)
        c = self.counters
        c.messages += batch.messages
        c.batches += 1
        c.samples_received += result.received
        c.samples_inserted += result.inserted
        c.last_commit_at = time.time()
        if result.newest_ms is not None:
            c.newest_sample_ms = max(c.newest_sample_ms or 0, result.newest_ms)
            c.lag_s = round(max(0.0, c.last_commit_at - result.newest_ms / 1000), 3)

    def _reconnect(self) -> None:
        store = self._store
        if store is None:
            return
        with contextlib.suppress(psycopg.Error):
            store.conn.close()
        try:
            self._store = Store(connect(self._conninfo), self.config.lines)
        except psycopg.Error as exc:
            log.error("reconnecting to the database failed: %s", exc)

    def _require_store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the historian is not running")
        if self._store.conn.closed:
            self._reconnect()
        return self._store

    def _housekeeping(self) -> None:
        store = self._require_store()
        today = dt.datetime.now(dt.UTC).date()
        try:
            store.create_ahead(today, self.config.ingest.partitions_ahead_days)
            dropped = store.drop_expired(today, self.config.retention)
        except psycopg.Error as exc:
            log.error("partition housekeeping failed: %s", exc)
            return
        if dropped:
            log.info("dropped expired partitions %s", ", ".join(dropped))

    # -- rollups ----------------------------------------------------------------------------------

    def _refresh_loop(self, stop: threading.Event) -> None:
        interval = self.config.ingest.refresh_interval_s
        conn: psycopg.Connection[Any] | None = None
        while not stop.wait(interval):
            try:
                if conn is None or conn.closed:
                    conn = connect(self._conninfo)
                refresh_rollups(conn)
                refresh_kpis(conn, self.config)
                row = conn.execute(
                    "SELECT coalesce((SELECT max(id) FROM ingest_batches), 0)"
                    " - (SELECT min(batch_id) FROM rollup_watermarks)"
                ).fetchone()
                conn.commit()
                self.counters.refresh_lag_batches = int(row[0]) if row else 0
            except psycopg.Error as exc:
                self.counters.refresh_errors += 1
                log.error("refreshing the rollups failed: %s", exc)
                with contextlib.suppress(psycopg.Error):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stats = self.host.stats
        return {
            "updated": time.time(),
            "pid": os.getpid(),
            "mqtt": "connected" if self.link.connected.is_set() else "down",
            "primary_host_id": self.config.mqtt.primary_host_id,
            **asdict(self.counters),
            "host": asdict(stats),
            "inbox": self.link.inbox.qsize(),
        }

    def _write_status(self) -> None:
        path = self.config.status_file
        if path is None:
            return
        _write_json(path, self.status())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
