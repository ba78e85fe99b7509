"""The fault state machine: debounced fault episodes, MTTR, MTBF and the active fault."""

from __future__ import annotations

import pytest

from plantline.connectors.kpi import ActiveFault, FaultTracker, KpiConfig, KpiEngine
from plantline.connectors.samples import Quality, Sample

S = 1000
T0 = 1_699_999_200_000


def faults(*episodes: tuple[float, float], debounce_s: float = 5.0) -> FaultTracker:
    """A tracker fed with `fault.active` rising and clearing at the given seconds after T0."""
    tracker = FaultTracker(round(debounce_s * S))
    for rise, clear in episodes:
        tracker.set_active(T0 + round(rise * S), True)
        tracker.set_active(T0 + round(clear * S), False)
    return tracker


def stats(tracker: FaultTracker, at_s: float, since_s: float = 0) -> tuple[int, float | None, float | None]:
    s = tracker.stats(T0 + round(since_s * S), T0 + round(at_s * S))
    return s.fault_count, s.mttr_s, s.mtbf_s


def test_no_fault() -> None:
    assert stats(faults(), 3600) == (0, None, None)


def test_one_fault_has_an_mttr_and_no_mtbf() -> None:
    assert stats(faults((100, 160)), 3600) == (1, 60.0, None)


def test_three_faults_by_hand() -> None:
    # Repairs of 60, 30 and 90 s: MTTR 60 s. Up between them 400-160 = 240 s and
    # 1000-430 = 570 s: MTBF 405 s.
    tracker = faults((100, 160), (400, 430), (1000, 1090))
    assert stats(tracker, 3600) == (3, 60.0, 405.0)


def test_chatter_within_the_debounce_is_one_fault() -> None:
    # Clears for 2 s, then for exactly the debounce (inclusive), then for good.
    tracker = faults((100, 101), (103, 104), (109, 160))
    assert stats(tracker, 3600) == (1, 60.0, None)


def test_a_gap_longer_than_the_debounce_is_two_faults() -> None:
    count, mttr, mtbf = stats(faults((100, 110), (115.001, 160)), 3600)
    assert count == 2
    assert mttr == pytest.approx((10 + 44.999) / 2)
    assert mtbf == pytest.approx(5.001)


def test_a_clear_is_pending_until_the_debounce_has_passed() -> None:
    tracker = faults((100, 160))
    assert tracker.active() == ()
    assert stats(tracker, 163) == (1, None, None)  # it may still come back: not repaired yet
    assert stats(tracker, 165.001) == (1, 60.0, None)


def test_a_fault_still_going_counts_but_has_no_repair_time_yet() -> None:
    tracker = faults((100, 160))
    tracker.set_active(T0 + 300 * S, True)
    assert stats(tracker, 400) == (2, 60.0, 140.0)
    assert tracker.active() == (ActiveFault(0, T0 + 300 * S),)


def test_fault_code_alone_and_together_with_active() -> None:
    code_only = FaultTracker(5 * S)
    code_only.set_code(T0 + 100 * S, 1001)
    assert code_only.active_code() == 1001
    code_only.set_code(T0 + 160 * S, 0)
    assert code_only.active_code() is None
    assert stats(code_only, 3600) == (1, 60.0, None)

    both = FaultTracker(5 * S)
    both.set_active(T0 + 100 * S, True)
    both.set_code(T0 + 100 * S + 200, 1002)
    both.set_code(T0 + 120 * S, 1003)  # the machine reports a second cause: still one fault
    assert both.active() == (ActiveFault(1003, T0 + 120 * S),)
    both.set_active(T0 + 150 * S, False)  # active clears first; the code still says faulted
    assert both.active_code() == 1003
    both.set_code(T0 + 160 * S, 0)
    assert stats(both, 3600) == (1, 60.0, None)


def test_bad_readings_neither_start_nor_end_a_fault() -> None:
    tracker = FaultTracker(5 * S)
    tracker.set_active(T0, None)
    assert tracker.active() == ()
    tracker.set_active(T0 + 100 * S, True)
    tracker.set_code(T0 + 120 * S, None)
    tracker.set_active(T0 + 130 * S, None)
    assert tracker.active_code() == 0


def test_scope_counts_faults_that_started_in_it() -> None:
    tracker = faults((100, 160), (400, 430), (1000, 1090))
    # From 300 s: two faults started; repairs that ended: 30 and 90 s; intervals ending in it: both.
    assert stats(tracker, 3600, since_s=300) == (2, 60.0, 405.0)
    # From 500 s: one fault; its interval from the fault before (570 s) ends inside the scope.
    assert stats(tracker, 3600, since_s=500) == (1, 90.0, 570.0)


def test_old_faults_are_forgotten_but_the_last_one_kept_for_mtbf() -> None:
    tracker = FaultTracker(0)
    for i in range(1000):
        tracker.set_active(T0 + i * 100 * S, True)
        tracker.set_active(T0 + (i * 100 + 10) * S, False)
        tracker.evict(T0 + (i * 100 - 1000) * S)
    assert tracker.retained <= 12
    assert stats(tracker, 100_000, since_s=99_850) == (1, 10.0, 90.0)


def test_engine_publishes_faults_per_window() -> None:
    kpi = KpiEngine("filler-1", KpiConfig(window_s=600, resolution_s=10, fault_debounce_s=5))

    def code(t_s: int, value: int) -> None:
        kpi.update(Sample("filler-1", "fault.code", value, Quality.GOOD, T0 + t_s * S))

    code(0, 0)
    code(100, 1001)
    code(160, 0)
    code(2000, 1004)
    code(2060, 0)
    code(2500, 1003)
    snap = kpi.snapshot(T0 + 2530 * S)
    assert snap.window.start_ms == T0 + 1930 * S
    assert (snap.fault_count, snap.mttr_s, snap.mtbf_s) == (2, 60.0, (1840 + 440) / 2)
    assert (snap.active_fault_code, snap.active_faults) == (1003, (ActiveFault(1003, T0 + 2500 * S),))
