"""Samples per second into and out of the durable outbox, against bare SQLite and a plain file.

Measured for batch sizes 1, 100 and 1000 (or --batch N), each bounded by --count samples or
--seconds, whichever comes first, on a fresh outbox in a temporary directory:

1. append: `Outbox.append(batch)` (encode, CRC, one SQLite transaction, bounds bookkeeping) with
   `synchronous=NORMAL`, the default, durable against kill -9. Baseline: bare sqlite3 inserting
   the same rows, already encoded, one transaction per batch, with the same schema and pragmas.
2. drain: `pending(max(1000, batch))` then one `ack` of the ids it returned (read, CRC check,
   decode into Sample objects, delete), until the outbox is empty. Baseline: bare sqlite3 selecting
   the same number of raw rows and deleting them in one transaction, with no CRC or decoding.
3. append, power-loss safe: `durable_against_power_loss=True` (`synchronous=FULL`, an fsync per
   commit). Baseline: the same encoded bytes appended to a plain file, with an fsync per batch.

The ratio is outbox / baseline in samples per second: what everything the outbox does over the
bare storage leaves of its speed.
Run: uv run --all-packages python tests/bench/outbox_bench.py [--seconds S] [--batch N] [--count N]
     [--format table|json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import harness
from harness import Budget, Rate
from plantline.connectors.outbox import Outbox, encode_batch
from plantline.connectors.samples import Quality, Sample

T = TypeVar("T")
BATCH_SIZES = (1, 100, 1000)
DRAIN_SAMPLES = 1000  # what the publisher asks `pending` for: about one DDATA message
SIGNALS = ("state.run", "counter.good", "counter.reject", "counter.total", "cycle.time", "rate.actual")
RAW_SCHEMA = """
CREATE TABLE batch (id INTEGER PRIMARY KEY AUTOINCREMENT, appended_at REAL NOT NULL,
                    samples INTEGER NOT NULL, crc INTEGER NOT NULL, body BLOB NOT NULL)
"""


progress = harness.progress("outbox-bench")


def workload(batch: int, batches: int) -> list[list[Sample]]:
    """Return distinct batches of a filler's typical signals: floats, counters and booleans."""
    out: list[list[Sample]] = []
    n = 0
    for _ in range(batches):
        samples = []
        for _ in range(batch):
            signal = SIGNALS[n % len(SIGNALS)]
            value: bool | int | float = (
                n % 2 == 0
                if signal == "state.run"
                else float(n) * 0.25
                if signal in ("cycle.time", "rate.actual")
                else n
            )
            samples.append(Sample("filler-1", signal, value, Quality.GOOD, 1_700_000_000_000 + n))
            n += 1
        out.append(samples)
    return out


def cycling(batches: Sequence[T]) -> Callable[[], T]:
    """Return a function giving the items in turn, round and round."""
    position = [0]

    def next_batch() -> T:
        position[0] += 1
        return batches[position[0] % len(batches)]

    return next_batch


def open_outbox(directory: Path, *, durable: bool) -> Outbox:
    return Outbox(
        directory,
        max_bytes=1 << 40,
        max_age_s=1e9,
        high_watermark=0.8,
        low_watermark=0.5,
        durable_against_power_loss=durable,
    )


def outbox_append_and_drain(batch: int, budget: Budget, *, durable: bool) -> tuple[Rate, Rate | None]:
    batches = workload(batch, max(1, min(1000, 100_000 // batch)))
    next_batch = cycling(batches)
    with tempfile.TemporaryDirectory() as tmp, open_outbox(Path(tmp), durable=durable) as outbox:
        outbox.append(batches[0])  # warm-up: first-use costs (schema pages, statement cache)
        outbox.ack([b.id for b in outbox.pending(batch)])

        def append() -> int:
            samples = next_batch()
            outbox.append(samples)
            return len(samples)

        appended = harness.timed(append, budget)
        if durable:
            return appended, None

        def drain() -> int:
            got = outbox.pending(max(DRAIN_SAMPLES, batch))
            outbox.ack([b.id for b in got])
            return sum(len(b.samples) for b in got)

        drained = harness.timed(drain, Budget(budget.seconds, appended.operations))
        return appended, drained


def raw_sqlite_append_and_drain(batch: int, budget: Budget) -> tuple[Rate, Rate]:
    bodies = [encode_batch(samples) for samples in workload(batch, max(1, min(1000, 100_000 // batch)))]
    rows = [(len(body), zlib.crc32(body), body) for body in bodies]
    next_row = cycling(rows)
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(RAW_SCHEMA)

            def append() -> int:
                _, crc, body = next_row()
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO batch (appended_at, samples, crc, body) VALUES (?, ?, ?, ?)",
                    (time.time(), batch, crc, body),
                )
                db.execute("COMMIT")
                return batch

            appended = harness.timed(append, budget)
            per_read = max(1, max(DRAIN_SAMPLES, batch) // batch)

            def drain() -> int:
                got = db.execute("SELECT id, body FROM batch ORDER BY id LIMIT ?", (per_read,)).fetchall()
                if not got:
                    return 0
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM batch WHERE id <= ?", (got[-1][0],))
                db.execute("COMMIT")
                return len(got) * batch

            drained = harness.timed(drain, Budget(budget.seconds, appended.operations))
        finally:
            db.close()
    return appended, drained


def file_fsync_append(batch: int, budget: Budget) -> Rate:
    bodies = [encode_batch(samples) for samples in workload(batch, max(1, min(1000, 100_000 // batch)))]
    next_body = cycling(bodies)
    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(Path(tmp) / "log.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:

            def append() -> int:
                body = next_body()
                os.write(fd, len(body).to_bytes(4, "little") + body)
                os.fsync(fd)
                return batch

            return harness.timed(append, budget)
        finally:
            os.close(fd)


def run(batch_sizes: Sequence[int], budget: Budget) -> list[harness.Row]:
    results: list[harness.Row] = []
    for batch in batch_sizes:
        appended, drained = outbox_append_and_drain(batch, budget, durable=False)
        raw_appended, raw_drained = raw_sqlite_append_and_drain(batch, budget)
        assert drained is not None
        durable, _ = outbox_append_and_drain(batch, budget, durable=True)
        results += [
            row("append", batch, appended, "sqlite3 insert of encoded rows", raw_appended),
            row("drain", batch, drained, "sqlite3 select + delete, no decode", raw_drained),
            row(
                "append power-loss safe",
                batch,
                durable,
                "file write + fsync per batch",
                file_fsync_append(batch, budget),
            ),
        ]
        for result in results[-3:]:
            progress(result.describe())
    return results


def row(operation: str, batch: int, outbox: Rate, baseline: str, bare: Rate) -> harness.Row:
    notes = f"{outbox.operations:,} samples in {outbox.seconds:.2f} s"
    return harness.Row(f"{operation}, batch {batch}", outbox.per_second, "samples/s", baseline, bare.per_second, notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.arguments(__doc__, seconds=1.5, count=2_000_000, count_help="sample budget per measurement")
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1, 100, 1000)")
    args = parser.parse_args(argv)
    budget = harness.budget(parser, args)
    if any(b < 1 for b in args.batch or ()):
        parser.error("--batch must be positive")
    env = harness.environment(sqlite=sqlite3.sqlite_version)
    progress(f"{harness.environment_line(env)}; {budget.seconds} s per measurement")
    results = run(tuple(args.batch or BATCH_SIZES), budget)
    harness.report("Durable outbox: samples per second in and out", env, results, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
