"""Maintenance windows: weekly time ranges in which disruptive changes (renewals) may happen."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plantline.pki.errors import InvalidInput

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(r"(?P<days>[a-z*,-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})")


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A weekly window opening at `start` on each of `weekdays` (0 = Monday) for `length`."""

    weekdays: frozenset[int]
    start: time
    length: timedelta
    tz: tzinfo

    def _openings_near(self, now: datetime, days_back: int, days_ahead: int) -> list[datetime]:
        local = now.astimezone(self.tz).date()
        openings = []
        for offset in range(-days_back, days_ahead + 1):
            day = local + timedelta(days=offset)
            if day.weekday() in self.weekdays:
                openings.append(datetime.combine(day, self.start, tzinfo=self.tz))
        return openings

    def contains(self, now: datetime) -> bool:
        """Return whether `now` falls inside one opening of this window."""
        return any(o <= now < o + self.length for o in self._openings_near(now, 1, 0))

    def next_opening(self, now: datetime) -> datetime:
        """Return the first opening strictly after `now`."""
        return min(o for o in self._openings_near(now, 0, 8) if o > now)


def _day_set(text: str, field: str) -> frozenset[int]:
    if text == "*":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise InvalidInput(
                f"{field}: {part!r} is not a day or day range; expected e.g. 'sat', 'mon-fri', 'sat,sun' or '*'"
            )
        lo, hi = _DAYS.index(first), _DAYS.index(last or first)
        span = range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(hi + 1)]
        days.update(span)
    return frozenset(days)


def _clock(text: str, field: str) -> time:
    hours, minutes = (int(p) for p in text.split(":"))
    if hours > 23 or minutes > 59:
        raise InvalidInput(f"{field}: {text!r} is not a time of day; expected HH:MM from 00:00 to 23:59")
    return time(hours, minutes)


def parse_window(text: str, *, timezone: str = "UTC", field: str = "maintenance_window") -> MaintenanceWindow:
    """Return the window written as `DAYS HH:MM-HH:MM` (e.g. `sat 02:00-06:00`, `mon-fri 22:00-02:00`).

    An end at or before the start means the window crosses midnight.
    """
    match = _SPEC.fullmatch(text.strip().lower())
    if not match:
        raise InvalidInput(
            f"{field}: {text!r} is not a maintenance window; expected 'DAYS HH:MM-HH:MM', e.g. 'sat 02:00-06:00'"
        )
    start = _clock(match["start"], field)
    end = _clock(match["end"], field)
    length = datetime.combine(datetime.min, end) - datetime.combine(datetime.min, start)
    if length <= timedelta(0):
        length += timedelta(days=1)
    try:
        tz: tzinfo = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{field}: unknown time zone {timezone!r}") from None
    return MaintenanceWindow(_day_set(match["days"], field), start, length, tz)


def in_any(windows: Sequence[MaintenanceWindow], now: datetime) -> bool:
    """Return whether `now` is inside one of the windows (no windows means always allowed)."""
    return not windows or any(w.contains(now) for w in windows)


def next_opening(windows: Sequence[MaintenanceWindow], now: datetime) -> datetime | None:
    """Return the earliest opening after `now` among the windows, or None without windows."""
    return min((w.next_opening(now) for w in windows), default=None)
