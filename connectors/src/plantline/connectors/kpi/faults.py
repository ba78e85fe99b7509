"""The fault state machine of one machine: fault episodes, MTTR, MTBF and the active fault.

A machine is faulted while `fault.active` is true or `fault.code` is non-zero (a source may
have either signal or both). A fault starts when that condition rises and ends when it clears. A
rise within `debounce_ms` of the last clear (inclusive) continues the same fault: chatter is one
fault, lasting from its first rise to its last clear. Until the debounce has passed, a clear is
pending: the machine is not faulted, but the fault is not over for MTTR either.

- MTTR: the mean duration of the faults that ended in a scope;
- MTBF: the mean wall-clock time from the end of one fault to the start of the next, over the
  faults that started in a scope (None with fewer than one such interval: one fault, or none);
- the fault count of a scope: the faults that started in it, the one still going included.

A bad-quality reading (value None) changes nothing: a fault neither starts nor ends on it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ActiveFault:
    """A fault going on now: its code (0 when the source gives none) and since when (ms)."""

    code: int
    since_ms: int


@dataclass(frozen=True, slots=True)
class FaultStats:
    fault_count: int
    mttr_s: float | None
    mtbf_s: float | None


def mttr_s(durations_ms: list[int]) -> float | None:
    """Return the mean time to repair in seconds, or None without a finished fault."""
    return sum(durations_ms) / len(durations_ms) / 1000.0 if durations_ms else None


def mtbf_s(intervals_ms: list[int]) -> float | None:
    """Return the mean time between failures in seconds, or None without an interval."""
    return sum(intervals_ms) / len(intervals_ms) / 1000.0 if intervals_ms else None


class FaultTracker:
    """Fault episodes from `fault.active` and `fault.code` readings given in time order."""

    def __init__(self, debounce_ms: int) -> None:
        if debounce_ms < 0:
            raise ValueError(f"fault_debounce_s: expected >= 0, got {debounce_ms / 1000}")
        self.debounce_ms = debounce_ms
        self._active = False
        self._code = 0
        self._closed: deque[tuple[int, int]] = deque()  # finished faults (start, end), in order
        self._start: int | None = None  # the fault not yet finished (going on, or clear pending)
        self._cleared_at: int | None = None  # set while its clear is pending
        self._code_since = 0

    @property
    def faulted(self) -> bool:
        return self._active or self._code != 0

    def set_active(self, t_ms: int, active: bool | None) -> None:
        if active is not None:
            self._apply(t_ms, active, self._code)

    def set_code(self, t_ms: int, code: int | None) -> None:
        if code is not None:
            self._apply(t_ms, self._active, code)

    def _apply(self, t_ms: int, active: bool, code: int) -> None:
        was = self.faulted
        if code != self._code:
            self._code_since = t_ms
        self._active, self._code = active, code
        now = self.faulted
        if now and not was:
            self._rise(t_ms)
        elif was and not now:
            self._cleared_at = t_ms

    def _rise(self, t_ms: int) -> None:
        self._code_since = t_ms
        if self._start is not None and self._cleared_at is not None:
            if t_ms - self._cleared_at <= self.debounce_ms:
                self._cleared_at = None  # chatter: the same fault goes on
                return
            self._closed.append((self._start, self._cleared_at))
        self._start, self._cleared_at = t_ms, None

    def active(self) -> tuple[ActiveFault, ...]:
        """Return the faults going on now (one machine, one code: none or one)."""
        return (ActiveFault(self._code, self._code_since),) if self.faulted else ()

    def active_code(self) -> int | None:
        return self._code if self.faulted else None

    def _episodes(self, now_ms: int) -> tuple[list[tuple[int, int]], int | None]:
        """Return the finished faults as of `now_ms`, and the start of the one still open."""
        closed = list(self._closed)
        if self._start is None:
            return closed, None
        if self._cleared_at is not None and now_ms - self._cleared_at > self.debounce_ms:
            closed.append((self._start, self._cleared_at))
            return closed, None
        return closed, self._start

    def stats(self, start_ms: int, end_ms: int, now_ms: int | None = None) -> FaultStats:
        """Return the fault count, MTTR and MTBF of the scope [start_ms, end_ms], as known at `now_ms`.

        `now_ms` (default `end_ms`) decides whether a pending clear has outlasted the debounce.
        """
        closed, open_start = self._episodes(end_ms if now_ms is None else now_ms)

        def inside(t: int) -> bool:
            return start_ms <= t <= end_ms

        starts = [s for s, _ in closed] + ([] if open_start is None else [open_start])
        count = sum(1 for s in starts if inside(s))
        durations = [e - s for s, e in closed if inside(e)]
        ends = [e for _, e in closed]
        intervals = [s - prev_end for prev_end, s in zip(ends, starts[1:], strict=False) if inside(s)]
        return FaultStats(count, mttr_s(durations), mtbf_s(intervals))

    def evict(self, horizon_ms: int) -> None:
        """Forget faults that ended before `horizon_ms`, keeping the last one (for MTBF)."""
        closed = self._closed
        while len(closed) > 1 and closed[1][1] < horizon_ms:
            closed.popleft()

    def state(self) -> list[Any]:
        """Return the tracker's state as JSON-able values (for a KPI engine's checkpoint)."""
        closed = [t for episode in self._closed for t in episode]
        return [self._active, self._code, closed, self._start, self._cleared_at, self._code_since]

    def load(self, state: list[Any]) -> None:
        """Take back the state `state()` returned."""
        self._active, self._code, closed, self._start, self._cleared_at, self._code_since = state
        self._closed = deque(zip(closed[::2], closed[1::2], strict=True))

    @property
    def retained(self) -> int:
        """How many finished faults are kept (bounded by the longest scope, not the run time)."""
        return len(self._closed)
