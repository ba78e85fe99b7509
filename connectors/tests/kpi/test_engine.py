"""The KPI engine fed with signal streams whose KPIs are computed by hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from plantline.connectors.kpi import (
    SPARKPLUG_METRICS,
    WEEKDAYS,
    Break,
    CheckpointError,
    CounterRules,
    KpiConfig,
    KpiEngine,
    KpiFigures,
    KpiWarning,
    Shift,
    ShiftCalendar,
    config_key,
    gauge_values,
    sparkplug_metrics,
)
from plantline.connectors.metric_names import KPI_GAUGES, MACHINE_STATES
from plantline.connectors.samples import Quality, Sample, Value

MACHINE = "filler-1"
T0 = 1_699_999_200_000  # 2023-11-14 22:00 UTC, a whole hour
S = 1000
MIN = 60 * S
STATES = ("run", "idle", "blocked", "starved", "planned_stop")


def send(engine: KpiEngine, t_ms: int, values: Mapping[str, Value | None], quality: Quality = Quality.GOOD) -> None:
    for signal, value in values.items():
        engine.update(Sample(MACHINE, signal, value, quality, t_ms))


def state(name: str) -> dict[str, Value | None]:
    return {f"state.{s}": s == name for s in STATES}


def engine(**config: Any) -> KpiEngine:
    return KpiEngine(MACHINE, KpiConfig(**config))


# -- the textbook example -------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
SHIFT_START = int(datetime(2024, 6, 12, 6, 0, tzinfo=BERLIN).timestamp()) * S  # a Wednesday
SHIFT_S = 8 * 3600
BREAK_MINUTES = ((120, 135), (240, 270), (360, 375))  # 08:00 15 min, 10:00 30 min meal, 12:00 15 min
DOWN_MINUTES = (180, 227)  # 47 min
TOTAL, REJECT, IDEAL_CYCLE_S = 19_271, 423, 1.0
EARLY = Shift(
    "early",
    time(6),
    time(14),
    WEEKDAYS,
    (Break(time(8), time(8, 15)), Break(time(10), time(10, 30), "meal"), Break(time(12), time(12, 15))),
)


def textbook() -> tuple[float, float, float, float]:
    """The example's A, P, Q and OEE from the definitions."""
    planned_s = (SHIFT_S / 60 - sum(e - s for s, e in BREAK_MINUTES)) * 60
    run_s = planned_s - (DOWN_MINUTES[1] - DOWN_MINUTES[0]) * 60
    a = run_s / planned_s
    p = IDEAL_CYCLE_S * TOTAL / run_s
    q = (TOTAL - REJECT) / TOTAL
    return a, p, q, a * p * q


def textbook_stream(
    start_ms: int, *, breaks_as: str, bits: int = 32, offset: int = 0, with_total: bool = True
) -> Iterator[Sample]:
    """The example as a machine would report it: states on change, counters every second.

    Breaks are idle time (the calendar knows them) or `state.planned_stop` (the machine says so).
    The counters start at `offset`, wrap at 2^bits, and have made all parts a few seconds before
    the shift's end (so that none is counted on the stroke of the next shift).
    """
    run_total_s = SHIFT_S - 60 * (sum(e - s for s, e in BREAK_MINUTES) + DOWN_MINUTES[1] - DOWN_MINUTES[0])
    good_total, ran, current = TOTAL - REJECT, 0, ""
    for second in range(SHIFT_S + 1):
        minute, t = second // 60, start_ms + second * S
        in_break = any(s <= minute < e for s, e in BREAK_MINUTES)
        now = "run"
        if second == SHIFT_S or DOWN_MINUTES[0] <= minute < DOWN_MINUTES[1]:
            now = "idle"
        elif in_break:
            now = "planned_stop" if breaks_as == "signal" else "idle"
        if now != current:
            for signal, value in state(now).items():
                yield Sample(MACHINE, signal, value, Quality.GOOD, t)
            current = now
        share = min(ran, run_total_s - 10) / (run_total_s - 10)
        good, reject = int(good_total * share), int(REJECT * share)
        counters = {"counter.good": good, "counter.reject": reject}
        if with_total:
            counters["counter.total"] = good + reject
        for signal, value in counters.items():
            yield Sample(MACHINE, signal, (value + offset) % 2**bits, Quality.GOOD, t)
        ran += now == "run"


