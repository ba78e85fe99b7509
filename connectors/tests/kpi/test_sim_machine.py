"""The KPI engine fed by the simulated filler for twelve hours: plausible, and true to the model."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import time

import pytest

from plantline.connectors.kpi import KpiConfig, KpiEngine, KpiFigures, Shift, ShiftCalendar
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sim.machine import MachineModel

pytestmark = pytest.mark.slow

START_S = 1_700_000_000  # 2023-11-14 22:13:20 UTC
HOURS = 12
IDEAL_CYCLE_S = 2.0
CALENDAR = ShiftCalendar(
    "Europe/Berlin",
    (Shift("early", time(6), time(14)), Shift("late", time(14), time(22)), Shift("night", time(22), time(6))),
)


@dataclass
class Run:
    whole: KpiEngine  # a window as long as the run, no calendar
    rolling: KpiEngine  # 15 minutes, with shifts
    end_ms: int
    state_s: dict[str, int]  # the model's own time per reported state
    counts: dict[str, int]  # the model's counters, first to last
    fault_durations_s: list[int]
    hourly: list[tuple[KpiFigures, KpiFigures | None]]


@pytest.fixture(scope="module")
def run() -> Run:
    model = MachineModel(seed=7, ideal_cycle_s=IDEAL_CYCLE_S, now=START_S)
    whole = KpiEngine("filler-1", KpiConfig(window_s=HOURS * 3600, resolution_s=60))
    rolling = KpiEngine("filler-1", KpiConfig(window_s=900, resolution_s=5, calendar=CALENDAR))
    state_s: dict[str, int] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    faults: list[int] = []
    fault_since: int | None = None
    hourly = []
    previous_state = ""
    for second in range(HOURS * 3600 + 1):
        values = model.step(START_S + second)
        ts = (START_S + second) * 1000
        for signal, value in values.items():
            sample = Sample("filler-1", signal, value, Quality.GOOD, ts)
            whole.update(sample)
            rolling.update(sample)
        if previous_state:
            state_s[previous_state] = state_s.get(previous_state, 0) + 1
        previous_state = next(s for s in ("run", "idle", "blocked", "starved", "planned_stop") if values[f"state.{s}"])
        for counter in ("counter.good", "counter.reject", "counter.total"):
            value = values[counter]
            assert isinstance(value, int)
            first.setdefault(counter, value)
            last[counter] = value
        if values["fault.active"] and fault_since is None:
            fault_since = second
        elif not values["fault.active"] and fault_since is not None:
            faults.append(second - fault_since)
            fault_since = None
        if second % 3600 == 0 and second:
            snap = rolling.snapshot(ts)
            hourly.append((snap.window, snap.shift))
    counts = {c: last[c] - first[c] for c in first}
    return Run(whole, rolling, (START_S + HOURS * 3600) * 1000, state_s, counts, faults, hourly)


def test_twelve_hours_give_a_plausible_oee_that_is_a_times_p_times_q(run: Run) -> None:
    snap = run.whole.snapshot(run.end_ms)
    a, p, q, oee = snap.availability, snap.performance, snap.quality, snap.oee
    assert a is not None
    assert p is not None
    assert q is not None
    assert oee == a * p * q
    assert 0.55 < a < 0.95
    assert 0.80 < p < 1.0  # jitter and micro-stops, never faster than ideal
    assert 0.95 < q < 1.0
    assert 0.40 < oee < 0.90
    assert snap.warnings == frozenset()
    assert snap.samples.out_of_order == snap.samples.late == snap.samples.invalid == 0


def test_the_engine_agrees_with_the_model(run: Run) -> None:
    w = run.whole.snapshot(run.end_ms).window
    assert w.start_ms == START_S * 1000
    assert w.run_s == run.state_s["run"]
    assert w.idle_s == run.state_s["idle"]  # faults are reported as idle
    assert (w.blocked_s, w.starved_s) == (run.state_s["blocked"], run.state_s["starved"])
    assert w.planned_stop_s == run.state_s["planned_stop"]
    assert (w.good, w.reject, w.total) == (
        run.counts["counter.good"],
        run.counts["counter.reject"],
        run.counts["counter.total"],
    )
    assert w.performance == pytest.approx(w.total * IDEAL_CYCLE_S / w.run_s)
    # Every fault is one episode (a run of at least 20 s separates faults; the debounce is 5 s).
    assert len(run.fault_durations_s) >= 10
    assert w.fault_count == len(run.fault_durations_s)
    assert w.mttr_s == pytest.approx(sum(run.fault_durations_s) / len(run.fault_durations_s))
    assert w.mtbf_s is not None
    assert w.mttr_s is not None
    assert w.mtbf_s > w.mttr_s


def test_rolling_window_and_shifts_stay_consistent(run: Run) -> None:
    assert len(run.hourly) == HOURS
    for window, shift in run.hourly:
        assert window.end_ms - window.start_ms == 900_000  # whole buckets, on the hour
        for figures in (window, shift):
            assert figures is not None  # three shifts cover the day
            a, p, q = figures.availability, figures.performance, figures.quality
            if a is not None and p is not None and q is not None:
                assert figures.oee == a * p * q
            assert figures.performance is None or figures.performance <= 1.0
    names = [shift.shift_name for _, shift in run.hourly if shift is not None]
    assert [name for name, _ in itertools.groupby(names)] == ["night", "early"]  # 23:13 to 11:13 CET
    snap = run.rolling.snapshot(run.end_ms)
    assert snap.shift is not None
    assert snap.previous_shift is not None
    night, early = snap.previous_shift, snap.shift
    assert (night.shift_name, early.shift_name) == ("night", "early")
    assert night.start_ms == START_S * 1000  # the engine started 46 min 40 s into the night
    assert (night.end_ms, early.start_ms) == (early.start_ms, START_S * 1000 + (6 * 3600 + 46 * 60 + 40) * 1000)
    # The two shifts split the twelve hours between them: time, parts and faults.
    whole = run.whole.snapshot(run.end_ms).window
    assert night.run_s + early.run_s == whole.run_s
    assert night.planned_s + early.planned_s == whole.planned_s
    assert night.total + early.total == whole.total
    assert night.fault_count + early.fault_count == whole.fault_count
