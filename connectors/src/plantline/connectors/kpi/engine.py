"""The KPI engine of one machine: samples in, OEE, time accounting and faults out.

`KpiEngine.update(sample)` takes the machine's canonical signals; `snapshot(now_ms)` returns the
figures over the rolling window, the current shift and the last shift that ended, without
changing the engine. Pure: time comes from the samples' source timestamps and from `now_ms`,
never from a clock. Parts are counted at the timestamp of the counter reading that shows them.

Time accounting. The state signals are booleans, normally exactly one true. When several are
true the first true one in `STATE_PRECEDENCE` counts: run, planned stop, blocked, starved, idle.
Run comes first because parts are counted while running: their run time must stay with them, or
performance would exceed one for no fault of the ideal cycle time. Then, per millisecond:

- running is run time, and so planned production time, whatever the calendar says;
- otherwise a calendar break or time outside every shift is a calendar stop, and a true
  `state.planned_stop` a planned stop: both are excluded from planned production time;
- otherwise idle, blocked and starved are down time (planned, not run);
- with no state signal true (or known), the last state holds for `state_gap_hold_s` (a source
  that reports changes sets one bit before clearing the other), then the time is *unknown*:
  excluded from planned production time, reported as `unknown_s`, and flagged. It is neither
  fairly down time nor fairly planned stop: the engine does not know.

Samples. Per signal, a sample older than the last one accepted for that signal is dropped and
counted (`out_of_order`). Signals interleave, so a sample may be older than the engine's clock
(the newest timestamp of any signal): it is applied at the engine's clock and counted (`late`).
Bad-quality samples make a state bit unknown; counters, fault signals and the ideal cycle time
keep their last good value. Counters are read by `CounterRules` (resets, rollovers).

Memory. The window is kept as buckets of `resolution_s`, each with its time per category and its
counts, plus running sums over them; buckets leave as the window moves. A window's figures cover
whole buckets: from the start of the bucket holding `now - window_s` (reported as `start_ms`) to
`now`, so between `window_s` and `window_s + resolution_s`. The current shift is one running
accumulator, started afresh at each shift start (and from the first sample when the engine starts
mid-shift); the last one is kept, complete, when the shift ends. Memory is bounded by the window
length and the faults of two shifts, not by the number of samples.

Faults are scoped as `FaultTracker.stats` says: a scope counts the faults that started in it, the
repairs that ended in it and the times between failures that ended (with a fault) in it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from plantline.connectors.config import DataTypeName
from plantline.connectors.kpi import checkpoint as codec
from plantline.connectors.kpi.checkpoint import CheckpointError, pack_occurrence, unpack_occurrence
from plantline.connectors.kpi.faults import ActiveFault, FaultTracker
from plantline.connectors.kpi.oee import CounterEvent, CounterRules, KpiWarning, compute_oee
from plantline.connectors.kpi.shifts import (
    ALWAYS_PRODUCTION,
    CalendarPiece,
    CalendarStatus,
    ShiftCalendar,
    ShiftOccurrence,
)
from plantline.connectors.metric_names import (
    KPI_AVAILABILITY,
    KPI_FAULT_ACTIVE_CODE,
    KPI_FAULTS,
    KPI_GOOD,
    KPI_MTBF,
    KPI_MTTR,
    KPI_OEE,
    KPI_PERFORMANCE,
    KPI_PLANNED,
    KPI_QUALITY,
    KPI_REJECT,
    KPI_RUN,
    KPI_STATE,
    KPI_TOTAL,
    MACHINE_STATES,
    MetricDefinition,
)
from plantline.connectors.samples import Quality, Sample, Value

STATE_PRECEDENCE: tuple[str, ...] = (
    "state.run",
    "state.planned_stop",
    "state.blocked",
    "state.starved",
    "state.idle",
)
COUNTER_SIGNALS: tuple[str, ...] = ("counter.good", "counter.reject", "counter.total")

# The layout of an accumulator (a bucket, the window's running sums, the shift's): a list of ints.
RUN, PLANNED_STOP, BLOCKED, STARVED, IDLE, CALENDAR_STOP, UNKNOWN, OVERLAP = range(8)  # ms
GOOD, REJECT, TOTAL = 8, 9, 10  # parts counted, per counter signal
IDEAL_GOOD, IDEAL_REJECT, IDEAL_TOTAL = 11, 12, 13  # their ideal cycle times, summed, in us
UNVALUED_GOOD, UNVALUED_REJECT, UNVALUED_TOTAL = 14, 15, 16  # parts counted with no ideal cycle time
RESETS, ROLLOVERS, DISCONTINUITIES = 17, 18, 19
FIELDS = 20
START = FIELDS  # a bucket carries its start (ms) after the fields

_STATE_CATEGORY = dict(zip(STATE_PRECEDENCE, (RUN, PLANNED_STOP, BLOCKED, STARVED, IDLE), strict=True))
# The state a time category shows as (`MACHINE_STATES`); an active fault shows as "fault" unless running.
_CATEGORY_STATE = {
    RUN: "run",
    PLANNED_STOP: "planned_stop",
    BLOCKED: "blocked",
    STARVED: "starved",
    IDLE: "idle",
    CALENDAR_STOP: "off_shift",
    UNKNOWN: "unknown",
}
_COUNTER_FIELDS = {
    "counter.good": (GOOD, IDEAL_GOOD, UNVALUED_GOOD),
    "counter.reject": (REJECT, IDEAL_REJECT, UNVALUED_REJECT),
    "counter.total": (TOTAL, IDEAL_TOTAL, UNVALUED_TOTAL),
}
_EVENT_FIELD = {
    CounterEvent.RESET: RESETS,
    CounterEvent.ROLLOVER: ROLLOVERS,
    CounterEvent.DISCONTINUITY: DISCONTINUITIES,
}
_EVENT_WARNING = (
    (RESETS, KpiWarning.COUNTER_RESET),
    (ROLLOVERS, KpiWarning.COUNTER_ROLLOVER),
    (DISCONTINUITIES, KpiWarning.COUNTER_DISCONTINUITY),
    (UNKNOWN, KpiWarning.UNKNOWN_STATE),
    (OVERLAP, KpiWarning.STATE_OVERLAP),
)


@dataclass(frozen=True, slots=True)
class KpiConfig:
    """How one machine's KPIs are computed.

    `ideal_cycle_s`, when set, is used instead of the machine's `cycle.ideal` (an engineer sets it
    to override a PLC value known to be wrong); without it, `cycle.ideal` is used.
    """

    window_s: float = 900.0  # the rolling window
    resolution_s: float = 5.0  # its buckets: the window's start moves in these steps
    ideal_cycle_s: float | None = None
    counters: CounterRules = field(default_factory=CounterRules)  # width, rollover and reset rules
    fault_debounce_s: float = 5.0  # a fault back within this long after clearing is the same fault
    state_gap_hold_s: float = 2.0  # how long the last state holds while no state signal is true
    calendar: ShiftCalendar | None = None  # None: every hour is planned, there are no shifts

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s: expected > 0, got {self.window_s!r}")
        if not (math.isfinite(self.resolution_s) and 0.001 <= self.resolution_s <= self.window_s):
            raise ValueError(f"resolution_s: expected 0.001 .. window_s, got {self.resolution_s!r}")
        if self.ideal_cycle_s is not None and not (math.isfinite(self.ideal_cycle_s) and self.ideal_cycle_s > 0):
            raise ValueError(f"ideal_cycle_s: expected > 0, got {self.ideal_cycle_s!r}")
        for name in ("fault_debounce_s", "state_gap_hold_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class KpiFigures:
    """The KPIs of one scope (the rolling window, or the current shift) from `start_ms` to `end_ms`.

    Times are seconds. `planned_s` = `run_s` + `down_s`; `planned_stop_s`, `calendar_stop_s` and
    `unknown_s` are excluded from it. `good` and `reject` are None when no counter gives them.
    """

    scope: str
    shift_name: str | None
    start_ms: int
    end_ms: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    run_s: float
    planned_s: float
    idle_s: float
    blocked_s: float
    starved_s: float
    planned_stop_s: float
    calendar_stop_s: float
    unknown_s: float
    good: int | None
    reject: int | None
    total: int
    fault_count: int
    mttr_s: float | None
    mtbf_s: float | None
    warnings: frozenset[KpiWarning]
    # The inputs of performance, so that figures of adjacent periods add up (the historian's minutes):
    # the ideal cycle times of the parts counted, and how many were counted with no ideal cycle time.
    ideal_work_s: float = 0.0
    unvalued: int = 0

    @property
    def down_s(self) -> float:
        return self.idle_s + self.blocked_s + self.starved_s


@dataclass(frozen=True, slots=True)
class SampleCounts:
    accepted: int = 0
    out_of_order: int = 0  # older than the last accepted sample of the same signal: dropped
    late: int = 0  # older than the engine's clock: applied at the engine's clock
    invalid: int = 0  # a value of the wrong type or range for its signal: dropped
    ignored: int = 0  # another device's, or a signal the KPIs do not use


@dataclass(frozen=True, slots=True)
class KpiSnapshot:
    """The KPIs of a machine at `at_ms`: the window's (also as attributes here) and the shifts'."""

    machine_id: str
    at_ms: int
    window: KpiFigures
    shift: KpiFigures | None  # the shift going on at `at_ms`, from its start (or the first sample)
    previous_shift: KpiFigures | None  # the last shift that ended, for the end-of-shift report
    active_faults: tuple[ActiveFault, ...]
    active_fault_code: int | None
    ideal_cycle_s: float | None
    samples: SampleCounts
    state: str = "unknown"  # one of MACHINE_STATES, at `at_ms`
    # The newest source timestamp of the samples the figures were computed from (None before the first):
    # replaying this machine's samples up to it reproduces the snapshot, whatever reached the engine later.
    data_until_ms: int | None = None

    @property
    def availability(self) -> float | None:
        return self.window.availability

    @property
    def performance(self) -> float | None:
        return self.window.performance

    @property
    def quality(self) -> float | None:
        return self.window.quality

    @property
    def oee(self) -> float | None:
        return self.window.oee

    @property
    def run_s(self) -> float:
        return self.window.run_s

    @property
    def planned_s(self) -> float:
        return self.window.planned_s

    @property
    def good(self) -> int | None:
        return self.window.good

    @property
    def reject(self) -> int | None:
        return self.window.reject

    @property
    def total(self) -> int:
        return self.window.total

    @property
    def mttr_s(self) -> float | None:
        return self.window.mttr_s

    @property
    def mtbf_s(self) -> float | None:
        return self.window.mtbf_s

    @property
    def fault_count(self) -> int:
        return self.window.fault_count

    @property
    def warnings(self) -> frozenset[KpiWarning]:
        return self.window.warnings


class _InvalidValue(ValueError):
    pass


def config_key(config: KpiConfig) -> str:
    """Return a digest of everything in `config` that shapes an engine's state (a checkpoint carries it)."""
    calendar = config.calendar
    shifts = None
    if calendar is not None:
        shifts = [
            [s.name, s.start.isoformat(), s.end.isoformat(), sorted(s.weekdays),
             [[b.start.isoformat(), b.end.isoformat(), b.name] for b in s.breaks]]
            for s in calendar.shifts
        ]  # fmt: skip
    counters = config.counters
    return codec.config_key(
        [
            config.window_s,
            config.resolution_s,
            config.ideal_cycle_s,
            [counters.bits, counters.rollover_margin, counters.reset_max],
            config.fault_debounce_s,
            config.state_gap_hold_s,
            None if calendar is None else [calendar.timezone, shifts],
        ]
    )


