"""Standard OEE (availability x performance x quality) and counting parts from PLC counters.

The formulas are the OEE literature's (docs/architecture.md, "KPIs at the edge"):

- Availability = run time / planned production time;
- Performance = (ideal cycle time x total count) / run time; with an ideal cycle time that
  changes (a product changeover), the numerator is the sum of each part's ideal cycle time;
- Quality = good count / total count;
- OEE = A x P x Q.

A ratio whose denominator is zero is undefined (None), never a division error. OEE is None when
a factor is undefined, except that a zero factor makes it 0.0: planned time with no run time, or
run time with no parts, is an OEE of zero whatever the undefined factors would have been.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Float noise from summing ideal cycle times must not raise the "ideal cycle time is wrong" flag.
PERFORMANCE_TOLERANCE = 1e-9


class KpiWarning(enum.StrEnum):
    """Why a figure is missing, or should not be trusted as it stands."""

    IDEAL_CYCLE_SUSPECT = "ideal_cycle_suspect"  # performance > 1: the ideal cycle time is too long
    NO_IDEAL_CYCLE = "no_ideal_cycle"  # parts counted while no ideal cycle time was known
    COUNTS_WITHOUT_RUN_TIME = "counts_without_run_time"  # parts counted, no run time: P undefined
    COUNTS_INCONSISTENT = "counts_inconsistent"  # good > total: quality clamped to 1
    NO_QUALITY_COUNTS = "no_quality_counts"  # neither counter.good nor total and reject: Q undefined
    UNKNOWN_STATE = "unknown_state"  # time with no state signal true (excluded from planned time)
    STATE_OVERLAP = "state_overlap"  # time with more than one state signal true (precedence used)
    COUNTER_RESET = "counter_reset"  # a counter dropped to near zero (PLC restart, shift reset)
    COUNTER_ROLLOVER = "counter_rollover"  # a counter wrapped at its width
    COUNTER_DISCONTINUITY = "counter_discontinuity"  # a counter dropped, but not to near zero


def availability(run_s: float, planned_s: float) -> float | None:
    """Return run time / planned production time, or None without planned time."""
    return run_s / planned_s if planned_s > 0 else None


def performance(ideal_work_s: float, run_s: float) -> float | None:
    """Return (ideal cycle time x total count) / run time, or None without run time.

    `ideal_work_s` is the ideal cycle time times the total count (or the sum of each part's ideal
    cycle time when it changed).
    """
    return ideal_work_s / run_s if run_s > 0 else None


def quality(good: int, total: int) -> float | None:
    """Return good count / total count, or None when nothing was made."""
    return good / total if total > 0 else None


def oee(a: float | None, p: float | None, q: float | None) -> float | None:
    """Return A x P x Q; 0.0 when a defined factor is zero, else None when one is undefined."""
    if a is not None and p is not None and q is not None:
        return a * p * q
    if 0.0 in (a, p, q):
        return 0.0
    return None


@dataclass(frozen=True, slots=True)
class OeeFigures:
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    warnings: frozenset[KpiWarning]


def compute_oee(
    *,
    run_s: float,
    planned_s: float,
    total: int,
    good: int | None,
    ideal_work_s: float,
    unvalued: int = 0,
) -> OeeFigures:
    """Return the four OEE figures and the warnings about them.

    `good` None means the good count is not known (Q undefined); `unvalued` is how many of the
    `total` parts were counted while no ideal cycle time was known (P undefined when any were).
    """
    warnings: set[KpiWarning] = set()
    a = availability(run_s, planned_s)
    p: float | None
    if unvalued > 0:
        p = None
        warnings.add(KpiWarning.NO_IDEAL_CYCLE)
    else:
        p = performance(ideal_work_s, run_s)
        if p is None and total > 0:
            warnings.add(KpiWarning.COUNTS_WITHOUT_RUN_TIME)
        if p is not None and p > 1.0 + PERFORMANCE_TOLERANCE:
            warnings.add(KpiWarning.IDEAL_CYCLE_SUSPECT)
    q: float | None = None
    if good is None:
        if total > 0:
            warnings.add(KpiWarning.NO_QUALITY_COUNTS)
    elif good > total:
        # Two counters read a moment apart can disagree; quality cannot exceed one.
        q = 1.0
        warnings.add(KpiWarning.COUNTS_INCONSISTENT)
    else:
        q = quality(good, total)
    return OeeFigures(a, p, q, oee(a, p, q), frozenset(warnings))


# -- counting parts ---------------------------------------------------------------------------


class CounterEvent(enum.Enum):
    NONE = "none"
    RESET = "reset"
    ROLLOVER = "rollover"
    DISCONTINUITY = "discontinuity"


@dataclass(frozen=True, slots=True)
class CounterRules:
    """How a drop of a monotonic PLC counter is read.

    A drop from within `rollover_margin` of the counter's modulus (2^bits) to below
    `rollover_margin` is a rollover: the count is what was needed to reach the modulus plus the new
    value. Any other drop to near zero (at most `reset_max`, and nearer zero than the old value) is
    a reset (a PLC restart, a shift reset): the count is the new value, counted up from zero. Any
    other drop (a restored backup, a re-mapped tag, a glitch) is a discontinuity: it counts nothing
    and the new value becomes the base. Parts made between a reset and the first reading after it
    are lost when they reach half the old value (a reset read that late looks like a glitch).
    """

    bits: int = 32
    rollover_margin: int | None = None  # None: 1/16 of the modulus
    reset_max: int = 1000

    def __post_init__(self) -> None:
        if not 8 <= self.bits <= 64:
            raise ValueError(f"counter_bits: expected 8 .. 64, got {self.bits}")
        if self.rollover_margin is not None and not 0 < self.rollover_margin <= self.modulus // 2:
            raise ValueError(f"rollover_margin: expected 1 .. {self.modulus // 2}, got {self.rollover_margin}")
        if self.reset_max < 0:
            raise ValueError(f"reset_max: expected >= 0, got {self.reset_max}")

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    @property
    def margin(self) -> int:
        return self.rollover_margin if self.rollover_margin is not None else self.modulus >> 4

    def normalise(self, raw: int) -> int:
        """Return the counter's value in [0, 2^bits): a signed counter's wrap becomes a rollover."""
        return raw % self.modulus

    def increment(self, previous: int, value: int) -> tuple[int, CounterEvent]:
        """Return how many parts were counted from `previous` to `value` (both normalised)."""
        if value >= previous:
            return value - previous, CounterEvent.NONE
        margin = self.margin
        if previous >= self.modulus - margin and value < margin:
            return self.modulus - previous + value, CounterEvent.ROLLOVER
        if value <= self.reset_max and 2 * value < previous:
            return value, CounterEvent.RESET
        return 0, CounterEvent.DISCONTINUITY