def assert_textbook(figures: KpiFigures) -> None:
    a, p, q, oee = textbook()
    f = dataclasses.asdict(figures)
    assert (f["run_s"], f["planned_s"], f["good"], f["reject"], f["total"]) == (22_380, 25_200, 18_848, 423, 19_271)
    assert f["availability"] == pytest.approx(a, abs=1e-4)
    assert f["performance"] == pytest.approx(p, abs=1e-4)
    assert f["quality"] == pytest.approx(q, abs=1e-4)
    assert f["oee"] == pytest.approx(oee, abs=1e-4)
    assert (round(a, 4), round(p, 4), round(q, 4), round(oee, 4)) == (0.8881, 0.8611, 0.9780, 0.7479)


def test_textbook_shift_with_calendar_breaks() -> None:
    kpi = engine(
        ideal_cycle_s=IDEAL_CYCLE_S, calendar=ShiftCalendar("Europe/Berlin", (EARLY,)), window_s=3600, resolution_s=60
    )
    end_ms = SHIFT_START + SHIFT_S * S
    stream = list(textbook_stream(SHIFT_START, breaks_as="calendar"))
    for sample in stream:
        if sample.source_ts_ms < end_ms:
            kpi.update(sample)
    during = kpi.snapshot(end_ms - 1)
    assert during.shift is not None
    assert (during.shift.shift_name, during.shift.end_ms, during.shift.total) == ("early", end_ms - 1, TOTAL)
    for sample in stream:
        if sample.source_ts_ms == end_ms:
            kpi.update(sample)
    end = kpi.snapshot(end_ms)
    assert end.shift is None  # 14:00 is after the shift: it is over
    assert end.previous_shift is not None
    assert end.previous_shift.shift_name == "early"
    assert end.previous_shift.calendar_stop_s == 60 * 60
    assert end.previous_shift.warnings == frozenset()
    assert_textbook(end.previous_shift)


@pytest.mark.parametrize(
    ("bits", "offset", "with_total", "warning"),
    [
        (32, 0, True, None),
        (16, 60_000, True, KpiWarning.COUNTER_ROLLOVER),  # every counter wraps during the shift
        (32, 2**32 - 5_000, False, KpiWarning.COUNTER_ROLLOVER),  # no counter.total: good + reject
    ],
)
def test_textbook_window_with_planned_stop_signal(
    bits: int, offset: int, with_total: bool, warning: KpiWarning | None
) -> None:
    kpi = engine(ideal_cycle_s=IDEAL_CYCLE_S, window_s=SHIFT_S, resolution_s=60, counters=CounterRules(bits=bits))
    start = T0
    for sample in textbook_stream(start, breaks_as="signal", bits=bits, offset=offset, with_total=with_total):
        kpi.update(sample)
    snap = kpi.snapshot(start + SHIFT_S * S)
    assert snap.window.start_ms == start
    assert snap.window.planned_stop_s == 60 * 60
    assert snap.warnings == (frozenset() if warning is None else {warning})
    assert_textbook(snap.window)
    assert (snap.oee, snap.availability) == (snap.window.oee, snap.window.availability)


# -- each formula on a small stream ---------------------------------------------------------------


def test_availability_performance_quality_by_hand() -> None:
    # 6 min run making 150 parts (6 rejects) at an ideal 2 s, 2 min idle, 2 min planned stop:
    # A = 6/8 = 0.75, P = 150 * 2 / 360 = 0.8333, Q = 144/150 = 0.96.
    kpi = engine(window_s=3600, resolution_s=1)
    send(kpi, T0, {**state("run"), "cycle.ideal": 2.0, "counter.good": 0, "counter.reject": 0})
    send(kpi, T0 + 6 * MIN, {**state("idle"), "counter.good": 144, "counter.reject": 6})
    send(kpi, T0 + 8 * MIN, state("planned_stop"))
    snap = kpi.snapshot(T0 + 10 * MIN)
    assert (snap.run_s, snap.planned_s, snap.window.planned_stop_s) == (360, 480, 120)
    assert (snap.good, snap.reject, snap.total) == (144, 6, 150)
    assert snap.availability == 0.75
    assert snap.performance == pytest.approx(300 / 360)
    assert snap.quality == 0.96
    assert snap.oee == pytest.approx(0.75 * 300 / 360 * 0.96)
    assert snap.ideal_cycle_s == 2.0


