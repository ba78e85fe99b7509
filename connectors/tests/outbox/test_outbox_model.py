"""Random sequences of operations against a model: nothing waiting is lost, duplicated or reordered.

The invariant: every batch appended and neither acknowledged nor dropped by a bound is handed out
exactly once per pending-cycle (until `requeue_in_flight` or a reopen starts a new cycle), in
append order; bounds drop oldest-first and never the batch just appended.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from plantline.connectors.outbox import ROW_OVERHEAD_BYTES, DropReason, Outbox, encode_batch
from plantline.connectors.samples import Quality, Sample

MAX_BYTES = 1200
MAX_AGE_S = 100.0


@dataclass
class Entry:
    id: int
    values: list[int]
    appended_at: float
    size: int


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="outbox-model-"))
        self.now = 1_700_000_000.0
        self.counter = 0
        self.stored: list[Entry] = []  # what the model says is stored, oldest first
        self.handed: set[int] = set()  # handed out in this pending-cycle
        self.recovered_up_to = 0
        self.dropped = {DropReason.MAX_AGE: 0, DropReason.MAX_BYTES: 0}
        self.known_ids: list[int] = []
        self.outbox = self.open()

    def open(self) -> Outbox:
        return Outbox(
            self.directory,
            max_bytes=MAX_BYTES,
            max_age_s=MAX_AGE_S,
            high_watermark=0.8,
            low_watermark=0.5,
            clock=lambda: self.now,
        )

    def teardown(self) -> None:
        self.outbox.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- the model's bounds -----------------------------------------------------------------

    def expire(self) -> None:
        while self.stored and self.stored[0].appended_at < self.now - MAX_AGE_S:
            self.drop(DropReason.MAX_AGE)

    def drop(self, reason: DropReason) -> None:
        entry = self.stored.pop(0)
        self.handed.discard(entry.id)
        self.dropped[reason] += len(entry.values)

    # -- operations ---------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert self.outbox.stats().batches == 0

    @rule(count=st.integers(1, 6) | st.integers(50, 70))  # now and then one batch larger than MAX_BYTES
    def append(self, count: int) -> None:
        values = list(range(self.counter, self.counter + count))
        self.counter += count
        samples = [Sample("m1", "counter.total", v, Quality.GOOD, v) for v in values]
        batch_id = self.outbox.append(samples)
        assert not self.known_ids or batch_id > max(self.known_ids)
        self.known_ids.append(batch_id)
        self.expire()
        self.stored.append(Entry(batch_id, values, self.now, len(encode_batch(samples)) + ROW_OVERHEAD_BYTES))
        while len(self.stored) > 1 and sum(e.size for e in self.stored) > MAX_BYTES:
            self.drop(DropReason.MAX_BYTES)
        assert self.stored[-1].id == batch_id  # the newest is never dropped

    @rule(max_samples=st.integers(1, 15) | st.just(1000))
    def pending(self, max_samples: int) -> None:
        self.expire()
        expected: list[Entry] = []
        total = 0
        for entry in self.stored:
            if entry.id in self.handed:
                continue
            if expected and total + len(entry.values) > max_samples:
                break
            expected.append(entry)
            total += len(entry.values)
            if total >= max_samples:
                break
        got = self.outbox.pending(max_samples)
        assert [(b.id, [s.value for s in b.samples]) for b in got] == [(e.id, e.values) for e in expected]
        assert [b.recovered for b in got] == [e.id <= self.recovered_up_to for e in expected]
        self.handed.update(e.id for e in expected)

    @precondition(lambda self: bool(self.known_ids))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from([*self.known_ids, 10**9]), max_size=4))
        self.outbox.ack(ids)
        self.stored = [e for e in self.stored if e.id not in ids]
        self.handed -= set(ids)

    @rule()
    def requeue(self) -> None:
        self.outbox.requeue_in_flight()
        self.handed.clear()

    @rule(seconds=st.floats(0, 0.6 * MAX_AGE_S))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def restart(self) -> None:
        self.outbox.close()
        self.outbox = self.open()
        self.dropped = {reason: 0 for reason in self.dropped}  # counters count since open
        self.recovered_up_to = max((e.id for e in self.stored), default=0)
        self.expire()  # the bounds apply on open
        self.handed.clear()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def stats_match_the_model(self) -> None:
        stats = self.outbox.stats()
        assert stats.batches == len(self.stored)
        assert stats.samples == sum(len(e.values) for e in self.stored)
        assert stats.bytes == sum(e.size for e in self.stored)
        assert stats.in_flight_batches == len(self.handed)
        assert {r: d.samples for r, d in stats.dropped.items()} == {r: n for r, n in self.dropped.items() if n}
        assert stats.bytes <= MAX_BYTES or stats.batches == 1


OutboxMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxModel = OutboxMachine.TestCase
