"""The historian's KPIs are the edge engine's: minutes that add up to the engine's own window figures."""

from __future__ import annotations

import pytest

from plantline.connectors.config import KpiSettings, ShiftCalendarSettings, ShiftSettings
from plantline.connectors.kpi import KpiEngine
from plantline.connectors.kpi.settings import engine_config
from plantline.connectors.samples import Quality, Sample, Value
from plantline.historian.kpi import KPI_SIGNALS, MINUTE_MS, combine, replay_minutes, replay_window, window_start
from plantline_testing.machines import T0, simulated_samples


def simulate(seconds: int, *, seed: int = 3) -> list[Sample]:
    return list(simulated_samples("filler", seconds, seed=seed, signals=KPI_SIGNALS))


@pytest.mark.parametrize(
    "shifts",
    [None, ShiftCalendarSettings(timezone="UTC", shifts=[ShiftSettings(name="s", start="00:10", end="00:40")])],
)
def test_minutes_add_up_to_the_engines_window(shifts: ShiftCalendarSettings | None) -> None:
    config = engine_config(KpiSettings(window_s=900, ideal_cycle_s=0.5), shifts)
    samples = simulate(3600)
    at = T0 + 50 * MINUTE_MS  # a minute boundary; the window is [at - 15 min, at]
    edge = KpiEngine("filler", config)
    for sample in samples:
        if sample.source_ts_ms <= at:
            edge.update(sample)
    expected = edge.snapshot(at)
    assert expected.total > 0
    assert expected.oee is not None
    start = window_start(config, at)
    replay = replay_minutes("filler", config, [], samples, start_ms=T0)
    inside = [m for m in replay.minutes if start <= m.start_ms < at]
    assert len(inside) == 15
    got = combine(inside).figures()
    assert (got.availability, got.performance, got.quality, got.oee) == (
        expected.availability,
        expected.performance,
        expected.quality,
        expected.oee,
    )


def test_a_replay_from_a_lead_in_equals_the_engine_that_saw_everything() -> None:
    config = engine_config(KpiSettings(window_s=900, ideal_cycle_s=0.5), None)
    samples = simulate(2400)
    at = T0 + 35 * MINUTE_MS + 1234
    full = replay_window("filler", config, [], samples, at_ms=at)
    start = window_start(config, at) - MINUTE_MS
    last: dict[str, Sample] = {}
    for sample in samples:
        if sample.source_ts_ms < start:
            last[sample.signal] = sample
    recent = [s for s in samples if s.source_ts_ms >= start]
    partial = replay_window("filler", config, last.values(), recent, at_ms=at)
    assert (partial.oee, partial.availability, partial.performance, partial.quality) == (
        full.oee,
        full.availability,
        full.performance,
        full.quality,
    )
    assert partial.window.start_ms == full.window.start_ms


def test_states_and_faults_follow_the_signals() -> None:
    config = engine_config(KpiSettings(fault_debounce_s=5), None)

    def s(signal: str, value: Value, t: int) -> Sample:
        return Sample("m", signal, value, Quality.GOOD, T0 + t * 1000)

    samples = [
        s("state.run", True, 0), s("fault.active", False, 0),
        s("state.run", False, 10), s("state.idle", True, 10), s("fault.active", True, 10), s("fault.code", 7, 10),
        s("fault.active", False, 20), s("fault.active", True, 22),  # chatter within the debounce: one fault
        s("fault.active", False, 30), s("fault.code", 0, 30), s("state.idle", False, 30), s("state.run", True, 30),
        s("state.run", True, 90),
    ]  # fmt: skip
    replay = replay_minutes("m", config, [], samples, start_ms=T0)
    assert replay.states == ((T0, "run"), (T0 + 10_000, "idle"), (T0 + 30_000, "run"))
    assert [(f.started_ms, f.ended_ms, f.code) for f in replay.faults] == [(T0 + 10_000, T0 + 30_000, 7)]
    (minute,) = replay.minutes
    assert (minute.run_ms, minute.idle_ms) == (40_000, 20_000)