def test_zero_planned_time_gives_none_not_an_error() -> None:
    kpi = engine()
    send(kpi, T0, state("planned_stop"))
    snap = kpi.snapshot(T0 + 10 * MIN)
    assert (snap.planned_s, snap.window.planned_stop_s) == (0, 600)
    assert (snap.availability, snap.performance, snap.quality, snap.oee) == (None, None, None, None)


def test_no_production_is_an_oee_of_zero() -> None:
    kpi = engine(ideal_cycle_s=2.0)
    send(kpi, T0, {**state("starved"), "counter.good": 500, "counter.reject": 7})
    send(kpi, T0 + 5 * MIN, {"counter.good": 500, "counter.reject": 7})
    snap = kpi.snapshot(T0 + 10 * MIN)
    assert (snap.availability, snap.performance, snap.quality, snap.oee) == (0.0, None, None, 0.0)
    assert (snap.window.starved_s, snap.total, snap.good) == (600, 0, 0)


def test_an_engine_with_no_samples_has_no_figures() -> None:
    snap = engine().snapshot(T0)
    assert (snap.availability, snap.oee, snap.total, snap.good, snap.run_s) == (None, None, 0, None, 0)
    assert snap.shift is None


def test_counter_reset_mid_window() -> None:
    kpi = engine(ideal_cycle_s=1.0, window_s=3600)
    send(kpi, T0, {**state("run"), "counter.total": 1000, "counter.good": 990})
    send(kpi, T0 + 100 * S, {"counter.total": 1100, "counter.good": 1085})  # 100 parts
    send(kpi, T0 + 101 * S, {"counter.total": 0, "counter.good": 0})  # the PLC restarts
    send(kpi, T0 + 200 * S, {"counter.total": 60, "counter.good": 58})  # 60 more
    snap = kpi.snapshot(T0 + 200 * S)
    assert (snap.total, snap.good, snap.reject) == (160, 153, 7)
    assert KpiWarning.COUNTER_RESET in snap.warnings
    assert snap.performance == pytest.approx(160 / 200)


@pytest.mark.parametrize("bits", [16, 32])
def test_counter_rollover(bits: int) -> None:
    top = 2**bits
    kpi = engine(ideal_cycle_s=1.0, counters=CounterRules(bits=bits))
    send(kpi, T0, {**state("run"), "counter.total": top - 30, "counter.good": top - 40})
    send(kpi, T0 + 50 * S, {"counter.total": 20, "counter.good": 8})  # 50 parts, 48 good
    snap = kpi.snapshot(T0 + 50 * S)
    assert (snap.total, snap.good, snap.reject) == (50, 48, 2)
    assert snap.warnings == {KpiWarning.COUNTER_ROLLOVER}


def test_counter_total_absent_or_good_absent() -> None:
    only_good_reject = engine(ideal_cycle_s=1.0)
    send(only_good_reject, T0, {**state("run"), "counter.good": 0, "counter.reject": 0})
    send(only_good_reject, T0 + 100 * S, {"counter.good": 90, "counter.reject": 5})
    snap = only_good_reject.snapshot(T0 + 100 * S)
    assert (snap.good, snap.reject, snap.total, snap.quality) == (90, 5, 95, 90 / 95)

    total_reject = engine(ideal_cycle_s=1.0)
    send(total_reject, T0, {**state("run"), "counter.total": 0, "counter.reject": 0})
    send(total_reject, T0 + 100 * S, {"counter.total": 95, "counter.reject": 5})
    snap = total_reject.snapshot(T0 + 100 * S)
    assert (snap.good, snap.reject, snap.total) == (90, 5, 95)

    only_total = engine(ideal_cycle_s=1.0)
    send(only_total, T0, {**state("run"), "counter.total": 0})
    send(only_total, T0 + 100 * S, {"counter.total": 95})
    snap = only_total.snapshot(T0 + 100 * S)
    assert (snap.good, snap.reject, snap.total, snap.quality, snap.oee) == (None, None, 95, None, None)
    assert snap.warnings == {KpiWarning.NO_QUALITY_COUNTS}


# -- samples out of order, bad, invalid -----------------------------------------------------------


