"""Shift calendars: across midnight, across DST changes (Europe/Berlin), at the boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from plantline.connectors.kpi import (
    ALL_DAYS,
    WEEKDAYS,
    Break,
    CalendarStatus,
    KpiConfig,
    KpiEngine,
    Shift,
    ShiftCalendar,
)
from plantline.connectors.samples import Quality, Sample, Value

BERLIN = ZoneInfo("Europe/Berlin")
H = 3_600_000
EARLY = Shift("early", time(6), time(14))
LATE = Shift("late", time(14), time(22))
NIGHT = Shift("night", time(22), time(6), breaks=(Break(time(0), time(0, 30)),))
THREE_SHIFTS = ShiftCalendar("Europe/Berlin", (EARLY, LATE, NIGHT))


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0) -> int:
    """The instant of a wall-clock time in Berlin (as ms since the epoch)."""
    return int(datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold).timestamp() * 1000)


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def name_at(calendar: ShiftCalendar, t_ms: int) -> str | None:
    occ = calendar.shift_at(t_ms)
    return None if occ is None else occ.name


def test_a_night_shift_runs_across_midnight_and_belongs_to_the_day_it_starts() -> None:
    occ = THREE_SHIFTS.shift_at(ms(2024, 6, 12, 3, 0))  # Wednesday 03:00
    assert occ is not None
    assert (occ.name, occ.local_date) == ("night", date(2024, 6, 11))
    assert (occ.start_ms, occ.end_ms) == (ms(2024, 6, 11, 22), ms(2024, 6, 12, 6))
    assert occ.breaks == ((ms(2024, 6, 12, 0), ms(2024, 6, 12, 0, 30)),)
    assert occ.planned_s == 7.5 * 3600


def test_weekdays_are_those_the_shift_starts_on() -> None:
    calendar = ShiftCalendar("Europe/Berlin", (Shift("night", time(22), time(6), WEEKDAYS),))
    friday_night = calendar.shift_at(ms(2024, 6, 15, 3))  # Saturday 03:00: Friday's night
    assert friday_night is not None
    assert friday_night.local_date == date(2024, 6, 14)
    assert calendar.shift_at(ms(2024, 6, 16, 23)) is None  # Sunday night: no shift starts on Sunday
    off = calendar.piece_at(ms(2024, 6, 16, 23))
    assert (off.status, off.end_ms) == (CalendarStatus.OFF_SHIFT, ms(2024, 6, 17, 22))


def test_an_instant_exactly_at_a_handover_belongs_to_the_shift_that_starts() -> None:
    assert name_at(THREE_SHIFTS, ms(2024, 6, 12, 6)) == "early"
    assert name_at(THREE_SHIFTS, ms(2024, 6, 12, 6) - 1) == "night"
    assert name_at(THREE_SHIFTS, ms(2024, 6, 12, 14)) == "late"
    assert name_at(THREE_SHIFTS, ms(2024, 6, 12, 22)) == "night"


def test_breaks_are_calendar_pieces() -> None:
    before = THREE_SHIFTS.piece_at(ms(2024, 6, 11, 23, 59))
    assert (before.status, before.end_ms) == (CalendarStatus.PRODUCTION, ms(2024, 6, 12, 0))
    in_break = THREE_SHIFTS.piece_at(ms(2024, 6, 12, 0))
    assert (in_break.status, in_break.end_ms) == (CalendarStatus.BREAK, ms(2024, 6, 12, 0, 30))
    after = THREE_SHIFTS.piece_at(ms(2024, 6, 12, 0, 30))
    assert (after.status, after.end_ms) == (CalendarStatus.PRODUCTION, ms(2024, 6, 12, 6))


def test_spring_forward_night_is_seven_hours() -> None:
    # Europe/Berlin, last Sunday of March 2024: 02:00 CET becomes 03:00 CEST.
    occ = THREE_SHIFTS.shift_at(ms(2024, 3, 31, 4))
    assert occ is not None
    assert (occ.name, occ.local_date) == ("night", date(2024, 3, 30))
    assert (occ.start_ms, occ.end_ms) == (utc_ms(2024, 3, 30, 21), utc_ms(2024, 3, 31, 4))
    assert occ.end_ms - occ.start_ms == 7 * H
    early = THREE_SHIFTS.shift_at(ms(2024, 3, 31, 6))
    assert early is not None
    assert early.end_ms - early.start_ms == 8 * H


def test_fall_back_night_is_nine_hours() -> None:
    # Last Sunday of October 2024: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    occ = THREE_SHIFTS.shift_at(ms(2024, 10, 27, 2, 30, fold=1))
    assert occ is not None
    assert (occ.start_ms, occ.end_ms) == (utc_ms(2024, 10, 26, 20), utc_ms(2024, 10, 27, 5))
    assert occ.end_ms - occ.start_ms == 9 * H
    assert name_at(THREE_SHIFTS, ms(2024, 10, 27, 2, 30, fold=0)) == "night"


def test_wall_clock_times_that_do_not_exist_or_exist_twice() -> None:
    odd = ShiftCalendar("Europe/Berlin", (Shift("odd", time(2, 30), time(4)),))
    spring = odd.occurrence(odd.shifts[0], date(2024, 3, 31))
    # 02:30 does not exist that day: it is read with the offset before the change (CET), which
    # is 03:30 CEST; the shift is then half an hour long.
    assert (spring.start_ms, spring.end_ms - spring.start_ms) == (utc_ms(2024, 3, 31, 1, 30), H // 2)
    autumn = odd.occurrence(odd.shifts[0], date(2024, 10, 27))
    # 02:30 happens twice: the first one (CEST) counts; the shift is then two and a half hours long.
    assert (autumn.start_ms, autumn.end_ms - autumn.start_ms) == (utc_ms(2024, 10, 27, 0, 30), 5 * H // 2)


def send(kpi: KpiEngine, t_ms: int, values: dict[str, Value | None]) -> None:
    for signal, value in values.items():
        kpi.update(Sample("m", signal, value, Quality.GOOD, t_ms))


RUN: dict[str, Value | None] = {"state.run": True, "state.idle": False}
IDLE: dict[str, Value | None] = {"state.run": False, "state.idle": True}


def test_engine_over_the_spring_forward_night() -> None:
    kpi = KpiEngine("m", KpiConfig(ideal_cycle_s=1.0, calendar=THREE_SHIFTS))
    start, end = ms(2024, 3, 30, 22), ms(2024, 3, 31, 6)
    for i, t in enumerate(range(start, end + 1, 60_000)):
        send(kpi, t, {**RUN, "counter.good": i * 40})
    snap = kpi.snapshot(end)
    night = snap.previous_shift
    assert night is not None
    assert (night.shift_name, night.start_ms, night.end_ms) == ("night", start, end)
    # Seven real hours; the machine ran through the break too, so all of it is run time.
    assert (night.run_s, night.planned_s, night.calendar_stop_s) == (7 * 3600, 7 * 3600, 0)
    assert night.total == (7 * 60 - 1) * 40  # the count read at 06:00 is the early shift's
    assert snap.shift is not None
    assert (snap.shift.shift_name, snap.shift.run_s, snap.shift.total) == ("early", 0, 40)


def test_engine_counts_the_sample_on_the_stroke_of_a_shift_in_the_new_shift() -> None:
    kpi = KpiEngine("m", KpiConfig(ideal_cycle_s=1.0, calendar=THREE_SHIFTS))
    send(kpi, ms(2024, 6, 12, 13), {**RUN, "counter.total": 0, "counter.good": 0})
    send(kpi, ms(2024, 6, 12, 14) - 1000, {"counter.total": 100, "counter.good": 100})
    send(kpi, ms(2024, 6, 12, 14), {"counter.total": 150, "counter.good": 150})
    send(kpi, ms(2024, 6, 12, 14, 30), IDLE)
    snap = kpi.snapshot(ms(2024, 6, 12, 15))
    assert snap.shift is not None
    assert snap.previous_shift is not None
    assert (snap.previous_shift.shift_name, snap.previous_shift.total) == ("early", 100)
    assert snap.previous_shift.start_ms == ms(2024, 6, 12, 13)  # the engine started then
    assert snap.previous_shift.run_s == 3600
    assert (snap.shift.shift_name, snap.shift.total, snap.shift.run_s, snap.shift.idle_s) == ("late", 50, 1800, 1800)


def test_engine_excludes_breaks_and_off_shift_time_unless_the_machine_runs() -> None:
    calendar = ShiftCalendar(
        "Europe/Berlin", (Shift("day", time(8), time(16), ALL_DAYS, (Break(time(12), time(13)),)),)
    )
    kpi = KpiEngine("m", KpiConfig(calendar=calendar, window_s=24 * 3600, resolution_s=60))
    send(kpi, ms(2024, 6, 12, 7), IDLE)  # an hour before the shift: off shift
    send(kpi, ms(2024, 6, 12, 8), RUN)
    send(kpi, ms(2024, 6, 12, 11), IDLE)  # idle from 11 to 14, with the break from 12 to 13
    send(kpi, ms(2024, 6, 12, 14), RUN)  # runs until 18, two hours past the shift
    send(kpi, ms(2024, 6, 12, 18), IDLE)
    snap = kpi.snapshot(ms(2024, 6, 12, 19))
    w = snap.window
    assert (w.run_s / 3600, w.idle_s / 3600, w.calendar_stop_s / 3600) == (7, 2, 3)
    assert w.planned_s == 9 * 3600
    assert snap.shift is None
    assert snap.previous_shift is not None
    assert (snap.previous_shift.run_s / 3600, snap.previous_shift.planned_s / 3600) == (5, 7)


@pytest.mark.parametrize(
    ("shifts", "message"),
    [
        ((EARLY, Shift("overlap", time(13), time(15))), r"shifts\[1\]: overlaps shifts\[0\]"),
        ((NIGHT, Shift("morning", time(5), time(7))), "overlaps"),
        ((Shift("sunday-night", time(22), time(6), frozenset({6})), Shift("monday", time(5), time(9))), "overlaps"),
        ((EARLY, Shift("early", time(14), time(22))), r"shifts\[1\].name: 'early' is used twice"),
        ((Shift("x", time(6), time(14), frozenset()),), r"shifts\[0\].weekdays"),
        ((Shift("x", time(6), time(14), frozenset({7})),), r"shifts\[0\].weekdays"),
        ((Shift("x", time(6), time(14), breaks=(Break(time(15), time(16)),)),), r"shifts\[0\].breaks\[0\]"),
        ((Shift("x", time(6), time(14), breaks=(Break(time(9), time(9)),)),), r"shifts\[0\].breaks\[0\]"),
        (
            (Shift("x", time(6), time(14), breaks=(Break(time(9), time(10)), Break(time(9, 30), time(11)))),),
            r"shifts\[0\].breaks: breaks overlap",
        ),
        ((Shift("x", time(6, 0, 30), time(14)),), r"shifts\[0\].start"),
        ((), "at least one shift"),
    ],
)
def test_bad_calendars_name_the_field(shifts: tuple[Shift, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShiftCalendar("Europe/Berlin", shifts)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone: unknown time zone 'Europe/Atlantis'"):
        ShiftCalendar("Europe/Atlantis", (EARLY,))


def test_a_24_hour_shift() -> None:
    calendar = ShiftCalendar("Europe/Berlin", (Shift("all-day", time(6), time(6), frozenset({0})),))
    occ = calendar.shift_at(ms(2024, 6, 11, 5))  # Tuesday 05:00: Monday's shift
    assert occ is not None
    assert occ.end_ms - occ.start_ms == 24 * H