def _occurrence(packed: list[Any] | None) -> ShiftOccurrence:
    occ = unpack_occurrence(packed)
    if occ is None:
        raise CheckpointError("a damaged KPI engine checkpoint: a finished shift without its occurrence")
    return occ


def _as_bool(value: Value | None) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    raise _InvalidValue


def _as_int(value: Value | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _InvalidValue
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _InvalidValue


@dataclass(slots=True)
class _Shifts:
    """The shift time is going to now, with its accumulator, and the last shift that ended."""

    current: ShiftOccurrence | None = None
    acc: list[int] | None = None
    previous: tuple[ShiftOccurrence, list[int]] | None = None

    def enter(self, piece: CalendarPiece) -> None:
        """Move on to the calendar piece `piece`: the same shift, a new one, or none."""
        new, current = piece.shift, self.current
        if current is not None and new is not None and new.key == current.key:
            return
        if current is not None and self.acc is not None:
            self.previous = (current, self.acc)
        self.current, self.acc = new, None if new is None else [0] * FIELDS

    def copy(self) -> _Shifts:
        return _Shifts(self.current, None if self.acc is None else list(self.acc), self.previous)


class KpiEngine:
    """The KPIs of one machine, fed with its samples in (roughly) source-timestamp order."""

    def __init__(self, machine_id: str, config: KpiConfig | None = None) -> None:
        self.machine_id = machine_id
        self.config = config = config or KpiConfig()
        self._window_ms = round(config.window_s * 1000)
        self._bucket_ms = max(1, round(config.resolution_s * 1000))
        self._hold_ms = round(config.state_gap_hold_s * 1000)
        self._rules = config.counters
        # The ideal cycle time in us: the configured one, else the machine's `cycle.ideal`.
        self._configured_ideal_us = None if config.ideal_cycle_s is None else round(config.ideal_cycle_s * 1e6)
        self._ideal_us = self._configured_ideal_us
        self._faults = FaultTracker(round(config.fault_debounce_s * 1000))
        self._handlers: dict[str, Callable[[str, int, Value | None], None]] = {
            **dict.fromkeys(STATE_PRECEDENCE, self._on_state),
            **dict.fromkeys(COUNTER_SIGNALS, self._on_counter),
            "fault.active": self._on_fault_active,
            "fault.code": self._on_fault_code,
            "cycle.ideal": self._on_ideal_cycle,
        }
        self._last_ts: dict[str, int] = {}
        self._data_until: int | None = None
        self._counts = {"accepted": 0, "out_of_order": 0, "late": 0, "invalid": 0, "ignored": 0}
        # The engine's clock: everything before it is accounted for.
        self._cursor: int | None = None
        self._first_ms = 0
        # State signals and the category they give; None while none is true (a gap).
        self._bits: dict[str, bool | None] = dict.fromkeys(STATE_PRECEDENCE)
        self._state: int | None = None
        self._held = UNKNOWN
        self._hold_until: int | None = None
        self._overlap = False
        # Counters: last normalised value per signal, and which ones the machine has.
        self._counter_values: dict[str, int] = {}
        # The window: buckets (oldest first) and running sums over them; the shift's accumulator.
        self._buckets: deque[list[int]] = deque()
        self._bucket_end = 0
        self._window = [0] * FIELDS
        self._piece = ALWAYS_PRODUCTION
        self._shifts = _Shifts()

    # -- samples in -------------------------------------------------------------------------------

    def update(self, sample: Sample) -> None:
        """Take one sample of this machine; samples of other devices and signals are ignored."""
        handler = self._handlers.get(sample.signal)
        if handler is None or sample.device != self.machine_id:
            self._counts["ignored"] += 1
            return
        ts = sample.source_ts_ms
        if self._data_until is None or ts > self._data_until:
            self._data_until = ts
        last = self._last_ts.get(sample.signal)
        if last is not None and ts < last:
            self._counts["out_of_order"] += 1
            return
        value = None if sample.quality is Quality.BAD else sample.value
        cursor = self._cursor
        late = cursor is not None and ts < cursor
        if cursor is None:
            self._begin(ts)
        elif late:
            ts = cursor
        elif ts > cursor:
            self._advance(cursor, ts)
        try:
            handler(sample.signal, ts, value)
        except _InvalidValue:
            self._counts["invalid"] += 1  # an invalid sample is not also counted late: late <= accepted
            return
        self._last_ts[sample.signal] = sample.source_ts_ms
        self._counts["accepted"] += 1
        self._counts["late"] += late

    def _on_state(self, signal: str, ts: int, value: Value | None) -> None:
        bits = self._bits
        bit = _as_bool(value)
        if bits[signal] is bit:
            return
        bits[signal] = bit
        true = [s for s in STATE_PRECEDENCE if bits[s]]
        self._overlap = len(true) > 1
        if true:
            self._state, self._hold_until = _STATE_CATEGORY[true[0]], None
        elif self._state is not None:  # a gap starts: the last state holds for a moment
            self._held, self._hold_until, self._state = self._state, ts + self._hold_ms, None

    def _on_counter(self, signal: str, ts: int, value: Value | None) -> None:
        raw = _as_int(value)
        if raw is None:
            return
        rules = self._rules
        value_now = rules.normalise(raw)
        previous = self._counter_values.get(signal)
        self._counter_values[signal] = value_now
        if previous is None:
            return  # the first reading is the base: what was counted before is not ours
        if value_now == previous:
            return
        parts, event = rules.increment(previous, value_now)
        count_at, ideal_at, unvalued_at = _COUNTER_FIELDS[signal]
        ideal_us = self._ideal_us
        if ideal_us is None:
            work_at, work = unvalued_at, parts
        else:
            work_at, work = ideal_at, parts * ideal_us
        event_at = None if event is CounterEvent.NONE else _EVENT_FIELD[event]
        for acc in (self._buckets[-1], self._window, self._shifts.acc):
            if acc is not None:
                acc[count_at] += parts
                acc[work_at] += work
                if event_at is not None:
                    acc[event_at] += 1

    def _on_fault_active(self, signal: str, ts: int, value: Value | None) -> None:
        self._faults.set_active(ts, _as_bool(value))

    def _on_fault_code(self, signal: str, ts: int, value: Value | None) -> None:
        self._faults.set_code(ts, _as_int(value))

    def _on_ideal_cycle(self, signal: str, ts: int, value: Value | None) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise _InvalidValue
        if self._configured_ideal_us is None:
            self._ideal_us = round(value * 1e6)

    # -- time accounting --------------------------------------------------------------------------

    def _begin(self, ts: int) -> None:
        self._cursor = self._first_ms = ts
        self._enter(self._calendar_piece(ts))
        self._open_bucket(ts - ts % self._bucket_ms)

    def _calendar_piece(self, t: int) -> CalendarPiece:
        calendar = self.config.calendar
        return ALWAYS_PRODUCTION if calendar is None else calendar.piece_at(t)

    def _enter(self, piece: CalendarPiece) -> None:
        self._shifts.enter(piece)
        self._piece = piece

    def _open_bucket(self, start: int) -> None:
        self._buckets.append([0] * FIELDS + [start])
        self._bucket_end = start + self._bucket_ms

    def _category(self, t: int, piece: CalendarPiece) -> int:
        category = self._state
        if category is None:
            hold = self._hold_until
            category = self._held if hold is not None and t < hold else UNKNOWN
        if category != RUN and piece.status is not CalendarStatus.PRODUCTION:
            return CALENDAR_STOP
        return category

    def _slices(self, t0: int, t1: int) -> Iterator[tuple[int, int, int, CalendarPiece]]:
        """Yield (from, to, category, calendar piece) over [t0, t1) in the current state."""
        piece, cur = self._piece, t0
        while cur < t1:
            if cur >= piece.end_ms:
                piece = self._calendar_piece(cur)
            stop = min(t1, piece.end_ms)
            hold = self._hold_until
            if self._state is None and hold is not None and cur < hold < stop:
                stop = hold
            yield cur, stop, self._category(cur, piece), piece
            cur = stop

    def _advance(self, cur: int, t: int) -> None:
        keep_from = (t - self._window_ms) - (t - self._window_ms) % self._bucket_ms
        hold = self._hold_until
        if (
            t < self._bucket_end
            and t < self._piece.end_ms
            and (self._state is not None or hold is None or not cur < hold < t)
        ):  # the common case: within one bucket, one calendar piece and one category
            self._add_time(cur, t, self._category(cur, self._piece), keep_from)
        else:
            for start, stop, category, piece in self._slices(cur, t):
                if piece is not self._piece:
                    self._enter(piece)
                self._add_time(start, stop, category, keep_from)
            if t >= self._piece.end_ms:
                self._enter(self._calendar_piece(t))
            if t >= self._bucket_end:
                self._open_bucket(t - t % self._bucket_ms)
        self._cursor = t
        self._evict(keep_from)

    def _add_time(self, start: int, stop: int, category: int, keep_from: int) -> None:
        overlap = self._overlap
        acc = self._shifts.acc
        if acc is not None:
            acc[category] += stop - start
            if overlap:
                acc[OVERLAP] += stop - start
        window = self._window
        start = max(start, keep_from)
        while start < stop:
            if start >= self._bucket_end:
                self._open_bucket(start - start % self._bucket_ms)
            end = min(stop, self._bucket_end)
            bucket = self._buckets[-1]
            bucket[category] += end - start
            window[category] += end - start
            if overlap:
                bucket[OVERLAP] += end - start
                window[OVERLAP] += end - start
            start = end

    def _evict(self, keep_from: int) -> None:
        buckets, window = self._buckets, self._window
        while buckets[0][START] < keep_from:
            old = buckets.popleft()
            for i in range(FIELDS):
                window[i] -= old[i]
        shifts = self._shifts
        horizon = keep_from
        if shifts.current is not None:
            horizon = min(horizon, shifts.current.start_ms)
        if shifts.previous is not None:
            horizon = min(horizon, shifts.previous[0].start_ms)
        self._faults.evict(horizon)

    @property
    def retained(self) -> int:
        """How many buckets and finished faults the engine keeps (bounded; see the module doc)."""
        return len(self._buckets) + self._faults.retained

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        """Return the engine's whole state, compact and versioned: `KpiEngine.restore` makes it again, exactly."""
        shifts = self._shifts
        previous = None if shifts.previous is None else [pack_occurrence(shifts.previous[0]), shifts.previous[1]]
        return codec.encode(
            {
                "machine": self.machine_id,
                "config": config_key(self.config),
                "ideal_us": self._ideal_us,
                "last_ts": self._last_ts,
                "data_until": self._data_until,
                "counts": self._counts,
                "clock": [self._cursor, self._first_ms],
                "bits": [self._bits[s] for s in STATE_PRECEDENCE],
                "state": [self._state, self._held, self._hold_until, self._overlap],
                "counters": self._counter_values,
                "bucket_end": self._bucket_end,
                "window": self._window,
                "piece": codec.pack_piece(self._piece),
                "shifts": [pack_occurrence(shifts.current), shifts.acc, previous],
                "faults": self._faults.state(),
            },
            self._buckets,
        )

    @classmethod
    def restore(cls, config: KpiConfig, data: bytes) -> KpiEngine:
        """Return the engine whose `checkpoint()` `data` is; raise CheckpointError unless taken with `config`."""
        state, buckets = codec.decode(data, FIELDS + 1)
        if state.get("config") != config_key(config):
            raise CheckpointError("the checkpoint was taken with another KPI configuration")
        engine = cls(state["machine"], config)
        engine._ideal_us = state["ideal_us"]
        engine._last_ts = state["last_ts"]
        engine._data_until = state["data_until"]
        engine._counts = state["counts"]
        engine._cursor, engine._first_ms = state["clock"]
        engine._bits = dict(zip(STATE_PRECEDENCE, state["bits"], strict=True))
        engine._state, engine._held, engine._hold_until, engine._overlap = state["state"]
        engine._counter_values = state["counters"]
        engine._buckets = deque(buckets)
        engine._bucket_end = state["bucket_end"]
        engine._window = state["window"]
        engine._piece = codec.unpack_piece(state["piece"])
        current, acc, previous = state["shifts"]
        engine._shifts = _Shifts(
            unpack_occurrence(current), acc, None if previous is None else (_occurrence(previous[0]), previous[1])
        )
        engine._faults.load(state["faults"])
        return engine

    # -- figures out ------------------------------------------------------------------------------

    def snapshot(self, now_ms: int) -> KpiSnapshot:
        """Return the KPIs as of `now_ms` (or the newest sample's time, if later); changes nothing.

        The current state is taken to hold from the newest sample to `now_ms`.
        """
        cursor = self._cursor
        counts = SampleCounts(**self._counts)
        active = self._faults.active()
        ideal = None if self._ideal_us is None else self._ideal_us / 1e6
        if cursor is None:
            empty = self._figures([0] * FIELDS, "window", None, now_ms, now_ms, now_ms)
            return KpiSnapshot(self.machine_id, now_ms, empty, None, None, active, None, ideal, counts)
        end = max(now_ms, cursor)
        since = (end - self._window_ms) - (end - self._window_ms) % self._bucket_ms
        window = list(self._window)
        for bucket in self._buckets:
            if bucket[START] >= since:
                break
            for i in range(FIELDS):
                window[i] -= bucket[i]
        piece, shifts = self._piece, self._shifts.copy()
        for start, stop, category, piece in self._slices(cursor, end):
            shifts.enter(piece)
            targets = [(window, max(start, since))] + ([] if shifts.acc is None else [(shifts.acc, start)])
            for acc, begin in targets:
                if begin < stop:
                    acc[category] += stop - begin
                    if self._overlap:
                        acc[OVERLAP] += stop - begin
        if end >= piece.end_ms:  # `end` is exactly where the next calendar piece starts
            shifts.enter(self._calendar_piece(end))
        first = self._first_ms
        window_figures = self._figures(window, "window", None, max(since, first), end, end)
        shift_figures = previous_figures = None
        if shifts.current is not None and shifts.acc is not None:
            occ = shifts.current
            shift_figures = self._figures(shifts.acc, "shift", occ.name, max(occ.start_ms, first), end, end)
        if shifts.previous is not None:
            occ, acc = shifts.previous
            previous_figures = self._figures(acc, "shift", occ.name, max(occ.start_ms, first), occ.end_ms, end)
        return KpiSnapshot(
            machine_id=self.machine_id,
            at_ms=end,
            window=window_figures,
            shift=shift_figures,
            previous_shift=previous_figures,
            active_faults=active,
            active_fault_code=self._faults.active_code(),
            ideal_cycle_s=ideal,
            samples=counts,
            state=self._state_at(end, faulted=bool(active)),
            data_until_ms=self._data_until,
        )

    def _state_at(self, t: int, *, faulted: bool) -> str:
        """Return the machine's state at `t` (not before the newest sample), as `MACHINE_STATES` names it."""
        state = _CATEGORY_STATE[self._category(t, self._calendar_piece(t))]
        return "fault" if faulted and state != "run" else state

    def _figures(
        self, acc: list[int], scope: str, shift_name: str | None, start: int, end: int, now: int
    ) -> KpiFigures:
        seen = self._counter_values
        has_good, has_reject, has_total = (s in seen for s in COUNTER_SIGNALS)
        if has_total:
            total, ideal_us, unvalued = acc[TOTAL], acc[IDEAL_TOTAL], acc[UNVALUED_TOTAL]
        else:
            total = acc[GOOD] + acc[REJECT]
            ideal_us = acc[IDEAL_GOOD] + acc[IDEAL_REJECT]
            unvalued = acc[UNVALUED_GOOD] + acc[UNVALUED_REJECT]
        good: int | None = None
        if has_good:
            good = acc[GOOD]
        elif has_total and has_reject:
            good = max(0, total - acc[REJECT])
        reject: int | None = None
        if has_reject:
            reject = acc[REJECT]
        elif good is not None:
            reject = max(0, total - good)
        run_ms = acc[RUN]
        planned_ms = run_ms + acc[IDLE] + acc[BLOCKED] + acc[STARVED]
        figures = compute_oee(
            run_s=run_ms / 1000,
            planned_s=planned_ms / 1000,
            total=total,
            good=good,
            ideal_work_s=ideal_us / 1e6,
            unvalued=unvalued,
        )
        warnings = figures.warnings | {warning for at, warning in _EVENT_WARNING if acc[at] > 0}
        faults = self._faults.stats(start, end, now)
        return KpiFigures(
            scope=scope,
            shift_name=shift_name,
            start_ms=start,
            end_ms=end,
            availability=figures.availability,
            performance=figures.performance,
            quality=figures.quality,
            oee=figures.oee,
            run_s=run_ms / 1000,
            planned_s=planned_ms / 1000,
            idle_s=acc[IDLE] / 1000,
            blocked_s=acc[BLOCKED] / 1000,
            starved_s=acc[STARVED] / 1000,
            planned_stop_s=acc[PLANNED_STOP] / 1000,
            calendar_stop_s=acc[CALENDAR_STOP] / 1000,
            unknown_s=acc[UNKNOWN] / 1000,
            good=good,
            reject=reject,
            total=total,
            fault_count=faults.fault_count,
            mttr_s=faults.mttr_s,
            mtbf_s=faults.mtbf_s,
            warnings=frozenset(warnings),
            ideal_work_s=ideal_us / 1e6,
            unvalued=unvalued,
        )


# -- publishing -----------------------------------------------------------------------------------

# Sparkplug device metrics: name -> datatype (as the connector config spells datatypes).
SPARKPLUG_METRICS: Mapping[str, DataTypeName] = {
    "kpi/oee": "double",
    "kpi/availability": "double",
    "kpi/performance": "double",
    "kpi/quality": "double",
    "kpi/mttr_s": "double",
    "kpi/mtbf_s": "double",
    "fault/active_code": "int32",
    "kpi/data_until": "datetime",
}


def sparkplug_metrics(snapshot: KpiSnapshot) -> dict[str, tuple[float | int | None, DataTypeName]]:
    """Return the window's KPIs as Sparkplug device metrics: name -> (value, datatype).

    None is a null metric (undefined figure); `fault/active_code` is 0 when no fault is active;
    `kpi/data_until` (ms since the epoch) is the newest sample the figures were computed from.
    The set of names never changes, so a birth can declare them all.
    """
    w = snapshot.window
    values: dict[str, float | int | None] = {
        "kpi/oee": w.oee,
        "kpi/availability": w.availability,
        "kpi/performance": w.performance,
        "kpi/quality": w.quality,
        "kpi/mttr_s": w.mttr_s,
        "kpi/mtbf_s": w.mtbf_s,
        "fault/active_code": snapshot.active_fault_code or 0,
        "kpi/data_until": snapshot.data_until_ms,
    }
    return {name: (values[name], datatype) for name, datatype in SPARKPLUG_METRICS.items()}


def gauge_values(snapshot: KpiSnapshot) -> list[tuple[str, str, float]]:
    """Return (gauge name, scope, value) for every defined figure; undefined ones are left out.

    The gauges are `KPI_GAUGES` of `plantline.connectors.metric_names`, labelled `device` and `scope`.
    """
    out: list[tuple[str, str, float]] = [
        (KPI_FAULT_ACTIVE_CODE.name, "window", float(snapshot.active_fault_code or 0)),
        (KPI_STATE.name, "window", float(MACHINE_STATES.index(snapshot.state))),
    ]
    for figures in (snapshot.window, snapshot.shift):
        if figures is None:
            continue
        values: dict[MetricDefinition, float | int | None] = {
            KPI_OEE: figures.oee,
            KPI_AVAILABILITY: figures.availability,
            KPI_PERFORMANCE: figures.performance,
            KPI_QUALITY: figures.quality,
            KPI_RUN: figures.run_s,
            KPI_PLANNED: figures.planned_s,
            KPI_GOOD: figures.good,
            KPI_REJECT: figures.reject,
            KPI_TOTAL: figures.total,
            KPI_MTTR: figures.mttr_s,
            KPI_MTBF: figures.mtbf_s,
            KPI_FAULTS: figures.fault_count,
        }
        out.extend((gauge.name, figures.scope, float(value)) for gauge, value in values.items() if value is not None)
    return out