def test_out_of_order_samples_are_dropped_and_counted() -> None:
    kpi = engine(ideal_cycle_s=1.0)
    send(kpi, T0, {**state("run"), "counter.total": 0})
    send(kpi, T0 + 10 * S, {"counter.total": 10})
    send(kpi, T0 + 5 * S, {"counter.total": 5})  # older than the last counter.total: dropped
    send(kpi, T0 + 20 * S, {"counter.total": 20})
    snap = kpi.snapshot(T0 + 20 * S)
    assert snap.total == 20  # not 10 + 5 + 15
    assert snap.samples.out_of_order == 1
    assert snap.samples.accepted == 5 + 3


def test_interleaved_signals_late_by_a_little_are_applied_at_the_engine_clock() -> None:
    kpi = engine()
    send(kpi, T0, state("run"))
    send(kpi, T0 + 60 * S, {"counter.total": 0})
    # The state change happened at +58 s but arrives after the counter of +60 s.
    send(kpi, T0 + 58 * S, {"state.run": False, "state.idle": True})
    snap = kpi.snapshot(T0 + 100 * S)
    assert snap.samples.late == 2
    assert snap.samples.out_of_order == 0
    assert (snap.run_s, snap.window.idle_s) == (60, 40)


def test_bad_quality_makes_state_unknown_and_leaves_counters_alone() -> None:
    kpi = engine(ideal_cycle_s=1.0, state_gap_hold_s=0)
    send(kpi, T0, {**state("run"), "counter.total": 0})
    send(kpi, T0 + 100 * S, {"counter.total": 80})
    send(kpi, T0 + 100 * S, {"state.run": None, "counter.total": None}, quality=Quality.BAD)
    send(kpi, T0 + 150 * S, {"state.run": True, "counter.total": 90})
    snap = kpi.snapshot(T0 + 200 * S)
    assert (snap.run_s, snap.window.unknown_s, snap.planned_s) == (150, 50, 150)
    assert snap.total == 90
    assert KpiWarning.UNKNOWN_STATE in snap.warnings


def test_invalid_values_and_foreign_samples_are_counted_not_used() -> None:
    kpi = engine()
    kpi.update(Sample("other-machine", "state.run", True, Quality.GOOD, T0))
    kpi.update(Sample(MACHINE, "process.temperature", 61.5, Quality.GOOD, T0))
    send(kpi, T0, {"state.run": "yes", "counter.total": 1.5, "cycle.ideal": -1.0, "fault.code": True})
    send(kpi, T0, {"counter.good": 7.0, "state.idle": 1})  # an integral float, an int for a bool
    snap = kpi.snapshot(T0 + S)
    assert snap.samples == dataclasses.replace(snap.samples, accepted=2, invalid=4, ignored=2, late=0)
    assert snap.window.idle_s == 1


# -- time accounting: precedence, overlaps, gaps ------------------------------------------------


@pytest.mark.parametrize(
    ("true", "counted_as"),
    [
        (("run", "blocked"), "run_s"),
        (("run", "planned_stop"), "run_s"),  # a machine that runs is producing
        (("planned_stop", "idle"), "planned_stop_s"),
        (("blocked", "starved"), "blocked_s"),
        (("starved", "idle"), "starved_s"),
    ],
)
def test_overlapping_states_follow_the_precedence(true: tuple[str, ...], counted_as: str) -> None:
    kpi = engine()
    send(kpi, T0, {f"state.{s}": s in true for s in STATES})
    snap = kpi.snapshot(T0 + 10 * S)
    assert getattr(snap.window, counted_as) == 10
    assert KpiWarning.STATE_OVERLAP in snap.warnings


def test_a_short_gap_between_states_keeps_the_last_state_a_long_one_is_unknown() -> None:
    kpi = engine(state_gap_hold_s=2.0)
    send(kpi, T0, state("run"))
    send(kpi, T0 + 10 * S, {"state.run": False})  # reported by exception: run clears first ...
    send(kpi, T0 + 10 * S + 500, {"state.idle": True})  # ... idle comes half a second later
    short = kpi.snapshot(T0 + 20 * S)
    assert (short.run_s, short.window.idle_s, short.window.unknown_s) == (10.5, 9.5, 0)
    assert short.warnings == frozenset()
    send(kpi, T0 + 20 * S, {"state.idle": False})  # and then nothing for 10 s
    send(kpi, T0 + 30 * S, {"state.run": True})
    long = kpi.snapshot(T0 + 30 * S)
    assert (long.window.idle_s, long.window.unknown_s) == (11.5, 8)
    assert long.planned_s == 22
    assert long.warnings == {KpiWarning.UNKNOWN_STATE}


