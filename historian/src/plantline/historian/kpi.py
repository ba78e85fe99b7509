"""The historian's KPIs, computed by the edge's own KPI engine (plantline.connectors.kpi); pure.

- `replay_window` feeds a machine's stored samples to a `KpiEngine` configured exactly as its
  connector's, and returns the snapshot at `at_ms`: the figures the edge publishes for that
  window, from the same samples.
- `replay_minutes` does the same with one-minute buckets and returns, per whole minute, the
  engine's accumulators (times, parts, ideal work), the machine's state changes and its faults.
- `replay_checkpoints` feeds a machine's own engine and saves it every `CHECKPOINT_MS` (15 s);
  `resume_window` restores one such checkpoint and replays only the samples after it: the snapshot
  of the engine that was fed every sample, without feeding them all again.
- `combine` adds minutes up and computes OEE, A, P, Q from the sums with `compute_oee`, as the
  engine computes its window from its buckets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from plantline.connectors.kpi import STATE_PRECEDENCE, KpiConfig, KpiEngine, KpiFigures, KpiSnapshot, OeeFigures
from plantline.connectors.kpi.faults import FaultTracker
from plantline.connectors.kpi.oee import compute_oee
from plantline.connectors.samples import Quality, Sample

MINUTE_MS = 60_000
# How often the KPI refresh saves a machine's engine (`replay_checkpoints`): `/kpi/current` at a
# time replays the samples since the last save, half of this on average, per machine.
CHECKPOINT_MS = 15_000
KPI_SIGNALS = frozenset(
    {*STATE_PRECEDENCE, "counter.good", "counter.reject", "counter.total", "cycle.ideal", "fault.active", "fault.code"}
)


@dataclass(frozen=True, slots=True)
class Minute:
    """The KPI engine's accumulators of one machine over one minute starting at `start_ms`."""

    start_ms: int
    run_ms: int
    idle_ms: int
    blocked_ms: int
    starved_ms: int
    planned_stop_ms: int
    calendar_stop_ms: int
    unknown_ms: int
    good: int | None
    reject: int | None
    total: int
    ideal_work_us: int
    unvalued: int

    @classmethod
    def of(cls, start_ms: int, f: KpiFigures) -> Minute:
        def ms(seconds: float) -> int:
            return round(seconds * 1000)

        return cls(
            start_ms,
            ms(f.run_s),
            ms(f.idle_s),
            ms(f.blocked_s),
            ms(f.starved_s),
            ms(f.planned_stop_s),
            ms(f.calendar_stop_s),
            ms(f.unknown_s),
            f.good,
            f.reject,
            f.total,
            round(f.ideal_work_s * 1e6),
            f.unvalued,
        )


@dataclass(frozen=True, slots=True)
class Fault:
    started_ms: int
    ended_ms: int | None  # None: still active at the end of the replay
    code: int


@dataclass(frozen=True, slots=True)
class Replay:
    minutes: tuple[Minute, ...]
    states: tuple[tuple[int, str], ...]  # (from ms, state) at each change
    faults: tuple[Fault, ...]


def minute_config(config: KpiConfig) -> KpiConfig:
    """Return `config` with a one-minute window of one bucket: a snapshot at a minute's end is that minute."""
    return dataclasses.replace(config, window_s=60.0, resolution_s=60.0)


def state_of(bits: dict[str, bool | None]) -> str:
    """Return a machine's state from its state bits: the first true one in the engine's precedence."""
    for signal in STATE_PRECEDENCE:
        if bits.get(signal):
            return signal.removeprefix("state.")
    return "unknown"


class _FaultLog:
    """Fault episodes as the engine's fault state machine sees them (chatter within the debounce is one)."""

    def __init__(self, debounce_ms: int) -> None:
        self.tracker = FaultTracker(debounce_ms)
        self.faults: dict[int, Fault] = {}

    def update(self, sample: Sample) -> None:
        value = None if sample.quality is Quality.BAD else sample.value
        before = self.tracker.active()
        if sample.signal == "fault.active":
            self.tracker.set_active(sample.source_ts_ms, None if value is None else bool(value))
        elif isinstance(value, int | float) or value is None:
            self.tracker.set_code(sample.source_ts_ms, None if value is None else int(value))
        after = self.tracker.active()
        for fault in after:
            known = self.faults.get(fault.since_ms)
            if known is None or known.ended_ms is not None or known.code != fault.code:
                self.faults[fault.since_ms] = Fault(fault.since_ms, None, fault.code)
        ended = {f.since_ms for f in before} - {f.since_ms for f in after}
        for since in ended:
            known = self.faults[since]
            self.faults[since] = Fault(since, sample.source_ts_ms, known.code)


