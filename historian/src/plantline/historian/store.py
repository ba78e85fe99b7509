"""The historian's writes to PostgreSQL: one transaction per batch, binary COPY, ON CONFLICT after a conflict.

Samples go by binary COPY into the day-partitioned `samples`, keyed on (series, source timestamp);
a batch that holds one already stored (a re-delivery, a replay) goes instead through a temporary
staging table and `ON CONFLICT DO NOTHING`: either way each sample lands once. Per series, the
span of the batch is recorded (`dirty_spans`) for the rollups. The caller acknowledges the batch's
MQTT messages only after `write` returned, so a crash between the two re-delivers them and the key
absorbs the repeat.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from plantline.historian.config import LineSettings, RetentionSettings
from plantline.historian.rows import KPI_COLUMNS, MachineKey, Rows, SampleRow

log = logging.getLogger(__name__)

# A snapshot's KPI columns are the edge's KPI metrics (rows.KPI_COLUMNS), then the data it was computed from.
_INSERT_KPI_SNAPSHOT = sql.SQL(
    "INSERT INTO kpi_snapshots (machine_id, ts, {}, data_until) VALUES (%s, at_ms(%s), {}, at_ms(%s))"
    " ON CONFLICT DO NOTHING"
).format(
    sql.SQL(", ").join(map(sql.Identifier, KPI_COLUMNS.values())),
    sql.SQL(", ").join([sql.Placeholder()] * len(KPI_COLUMNS)),
)

DAY_MS = 86_400_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Connection = psycopg.Connection[tuple[Any, ...]]


def connect(conninfo: str) -> Connection:
    """Return a connection speaking UTC (partition bounds and buckets are UTC days and hours)."""
    return psycopg.connect(conninfo, options="-c timezone=UTC")


@dataclass(frozen=True, slots=True)
class BatchResult:
    batch_id: int
    received: int  # samples in the batch
    inserted: int  # of which new: the rest were already stored (re-deliveries, replays)
    newest_ms: int | None  # the newest source timestamp among them


def partition_name(day: dt.date) -> str:
    return f"samples_{day:%Y%m%d}"


def _day(ms: int) -> dt.date:
    return (_EPOCH + dt.timedelta(milliseconds=ms - ms % DAY_MS)).date()


# Binary COPY (PostgreSQL's own representation: no text to format or parse): a header, per row the
# field count and each field as its length (-1: null) and big-endian bytes, a trailer. A timestamptz
# is microseconds since 2000-01-01 UTC.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_PG_EPOCH_MS = 946_684_800_000
# (series_id, ts, value, text_value, quality) with a number, with neither, and around a text.
_NUMBER_ROW = struct.Struct("!hiiiqidiih").pack
_NULL_ROW = struct.Struct("!hiiiqiiih").pack
_TEXT_HEAD = struct.Struct("!hiiiqii").pack
_TEXT_TAIL = struct.Struct("!ih").pack
_COPY_SAMPLES = "COPY samples (series_id, ts, value, text_value, quality) FROM STDIN (FORMAT binary)"
_COPY_STAGING = "COPY staging (series_id, ts, value, text_value, quality) FROM STDIN (FORMAT binary)"
STAGED_AFTER_CONFLICT = 8  # batches that go through staging after one whose COPY met a stored sample


class Store:
    """Writes batches; knows the machines and series ids and which day partitions exist."""

    def __init__(self, conn: Connection, lines: Iterable[LineSettings] = ()) -> None:
        self.conn = conn
        self._lines = {(line.group_id, node): line for line in lines for node in line.edge_node_ids}
        self._machines: dict[MachineKey, int] = {}
        self._series: dict[tuple[int, str], int] = {}
        self._days: set[dt.date] = set()
        self._staged_batches = 0  # batches still to write through staging, after a conflict
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staging (series_id integer, ts timestamptz, value double precision,"
            " text_value text, quality smallint) ON COMMIT DELETE ROWS"
        )
        conn.commit()
        self._load_days()

    # -- partitions ---------------------------------------------------------------------------------

    def _load_days(self) -> None:
        rows = self.conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'samples'::regclass"
        ).fetchall()
        self.conn.commit()
        self._days = {dt.datetime.strptime(str(name)[8:], "%Y%m%d").date() for (name,) in rows}

    def ensure_days(self, days: Iterable[dt.date]) -> None:
        """Create the day partitions among `days` that do not exist yet (inside the caller's transaction)."""
        for day in sorted(set(days) - self._days):
            self.conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF samples FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(partition_name(day)),
                    sql.Literal(f"{day.isoformat()} 00:00+00"),
                    sql.Literal(f"{day + dt.timedelta(days=1)} 00:00+00"),
                )
            )
            self._days.add(day)

    def create_ahead(self, today: dt.date, days: int) -> None:
        """Create the partitions from yesterday to `days` ahead, so ingest rarely creates one itself."""
        with self.conn.transaction():
            self.ensure_days(today + dt.timedelta(days=n) for n in range(-1, days + 1))

    def drop_expired(self, today: dt.date, retention: RetentionSettings) -> list[str]:
        """Drop the day partitions and delete the rollup, KPI and event rows older than their retention."""
        cutoff = today - dt.timedelta(days=retention.samples_days)
        dropped = [partition_name(day) for day in sorted(self._days) if day < cutoff]
        with self.conn.transaction():
            for name in dropped:
                self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            for table, column, days in (
                ("rollup_1m", "bucket", retention.rollup_1m_days),
                ("rollup_5m", "bucket", retention.rollup_5m_days),
                ("rollup_1h", "bucket", retention.rollup_1h_days),
                ("kpi_minutes", "bucket", retention.kpi_days),
                ("kpi_snapshots", "ts", retention.kpi_days),
                ("machine_states", "ts", retention.events_days),
                ("faults", "started_at", retention.events_days),
                ("kpi_checkpoints", "ts", retention.samples_days),
            ):
                self.conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} < %s").format(sql.Identifier(table), sql.Identifier(column)),
                    (dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), dt.UTC),),
                )
        self._days -= {day for day in self._days if day < cutoff}
        return dropped

    # -- machines and series ------------------------------------------------------------------------

    def machine_id(self, key: MachineKey) -> int:
        found = self._machines.get(key)
        if found is not None:
            return found
        line = self._lines.get((key.group_id, key.edge_node_id))
        site, line_name = (line.site, line.line) if line is not None else (key.group_id, key.edge_node_id)
        bits = line.machines[key.device_id].counter_bits if line is not None and key.device_id in line.machines else 32
        row = self.conn.execute(
            "INSERT INTO machines (group_id, edge_node_id, device_id, site, line, counter_bits)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (group_id, edge_node_id, device_id)"
            " DO UPDATE SET site = EXCLUDED.site, line = EXCLUDED.line, counter_bits = EXCLUDED.counter_bits"
            " RETURNING id",
            (key.group_id, key.edge_node_id, key.device_id, site, line_name, bits),
        ).fetchone()
        assert row is not None  # noqa: S101 - RETURNING of an upsert
        self._machines[key] = int(row[0])
        return self._machines[key]

    def series_id(self, machine_id: int, signal: str, datatype: int) -> int:
        found = self._series.get((machine_id, signal))
        if found is not None:
            return found
        row = self.conn.execute(
            "INSERT INTO series (machine_id, signal, datatype) VALUES (%s, %s, %s)"
            " ON CONFLICT (machine_id, signal) DO UPDATE SET datatype = EXCLUDED.datatype RETURNING id",
            (machine_id, signal, datatype),
        ).fetchone()
        assert row is not None  # noqa: S101 - RETURNING of an upsert
        self._series[(machine_id, signal)] = int(row[0])
        return self._series[(machine_id, signal)]

    def forget_ids(self) -> None:
        """Drop the cached ids (after a rolled-back transaction, whose new ids never existed)."""
        self._machines.clear()
        self._series.clear()
        self._load_days()

    # -- batches ------------------------------------------------------------------------------------

    def write(self, rows: Rows, *, messages: int) -> BatchResult:
        """Store a batch in one transaction; return what it added. Rolls back (and raises) on error."""
        try:
            with self.conn.transaction():
                return self._write(rows, messages)
        except psycopg.Error:
            self.forget_ids()
            raise

    def _write(self, rows: Rows, messages: int) -> BatchResult:
        samples = rows.samples
        days = {row[3] // DAY_MS for row in samples}  # integer days first: one date per day, not per row
        self.ensure_days(_day(day * DAY_MS) for day in days)
        data, spans = self._encode(samples)
        batch = self.conn.execute(
            "INSERT INTO ingest_batches (messages, received, inserted) VALUES (%s, %s, 0) RETURNING id",
            (messages, len(samples)),
        ).fetchone()
        assert batch is not None  # noqa: S101 - RETURNING
        batch_id = int(batch[0])
        inserted = 0
        if spans:
            inserted = self._insert(data, len(samples))
            self._record_spans(batch_id, inserted, spans)
        self._write_kpis(rows.kpis)
        self._write_status(rows.status)
        return BatchResult(batch_id, len(samples), inserted, max((s[1] for s in spans.values()), default=None))

    def _encode(self, samples: list[SampleRow]) -> tuple[bytes, dict[int, list[int]]]:
        """Return the samples as binary COPY data, and per series the oldest and newest source time (ms)."""
        parts = [_COPY_HEADER]
        append = parts.append
        spans: dict[int, list[int]] = {}
        last_machine, machine_id = None, 0
        known = self._series
        for machine, signal, datatype, ts, value, text, quality in samples:
            if machine is not last_machine:  # rows come a message, so a machine, at a time
                last_machine, machine_id = machine, self.machine_id(machine)
            series = known.get((machine_id, signal)) or self.series_id(machine_id, signal, datatype)
            span = spans.get(series)
            if span is None:
                spans[series] = [ts, ts]
            elif ts < span[0]:
                span[0] = ts
            elif ts > span[1]:
                span[1] = ts
            micros = (ts - _PG_EPOCH_MS) * 1000
            if value is not None:
                append(_NUMBER_ROW(5, 4, series, 8, micros, 8, value, -1, 2, quality))
            elif text is None:
                append(_NULL_ROW(5, 4, series, 8, micros, -1, -1, 2, quality))
            else:
                encoded = text.encode()
                append(_TEXT_HEAD(5, 4, series, 8, micros, -1, len(encoded)))
                append(encoded)
                append(_TEXT_TAIL(2, quality))
        append(_COPY_TRAILER)
        return b"".join(parts), spans

    def _insert(self, data: bytes, count: int) -> int:
        """Add the encoded samples to `samples`; return how many were new (the rest were stored already).

        A batch rarely holds a sample already stored (only re-deliveries and replays do): it is
        COPied straight into `samples`, inside a savepoint. Should the key refuse one, the savepoint
        is rolled back and the batch goes through staging and ON CONFLICT DO NOTHING, as do the next
        few batches (re-deliveries come in runs), for which a refused COPY would be wasted work.
        """
        if self._staged_batches <= 0:
            try:
                with self.conn.transaction(), self.conn.cursor().copy(_COPY_SAMPLES) as copy:
                    copy.write(data)
                return count
            except psycopg.errors.UniqueViolation:
                self._staged_batches = STAGED_AFTER_CONFLICT
        self._staged_batches -= 1
        with self.conn.cursor().copy(_COPY_STAGING) as copy:
            copy.write(data)
        return self.conn.execute(
            "INSERT INTO samples (series_id, ts, value, text_value, quality)"
            " SELECT series_id, ts, value, text_value, quality FROM staging ON CONFLICT DO NOTHING"
        ).rowcount

    def _record_spans(self, batch_id: int, inserted: int, spans: dict[int, list[int]]) -> None:
        # The spans of what was written, re-deliveries included: a few buckets recomputed for nothing
        # cost less than reading back what the INSERT added.
        series = list(spans)
        oldest = [span[0] for span in spans.values()]
        newest = [span[1] for span in spans.values()]
        self.conn.execute(
            "INSERT INTO dirty_spans (batch_id, series_id, from_ts, to_ts)"
            " SELECT %s, s, at_ms(f), at_ms(t) FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) AS x(s, f, t)",
            (batch_id, series, oldest, newest),
        )
        self.conn.execute(
            "UPDATE ingest_batches SET inserted = %s, oldest_ts = at_ms(%s) WHERE id = %s",
            (inserted, min(oldest), batch_id),
        )

    def _write_kpis(self, kpis: Mapping[tuple[MachineKey, int], Mapping[str, float | int | None]]) -> None:
        if not kpis:
            return
        columns = (*KPI_COLUMNS.values(), "data_until")
        params = [
            (self.machine_id(machine), ts, *(values.get(c) for c in columns)) for (machine, ts), values in kpis.items()
        ]
        with self.conn.cursor() as cur:
            cur.executemany(_INSERT_KPI_SNAPSHOT, params)

    def _write_status(self, status: Mapping[MachineKey, tuple[bool, int]]) -> None:
        for machine, (online, since_ms) in status.items():
            if machine.device_id == "":  # the edge node died: each of its devices is offline
                self.conn.execute(
                    "UPDATE node_status s SET online = false, changed_at = timestamptz 'epoch' + %s * interval '1 ms'"
                    " FROM machines m WHERE m.id = s.machine_id AND m.group_id = %s AND m.edge_node_id = %s",
                    (since_ms, machine.group_id, machine.edge_node_id),
                )
                continue
            self.conn.execute(
                "INSERT INTO node_status (machine_id, online, changed_at)"
                " VALUES (%s, %s, timestamptz 'epoch' + %s * interval '1 ms')"
                " ON CONFLICT (machine_id) DO UPDATE SET online = EXCLUDED.online, changed_at = EXCLUDED.changed_at",
                (self.machine_id(machine), online, since_ms),
            )


def timescaledb_available(conn: Connection) -> bool:
    """Return whether the TimescaleDB extension could be created here (it is detected, not used)."""
    row = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    conn.commit()
    return bool(row and row[0])