def test_time_before_the_first_state_is_unknown() -> None:
    kpi = engine()
    send(kpi, T0, {"counter.total": 0})
    send(kpi, T0 + 5 * S, state("run"))
    snap = kpi.snapshot(T0 + 10 * S)
    assert (snap.window.unknown_s, snap.run_s, snap.availability) == (5, 5, 1.0)


# -- the ideal cycle time -------------------------------------------------------------------------


def test_ideal_cycle_from_the_signal_follows_a_changeover() -> None:
    kpi = engine()
    send(kpi, T0, {**state("run"), "cycle.ideal": 2.0, "counter.total": 0})
    send(kpi, T0 + 100 * S, {"counter.total": 40, "cycle.ideal": 1.0})  # 40 parts at 2 s
    send(kpi, T0 + 200 * S, {"counter.total": 130})  # 90 parts at 1 s
    snap = kpi.snapshot(T0 + 200 * S)
    assert snap.performance == pytest.approx((40 * 2.0 + 90 * 1.0) / 200)


def test_a_configured_ideal_cycle_overrides_the_signal() -> None:
    kpi = engine(ideal_cycle_s=0.5)
    send(kpi, T0, {**state("run"), "cycle.ideal": 2.0, "counter.total": 0})
    send(kpi, T0 + 100 * S, {"counter.total": 100})
    snap = kpi.snapshot(T0 + 100 * S)
    assert (snap.performance, snap.ideal_cycle_s) == (0.5, 0.5)


def test_parts_without_an_ideal_cycle_leave_performance_undefined() -> None:
    kpi = engine()
    send(kpi, T0, {**state("run"), "counter.total": 0})
    send(kpi, T0 + 100 * S, {"counter.total": 100})
    snap = kpi.snapshot(T0 + 100 * S)
    assert (snap.performance, snap.oee) == (None, None)
    assert KpiWarning.NO_IDEAL_CYCLE in snap.warnings


def test_performance_above_one_flags_the_ideal_cycle_time() -> None:
    kpi = engine(ideal_cycle_s=2.0)  # the machine really makes a part a second
    send(kpi, T0, {**state("run"), "counter.total": 0, "counter.good": 0})
    send(kpi, T0 + 100 * S, {"counter.total": 100, "counter.good": 100})
    snap = kpi.snapshot(T0 + 100 * S)
    assert snap.performance == 2.0
    assert snap.oee == 2.0  # reported as computed, and flagged
    assert snap.warnings == {KpiWarning.IDEAL_CYCLE_SUSPECT}


# -- the rolling window ---------------------------------------------------------------------------


def test_the_window_keeps_the_last_minutes_only() -> None:
    kpi = engine(ideal_cycle_s=1.0, window_s=600, resolution_s=10)
    send(kpi, T0, {**state("idle"), "counter.total": 0})
    send(kpi, T0 + 20 * MIN, {**state("run")})
    send(kpi, T0 + 25 * MIN, {"counter.total": 150, **state("blocked")})
    snap = kpi.snapshot(T0 + 30 * MIN)
    assert snap.window.start_ms == T0 + 20 * MIN  # (now - 10 min), on a bucket boundary
    assert (snap.run_s, snap.window.blocked_s, snap.window.idle_s, snap.total) == (300, 300, 0, 150)
    later = kpi.snapshot(T0 + 30 * MIN + 5 * S)  # the window starts inside a bucket: it takes it whole
    assert later.window.start_ms == T0 + 20 * MIN
    assert (later.run_s, later.window.blocked_s) == (300, 305)
    much_later = kpi.snapshot(T0 + 40 * MIN)
    assert (much_later.run_s, much_later.window.blocked_s, much_later.total) == (0, 600, 0)