def _ordered(samples: Iterable[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: (s.source_ts_ms, s.signal))


def replay_minutes(
    machine_id: str, config: KpiConfig, lead_in: Iterable[Sample], samples: Iterable[Sample], *, start_ms: int
) -> Replay:
    """Return the whole minutes from `start_ms` (a minute's start) to the last sample, and states and faults.

    `lead_in` holds each signal's last reading before `start_ms`: the state the machine was in.
    """
    engine = KpiEngine(machine_id, minute_config(config))
    faults = _FaultLog(round(config.fault_debounce_s * 1000))
    bits: dict[str, bool | None] = {}
    state: str | None = None
    states: list[tuple[int, str]] = []
    minutes: list[Minute] = []
    boundary = start_ms + MINUTE_MS
    for sample in [*_ordered(lead_in), *_ordered(samples)]:
        ts = sample.source_ts_ms
        while ts >= boundary and boundary - MINUTE_MS >= start_ms:
            minutes.append(Minute.of(boundary - MINUTE_MS, engine.snapshot(boundary).window))
            boundary += MINUTE_MS
        engine.update(sample)
        if sample.signal.startswith("state."):
            bits[sample.signal] = None if sample.quality is Quality.BAD else bool(sample.value)
            now = state_of(bits)
            if now != state and ts >= start_ms:
                if states and states[-1][0] == ts:
                    states.pop()  # bits of one instant arrive one by one: only where they settle counts
                if not states or states[-1][1] != now:
                    states.append((ts, now))
            state = now
        elif sample.signal in ("fault.active", "fault.code"):
            faults.update(sample)
    return Replay(tuple(minutes), tuple(states), tuple(sorted(faults.faults.values(), key=lambda f: f.started_ms)))


def replay_window(
    machine_id: str, config: KpiConfig, lead_in: Iterable[Sample], samples: Iterable[Sample], *, at_ms: int
) -> KpiSnapshot:
    """Return the machine's KPI snapshot at `at_ms`, as the edge computes it from these samples."""
    return _run_to(engine_after(machine_id, config, lead_in), samples, at_ms)


def engine_after(machine_id: str, config: KpiConfig, lead_in: Iterable[Sample]) -> KpiEngine:
    """Return a new engine fed `lead_in`, each signal's last reading before where a replay starts."""
    engine = KpiEngine(machine_id, config)
    for sample in _ordered(lead_in):
        engine.update(sample)
    return engine


def resume_window(config: KpiConfig, checkpoint: bytes, samples: Iterable[Sample], *, at_ms: int) -> KpiSnapshot:
    """Return the KPI snapshot at `at_ms` of the engine `checkpoint` saved, fed the samples after it.

    Raises CheckpointError when the checkpoint was not taken with `config`.
    """
    return _run_to(KpiEngine.restore(config, checkpoint), samples, at_ms)


def _run_to(engine: KpiEngine, samples: Iterable[Sample], at_ms: int) -> KpiSnapshot:
    for sample in _ordered(samples):
        if sample.source_ts_ms <= at_ms:
            engine.update(sample)
    return engine.snapshot(at_ms)


def replay_checkpoints(engine: KpiEngine, samples: Iterable[Sample], *, after_ms: int) -> list[tuple[int, bytes]]:
    """Feed `samples` to `engine`, saving it at the boundaries (every `CHECKPOINT_MS`) after `after_ms` they cross.

    Return (time, checkpoint) pairs: a checkpoint at T holds every sample before T and none at or
    after it, so restored and fed the samples from T on it is the engine that was fed them all
    (`resume_window`). A stretch without a sample adds none: the checkpoint before it is the same
    engine.
    """
    out: list[tuple[int, bytes]] = []
    boundary, fed = after_ms - after_ms % CHECKPOINT_MS + CHECKPOINT_MS, False
    for sample in _ordered(samples):
        ts = sample.source_ts_ms
        if ts >= boundary:
            slot = ts - ts % CHECKPOINT_MS
            if fed:
                out.append((slot, engine.checkpoint()))
            boundary, fed = slot + CHECKPOINT_MS, False
        engine.update(sample)
        fed = True
    return out


_CURRENT_FIELDS = (
    "start_ms", "end_ms", "oee", "availability", "performance", "quality", "run_s", "planned_s", "good", "reject",
    "total", "mttr_s", "mtbf_s", "fault_count",
)  # fmt: skip


def current_body(window: KpiFigures) -> dict[str, Any]:
    """Return the window's figures as the KPI API's `/kpi/current` says them (JSON-ready, warnings sorted)."""
    body: dict[str, Any] = {name: getattr(window, name) for name in _CURRENT_FIELDS}
    body["warnings"] = sorted(str(w) for w in window.warnings)
    return body


def window_start(config: KpiConfig, at_ms: int) -> int:
    """Return where the engine's window at `at_ms` starts (a bucket boundary `window_s` back)."""
    window_ms, bucket_ms = round(config.window_s * 1000), max(1, round(config.resolution_s * 1000))
    since = at_ms - window_ms
    return since - since % bucket_ms


@dataclass(frozen=True, slots=True)
class Totals:
    """Minutes added up: the inputs of OEE over their span."""

    run_ms: int = 0
    planned_ms: int = 0
    total: int = 0
    good: int | None = None
    reject: int | None = None
    ideal_work_us: int = 0
    unvalued: int = 0

    def figures(self) -> OeeFigures:
        return compute_oee(
            run_s=self.run_ms / 1000,
            planned_s=self.planned_ms / 1000,
            total=self.total,
            good=self.good,
            ideal_work_s=self.ideal_work_us / 1e6,
            unvalued=self.unvalued,
        )


def _add(a: int | None, b: int | None) -> int | None:
    return a if b is None else (b if a is None else a + b)


def combine(minutes: Sequence[Minute]) -> Totals:
    """Return the sums of `minutes` (a good or reject count is None only if no minute has one)."""
    run = planned = total = ideal = unvalued = 0
    good: int | None = None
    reject: int | None = None
    for m in minutes:
        run += m.run_ms
        planned += m.run_ms + m.idle_ms + m.blocked_ms + m.starved_ms
        total += m.total
        ideal += m.ideal_work_us
        unvalued += m.unvalued
        good, reject = _add(good, m.good), _add(reject, m.reject)
    return Totals(run, planned, total, good, reject, ideal, unvalued)


def minute_starts(start_ms: int, end_ms: int) -> Iterator[int]:
    first = start_ms - start_ms % MINUTE_MS
    return iter(range(first, end_ms, MINUTE_MS))
