"""A real SIGKILL of a process writing the outbox loses nothing it reported committed.

A child process appends (and in the second test acknowledges) in a tight loop and prints each
operation after it returned; the test kills it at random moments, several rounds on the same
directory, and checks what a fresh `Outbox` finds against what the child said.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from plantline.connectors.outbox import Batch, Outbox

LIMITS = {"max_bytes": 1 << 30, "max_age_s": 1e9, "high_watermark": 0.8, "low_watermark": 0.5}

APPENDER = """
import sys
from pathlib import Path
from plantline.connectors.outbox import Outbox
from plantline.connectors.samples import Quality, Sample

directory, device = Path(sys.argv[1]), sys.argv[2]
outbox = Outbox(directory, max_bytes=1 << 30, max_age_s=1e9, high_watermark=0.8, low_watermark=0.5)
print("ready", flush=True)
n = 0
while True:
    size = 1 + n % 7
    samples = [Sample(device, "counter.total", n + k, Quality.GOOD, 1_700_000_000_000 + n + k, k) for k in range(size)]
    batch_id = outbox.append(samples)
    print(batch_id, n, size, flush=True)
    n += size
"""

ACKER = """
import sys
from pathlib import Path
from plantline.connectors.outbox import Outbox
from plantline.connectors.samples import Quality, Sample

outbox = Outbox(Path(sys.argv[1]), max_bytes=1 << 30, max_age_s=1e9, high_watermark=0.8, low_watermark=0.5)
print("ready", flush=True)
n = 0
while True:
    batch_id = outbox.append([Sample("capper", "counter.good", n, Quality.GOOD, n)])
    print("a", batch_id, flush=True)
    n += 1
    if n % 5 == 0:
        # acknowledge what the "broker" took, except every third batch (its PUBACK never came)
        acked = [b.id for b in outbox.pending(1000) if b.id % 3]
        print("s", *acked, flush=True)
        outbox.ack(acked)
        print("k", flush=True)
        outbox.requeue_in_flight()
"""


def run_until_killed(
    code: str, args: list[str], rng: random.Random, *, wait_ready: bool, window: tuple[float, float] = (0.0, 0.2)
) -> list[str]:
    """Start a child, SIGKILL it at a random moment, and return the complete lines it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        if wait_ready:
            first = proc.stdout.readline()
            assert first == "ready\n", first or proc.stderr.read()
            time.sleep(rng.uniform(*window))
        else:  # also kill during start-up and opening, before anything was appended
            time.sleep(rng.uniform(0.0, 0.4))
    finally:
        proc.kill()
        proc.wait(timeout=30)
    out = proc.stdout.read()
    errors = proc.stderr.read()
    assert "Traceback" not in errors, errors
    return [line for line in out.splitlines(keepends=True) if line.endswith("\n") and line != "ready\n"]


def everything(directory: Path) -> list[Batch]:
    with Outbox(directory, **LIMITS) as outbox:  # type: ignore[arg-type]
        return outbox.pending(1 << 30)


def test_every_batch_reported_committed_survives_kill_9_once_in_order_and_intact(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    printed: dict[int, tuple[str, int, int]] = {}
    rounds = [f"round{r}" for r in range(8)]
    for r, device in enumerate(rounds):
        for line in run_until_killed(APPENDER, [str(tmp_path), device], rng, wait_ready=r % 4 != 3):
            batch_id, first, size = (int(x) for x in line.split())
            printed[batch_id] = (device, first, size)
    assert len(printed) > 50, "the child never got going: the test proves nothing"

    batches = everything(tmp_path)
    ids = [b.id for b in batches]
    assert ids == sorted(set(ids)), "out of order or duplicated"
    assert set(printed) <= set(ids), f"lost: {sorted(set(printed) - set(ids))[:10]}"
    assert all(b.recovered for b in batches)
    for batch in batches:
        if batch.id in printed:
            device, first, size = printed[batch.id]
            assert [s.value for s in batch.samples] == list(range(first, first + size))
            assert {s.device for s in batch.samples} == {device}
            assert [s.protocol_code for s in batch.samples] == list(range(size))
            assert [s.source_ts_ms for s in batch.samples] == [
                1_700_000_000_000 + v for v in range(first, first + size)
            ]
    # a batch committed just before the kill but not yet printed is there too, and intact:
    # each round's values run 0, 1, 2, ... without a gap or a repeat
    for device in rounds:
        seen = [s.value for b in batches for s in b.samples if s.device == device]
        assert seen == list(range(len(seen)))


@dataclass
class AckLedger:
    """What the acking child reported, accumulated over the rounds."""

    appended: set[int]
    acked: set[int]
    never_acked: set[int]


def test_acked_batches_never_come_back_after_kill_9_and_unacked_ones_do(tmp_path: Path) -> None:
    rng = random.Random(7)
    ledger = AckLedger(set(), set(), set())
    for _ in range(5):
        in_progress: set[int] = set()
        for line in run_until_killed(ACKER, [str(tmp_path)], rng, wait_ready=True, window=(0.05, 0.3)):
            kind, *rest = line.split()
            if kind == "a":
                batch_id = int(rest[0])
                ledger.appended.add(batch_id)
                if batch_id % 3 == 0:
                    ledger.never_acked.add(batch_id)
            elif kind == "s":
                in_progress = {int(x) for x in rest}
            else:
                ledger.acked |= in_progress
                in_progress = set()
        present = {b.id for b in everything(tmp_path)}
        # an ack the kill interrupted happened entirely or not at all
        if in_progress & present:
            assert in_progress <= present
        else:
            ledger.acked |= in_progress
        assert not ledger.acked & present, "an acknowledged batch came back"
        assert ledger.never_acked & ledger.appended <= present
        assert ledger.appended - ledger.acked <= present, "an unacknowledged batch was lost"
        newest_printed = max(ledger.appended, default=0)
        assert {i for i in present if i > newest_printed} <= {newest_printed + 1}  # at most the one being printed
    assert len(ledger.acked) > 5, "the child hardly acknowledged anything: the test proves little"