def test_snapshot_changes_nothing() -> None:
    def fed(with_snapshots: bool) -> KpiEngine:
        kpi = engine(ideal_cycle_s=1.0, window_s=600, resolution_s=10)
        for i in range(100):
            send(kpi, T0 + i * 7 * S, {**state("run" if i % 3 else "idle"), "counter.total": i * 3})
            if with_snapshots:
                kpi.snapshot(T0 + i * 7 * S + 50 * MIN)
        return kpi

    assert fed(True).snapshot(T0 + 12 * MIN) == fed(False).snapshot(T0 + 12 * MIN)


def test_memory_follows_the_window_not_the_samples() -> None:
    kpi = engine(ideal_cycle_s=1.0, window_s=600, resolution_s=10)
    for i in range(20_000):
        send(kpi, T0 + i * S, {**state("run"), "counter.total": i})
        assert kpi.retained <= 600 / 10 + 2
    assert kpi.snapshot(T0 + 20_000 * S).run_s == 600


def test_a_snapshot_states_the_newest_sample_the_engine_consumed() -> None:
    kpi = engine()
    assert kpi.snapshot(T0).data_until_ms is None
    assert sparkplug_metrics(kpi.snapshot(T0))["kpi/data_until"] == (None, "datetime")
    send(kpi, T0, state("run"))
    send(kpi, T0 + 5 * S, {"counter.total": 3})
    send(kpi, T0 + 2 * S, {"state.run": True})  # late: applied at the clock, older than the newest
    kpi.update(Sample("other", "counter.total", 1, Quality.GOOD, T0 + 9 * S))  # another machine's
    kpi.update(Sample(MACHINE, "process.temperature", 20.0, Quality.GOOD, T0 + 9 * S))  # not a KPI signal
    assert kpi.snapshot(T0 + 60 * S).data_until_ms == T0 + 5 * S
    send(kpi, T0 + 7 * S, {"counter.total": "x"})  # invalid, but read: the replay reads it too
    send(kpi, T0 + 8 * S, {"state.idle": True}, Quality.BAD)
    snap = kpi.snapshot(T0 + 60 * S)
    assert (snap.at_ms, snap.data_until_ms) == (T0 + 60 * S, T0 + 8 * S)


# -- checkpoints ----------------------------------------------------------------------------------


