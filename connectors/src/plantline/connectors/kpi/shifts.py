"""Shift calendars: which shift (and break) an instant falls in, in the plant's own time zone.

A shift is a wall-clock span (`start` to `end`, crossing midnight when `end <= start`; equal
means 24 hours) on a set of weekdays, counted by the local day it *starts* on. Breaks are
wall-clock spans inside it. Wall-clock times turn into instants in the calendar's time zone, so on
a DST change day a night shift is an hour shorter or longer in real time, as the people on it
live it. Times that do not exist (the spring-forward hour) or exist twice (the fall-back hour)
resolve with `fold=0`, PEP 495's rule: a gap time is read with the offset before the change, an
ambiguous time as its first occurrence.

Intervals are half-open, `[start, end)`: an instant exactly at a handover belongs to the shift that
starts there. Shifts must not overlap on the weekly wall-clock grid (checked); should DST still
make two occurrences overlap, the one that started later wins.

Pure but for the one lookup of the time zone's rules (`zoneinfo`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
ALL_DAYS: frozenset[int] = frozenset(range(7))  # Monday = 0, as `date.weekday()`
WEEKDAYS: frozenset[int] = frozenset(range(5))
NEVER_MS = 1 << 62  # "no boundary ahead": later than any instant a PLC will report

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _minute_of_day(t: time) -> int:
    return t.hour * 60 + t.minute


def _check_whole_minutes(where: str, t: time) -> None:
    if t.second or t.microsecond or t.tzinfo is not None:
        raise ValueError(f"{where}: expected a naive wall-clock time in whole minutes, got {t.isoformat()}")


@dataclass(frozen=True, slots=True)
class Break:
    """A planned stop inside a shift (a break, a meal, a meeting), in wall-clock time."""

    start: time
    end: time
    name: str = "break"


@dataclass(frozen=True, slots=True)
class Shift:
    """A named shift: a wall-clock span on some weekdays (the day it starts), with its breaks."""

    name: str
    start: time
    end: time
    weekdays: frozenset[int] = ALL_DAYS
    breaks: tuple[Break, ...] = ()

    @property
    def length_min(self) -> int:
        """The shift's length in wall-clock minutes (1440 when start == end)."""
        return (_minute_of_day(self.end) - _minute_of_day(self.start)) % MINUTES_PER_DAY or MINUTES_PER_DAY

    def break_offsets(self) -> tuple[tuple[int, int], ...]:
        """Each break as (start, end) wall-clock minutes after the shift's start, in order."""
        start = _minute_of_day(self.start)
        out = []
        for b in self.breaks:
            offset = (_minute_of_day(b.start) - start) % MINUTES_PER_DAY
            length = (_minute_of_day(b.end) - _minute_of_day(b.start)) % MINUTES_PER_DAY
            out.append((offset, offset + length))
        return tuple(sorted(out))

    def validate(self, where: str) -> None:
        """Raise ValueError naming `where` (e.g. `shifts[1]`) when the shift is not usable."""
        if not self.name:
            raise ValueError(f"{where}.name: must not be empty")
        _check_whole_minutes(f"{where}.start", self.start)
        _check_whole_minutes(f"{where}.end", self.end)
        if not self.weekdays or not self.weekdays <= ALL_DAYS:
            raise ValueError(f"{where}.weekdays: expected a non-empty set of 0 (Monday) .. 6 (Sunday)")
        for i, b in enumerate(self.breaks):
            _check_whole_minutes(f"{where}.breaks[{i}].start", b.start)
            _check_whole_minutes(f"{where}.breaks[{i}].end", b.end)
            if b.start == b.end:
                raise ValueError(f"{where}.breaks[{i}]: a break must not be empty")
            offset = (_minute_of_day(b.start) - _minute_of_day(self.start)) % MINUTES_PER_DAY
            length = (_minute_of_day(b.end) - _minute_of_day(b.start)) % MINUTES_PER_DAY
            if offset + length > self.length_min:
                raise ValueError(
                    f"{where}.breaks[{i}]: {b.start.isoformat('minutes')}-{b.end.isoformat('minutes')} "
                    f"is not inside the shift {self.start.isoformat('minutes')}-{self.end.isoformat('minutes')}"
                )
        offsets = self.break_offsets()
        for (_, end), (start, _) in itertools.pairwise(offsets):
            if start < end:
                raise ValueError(f"{where}.breaks: breaks overlap")


@dataclass(frozen=True, slots=True)
class ShiftOccurrence:
    """One shift on one day, as instants (ms since the Unix epoch); breaks sorted, inside it."""

    name: str
    local_date: date
    start_ms: int
    end_ms: int
    breaks: tuple[tuple[int, int], ...]

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.start_ms)

    @property
    def planned_s(self) -> float:
        """The scheduled production time: the shift minus its breaks, in seconds."""
        return (self.end_ms - self.start_ms - sum(e - s for s, e in self.breaks)) / 1000.0