def busy(kpi: KpiEngine, minutes: int) -> KpiEngine:
    """Feed `kpi` a machine changing state, counting parts and faulting every few seconds."""
    for i in range(minutes * 30):
        t = T0 + i * 2 * S
        send(kpi, t, {**state(STATES[i // 40 % 5]), "counter.good": i * 3, "counter.reject": i // 7})
        send(kpi, t, {"fault.active": i % 97 < 4, "fault.code": 40 + i // 97 % 3})
    return kpi


def test_a_checkpoint_is_compact_and_restored_with_its_configuration_only() -> None:
    config = KpiConfig(ideal_cycle_s=1.0, window_s=900, resolution_s=5, calendar=ShiftCalendar("UTC", (EARLY,)))
    kpi = busy(KpiEngine(MACHINE, config), 60)
    data = kpi.checkpoint()
    assert len(data) < 4096  # a full window of 180 buckets, a shift, its faults
    assert KpiEngine.restore(config, data).snapshot(T0 + 61 * MIN) == kpi.snapshot(T0 + 61 * MIN)
    assert config_key(dataclasses.replace(config)) == config_key(config)
    for other in (
        dataclasses.replace(config, window_s=1800),
        dataclasses.replace(config, counters=CounterRules(bits=16)),
        dataclasses.replace(config, calendar=None),
    ):
        assert config_key(other) != config_key(config)
        with pytest.raises(CheckpointError, match="another KPI configuration"):
            KpiEngine.restore(other, data)
    for damaged in (b"", b"PLKE\x02" + data[5:], data[:-7]):
        with pytest.raises(CheckpointError):
            KpiEngine.restore(config, damaged)


def test_a_checkpoint_keeps_counts_beyond_64_bits() -> None:
    # A 64-bit counter that jumps to its top counts 2^64 - 1 parts in one bucket: no int64 holds it.
    config = KpiConfig(ideal_cycle_s=2.0, counters=CounterRules(bits=64))
    kpi = engine(ideal_cycle_s=2.0, counters=CounterRules(bits=64))
    send(kpi, T0, {**state("run"), "counter.total": 0})
    send(kpi, T0 + MIN, {"counter.total": 2**64 - 1})
    restored = KpiEngine.restore(config, kpi.checkpoint())
    assert restored.snapshot(T0 + 2 * MIN) == kpi.snapshot(T0 + 2 * MIN)
    assert restored.snapshot(T0 + 2 * MIN).total == 2**64 - 1


# -- publishing -----------------------------------------------------------------------------------


def test_sparkplug_metrics_and_gauges() -> None:
    kpi = engine(ideal_cycle_s=1.0)
    send(kpi, T0, {**state("run"), "counter.total": 0, "counter.good": 0, "fault.code": 0})
    send(kpi, T0 + 100 * S, {"counter.total": 80, "counter.good": 76, **state("idle"), "fault.code": 1001})
    metrics = sparkplug_metrics(kpi.snapshot(T0 + 200 * S))
    assert list(metrics) == [
        "kpi/oee",
        "kpi/availability",
        "kpi/performance",
        "kpi/quality",
        "kpi/mttr_s",
        "kpi/mtbf_s",
        "fault/active_code",
        "kpi/data_until",
    ]
    assert metrics["kpi/availability"] == (0.5, "double")
    assert metrics["kpi/performance"] == (0.8, "double")
    assert metrics["kpi/quality"] == (0.95, "double")
    assert metrics["kpi/oee"][0] == pytest.approx(0.5 * 0.8 * 0.95)
    assert metrics["kpi/mttr_s"] == (None, "double")  # no fault has ended: a null metric
    assert metrics["fault/active_code"] == (1001, "int32")
    assert metrics["kpi/data_until"] == (T0 + 100 * S, "datetime")  # the newest sample, not the snapshot's time
    assert {datatype for _, datatype in metrics.values()} <= {"double", "int32", "datetime"}
    assert set(SPARKPLUG_METRICS) == set(metrics)

    gauges = gauge_values(kpi.snapshot(T0 + 200 * S))
    assert {name for name, _, _ in gauges} <= {gauge.name for gauge in KPI_GAUGES}
    assert ("plantline_kpi_availability_ratio", "window", 0.5) in gauges
    assert ("plantline_kpi_fault_active_code", "window", 1001.0) in gauges
    assert not any(name == "plantline_kpi_mttr_seconds" for name, _, _ in gauges)
    assert ("plantline_kpi_state", "window", float(MACHINE_STATES.index("fault"))) in gauges  # idle, faulted


@pytest.mark.parametrize("name", ["run", "idle", "blocked", "starved", "planned_stop"])
def test_the_state_now_is_the_true_state_signal(name: str) -> None:
    kpi = engine()
    send(kpi, T0, state(name))
    assert kpi.snapshot(T0 + 5 * S).state == name


def test_an_active_fault_shows_unless_running_and_a_gap_becomes_unknown() -> None:
    kpi = engine(state_gap_hold_s=2.0, fault_debounce_s=0)
    assert kpi.snapshot(T0).state == "unknown"  # no sample yet
    send(kpi, T0, {**state("run"), "fault.code": 7})
    assert kpi.snapshot(T0 + S).state == "run"  # parts still count: running wins over the fault
    send(kpi, T0 + 2 * S, state("blocked"))
    assert kpi.snapshot(T0 + 3 * S).state == "fault"
    send(kpi, T0 + 4 * S, {"fault.code": 0, "state.blocked": False})
    assert kpi.snapshot(T0 + 5 * S).state == "blocked"  # the last state holds for the gap's hold ...
    assert kpi.snapshot(T0 + 7 * S).state == "unknown"  # ... then nobody knows


def test_off_shift_time_shows_as_off_shift() -> None:
    kpi = engine(calendar=ShiftCalendar("Europe/Berlin", (EARLY,)))
    before = SHIFT_START - 3600 * S
    send(kpi, before, state("idle"))
    assert kpi.snapshot(before + S).state == "off_shift"
    assert kpi.snapshot(SHIFT_START + S).state == "idle"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"window_s": 0}, "window_s"),
        ({"resolution_s": 0}, "resolution_s"),
        ({"window_s": 60, "resolution_s": 120}, "resolution_s"),
        ({"ideal_cycle_s": 0}, "ideal_cycle_s"),
        ({"fault_debounce_s": -1}, "fault_debounce_s"),
        ({"state_gap_hold_s": float("nan")}, "state_gap_hold_s"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KpiConfig(**config)