class CalendarStatus(enum.Enum):
    PRODUCTION = "production"  # inside a shift, outside its breaks
    BREAK = "break"  # a break of the shift
    OFF_SHIFT = "off_shift"  # no shift scheduled


@dataclass(frozen=True, slots=True)
class CalendarPiece:
    """What the calendar says from an instant until `end_ms` (exclusive): one status, one shift."""

    end_ms: int
    status: CalendarStatus
    shift: ShiftOccurrence | None


ALWAYS_PRODUCTION = CalendarPiece(NEVER_MS, CalendarStatus.PRODUCTION, None)


def _to_ms(local: datetime) -> int:
    return (local - _EPOCH) // _MS


@dataclass(frozen=True)
class ShiftCalendar:
    """The shifts of a line in a time zone (an IANA name such as `Europe/Berlin`)."""

    timezone: str
    shifts: tuple[Shift, ...]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from exc
        object.__setattr__(self, "_zone", zone)
        if not self.shifts:
            raise ValueError("shifts: a calendar needs at least one shift")
        names: set[str] = set()
        for i, shift in enumerate(self.shifts):
            shift.validate(f"shifts[{i}]")
            if shift.name in names:
                raise ValueError(f"shifts[{i}].name: {shift.name!r} is used twice")
            names.add(shift.name)
        self._check_no_overlap()

    def _check_no_overlap(self) -> None:
        spans: list[tuple[int, int, int]] = []  # (start, end, shift index) in minutes of the week
        for i, shift in enumerate(self.shifts):
            for day in shift.weekdays:
                start = day * MINUTES_PER_DAY + _minute_of_day(shift.start)
                end = start + shift.length_min
                if end <= MINUTES_PER_WEEK:
                    spans.append((start, end, i))
                else:  # Sunday night into Monday morning
                    spans.append((start, MINUTES_PER_WEEK, i))
                    spans.append((0, end - MINUTES_PER_WEEK, i))
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(
                    f"shifts[{b}]: overlaps shifts[{a}] ({self.shifts[a].name!r} and {self.shifts[b].name!r})"
                )

    def _instant(self, day: date, minute: int) -> int:
        """The instant of wall-clock `minute` after midnight of `day` (may run into later days)."""
        naive = datetime.combine(day, time()) + timedelta(minutes=minute)
        return _to_ms(naive.replace(tzinfo=self._zone))

    def occurrence(self, shift: Shift, day: date) -> ShiftOccurrence:
        """Return `shift` as it runs when starting on local `day` (whether or not it is scheduled)."""
        start_min = _minute_of_day(shift.start)
        breaks = tuple(
            (self._instant(day, start_min + s), self._instant(day, start_min + e)) for s, e in shift.break_offsets()
        )
        return ShiftOccurrence(
            name=shift.name,
            local_date=day,
            start_ms=self._instant(day, start_min),
            end_ms=self._instant(day, start_min + shift.length_min),
            breaks=tuple((s, e) for s, e in breaks if s < e),  # a break inside a skipped DST hour vanishes
        )

    def _occurrences(self, first: date, days: int) -> Iterator[ShiftOccurrence]:
        for n in range(days):
            day = first + timedelta(days=n)
            for shift in self.shifts:
                if day.weekday() in shift.weekdays:
                    yield self.occurrence(shift, day)

    def _local_date(self, t_ms: int) -> date:
        return datetime.fromtimestamp(t_ms / 1000.0, self._zone).date()

    def shift_at(self, t_ms: int) -> ShiftOccurrence | None:
        """Return the shift occurrence that `t_ms` falls in, or None outside every shift."""
        today = self._local_date(t_ms)
        best: ShiftOccurrence | None = None
        for occ in self._occurrences(today - timedelta(days=2), 3):
            if occ.start_ms <= t_ms < occ.end_ms and (best is None or occ.start_ms > best.start_ms):
                best = occ
        return best

    def next_start_after(self, t_ms: int) -> int:
        """Return the first instant after `t_ms` at which some shift starts (NEVER_MS if none)."""
        today = self._local_date(t_ms)
        starts = [occ.start_ms for occ in self._occurrences(today - timedelta(days=1), 9) if occ.start_ms > t_ms]
        return min(starts, default=NEVER_MS)

    def piece_at(self, t_ms: int) -> CalendarPiece:
        """Return the calendar's status at `t_ms` and until when it holds."""
        occ = self.shift_at(t_ms)
        next_start = self.next_start_after(t_ms)
        if occ is None:
            return CalendarPiece(next_start, CalendarStatus.OFF_SHIFT, None)
        end = min(occ.end_ms, next_start)
        for start_b, end_b in occ.breaks:
            if start_b <= t_ms < end_b:
                return CalendarPiece(min(end_b, end), CalendarStatus.BREAK, occ)
            if t_ms < start_b:
                return CalendarPiece(min(start_b, end), CalendarStatus.PRODUCTION, occ)
        return CalendarPiece(end, CalendarStatus.PRODUCTION, occ)
