"""The historian's KPIs are the edge engine's: minutes that add up to the engine's own window figures."""

from __future__ import annotations

import random

import pytest

from plantline.connectors.config import BreakSettings, KpiSettings, ShiftCalendarSettings, ShiftSettings
from plantline.connectors.kpi import KpiEngine, KpiWarning
from plantline.connectors.kpi.settings import engine_config
from plantline.connectors.samples import Quality, Sample, Value
from plantline.historian.kpi import (
    CHECKPOINT_MS,
    KPI_SIGNALS,
    MINUTE_MS,
    combine,
    replay_checkpoints,
    replay_minutes,
    replay_window,
    resume_window,
    window_start,
)
from plantline_testing.machines import T0, roughened, simulated_samples


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


ROUGH_CALENDAR = ShiftCalendarSettings(
    timezone="UTC",
    shifts=[
        ShiftSettings(name="a", start="00:00", end="00:40", breaks=[BreakSettings(start="00:20", end="00:23")]),
        ShiftSettings(name="b", start="00:40", end="01:30"),
    ],
)  # an hour and a half of shifts, a break, then off shift


def rough(seconds: int, *, seed: int) -> list[Sample]:
    # Counters that roll over at 16 bits, and now and then a bad reading.
    return list(roughened(simulate(seconds, seed=seed), counter_offset=65_000, bits=16, bad_every=53))


def newest_at_or_before(checkpoints: list[tuple[int, bytes]], t: int) -> tuple[int, bytes]:
    return max((c for c in checkpoints if c[0] <= t), key=lambda c: c[0])


@pytest.mark.parametrize("seed", [3, 5, 8])
def test_a_checkpoint_and_the_samples_after_it_are_the_engine_fed_every_sample(seed: int) -> None:
    config = engine_config(KpiSettings(window_s=900, ideal_cycle_s=0.5, counter_bits=16), ROUGH_CALENDAR)
    samples = rough(7200, seed=seed)
    checkpoints = replay_checkpoints(KpiEngine("filler", config), samples, after_ms=T0 - MINUTE_MS)
    slots = sorted({s.source_ts_ms - s.source_ts_ms % CHECKPOINT_MS for s in samples})
    assert [t for t, _ in checkpoints] == slots[1:]  # one every CHECKPOINT_MS; a stretch without a sample adds none
    assert len(slots) < 7200_000 // CHECKPOINT_MS  # there are such stretches
    rng = random.Random(seed)
    times = []
    for at in (rng.randrange(T0 + MINUTE_MS, T0 + 7300 * 1000) for _ in range(60)):
        times.append((at - rng.choice([0, 0, 0, 1, 45_000]), at))  # `until`: the data the edge had, or a little less
    # The full replay: one engine fed every sample in the replays' order, as far as each `until`.
    fed = iter(sorted(samples, key=lambda s: (s.source_ts_ms, s.signal)))
    edge, seen = KpiEngine("filler", config), []
    pending = next(fed, None)
    for until, at in sorted(times):
        while pending is not None and pending.source_ts_ms <= until:
            edge.update(pending)
            pending = next(fed, None)
        since, state = newest_at_or_before(checkpoints, until)
        tail = [s for s in samples if since <= s.source_ts_ms <= until]
        assert resume_window(config, state, tail, at_ms=at) == edge.snapshot(at), at
        seen.append(edge.snapshot(at))
    # The stream is as rough as meant: rollovers, bad readings, faults, shifts, a break and off-shift time.
    assert any(KpiWarning.COUNTER_ROLLOVER in snap.window.warnings for snap in seen)
    assert any(s.quality is Quality.BAD for s in samples)
    assert any(snap.window.fault_count for snap in seen)
    assert {snap.shift.shift_name for snap in seen if snap.shift} == {"a", "b"}
    assert any(snap.window.calendar_stop_s for snap in seen)


def test_a_chain_carried_over_refreshes_is_the_one_of_a_single_pass() -> None:
    config = engine_config(KpiSettings(window_s=900, ideal_cycle_s=0.5, counter_bits=16), ROUGH_CALENDAR)
    samples = rough(3600, seed=5)
    single = replay_checkpoints(KpiEngine("filler", config), samples, after_ms=T0 - MINUTE_MS)
    carried: list[tuple[int, bytes]] = []
    engine, after = KpiEngine("filler", config), T0 - MINUTE_MS
    for cut in (T0 + 7 * MINUTE_MS + 1, T0 + 25 * MINUTE_MS, T0 + 3600_000 + 1):
        piece = [s for s in samples if after <= s.source_ts_ms < cut]
        carried += replay_checkpoints(engine, piece, after_ms=after)
        after, state = carried[-1]  # the next refresh restores the newest and replays the samples from it
        engine = KpiEngine.restore(config, state)
    assert carried == single


def test_mtbf_counts_the_interval_from_a_fault_before_the_replayed_span() -> None:
    # The edge's engine knows when the last fault ended, however long ago: so does a checkpoint. A
    # replay that starts a minute before the window does not (what /kpi/current answered before).
    config = engine_config(KpiSettings(window_s=900, ideal_cycle_s=0.5), None)

    def s(signal: str, value: Value, t_s: int) -> Sample:
        return Sample("m", signal, value, Quality.GOOD, T0 + t_s * 1000)

    samples = [
        s("state.run", True, 0), s("fault.active", False, 0), s("fault.active", True, 60), s("fault.active", False, 70),
        s("fault.active", True, 1800), s("fault.active", False, 1830), s("state.run", True, 1860),
    ]  # fmt: skip
    at = T0 + 1900 * 1000
    checkpoints = replay_checkpoints(KpiEngine("m", config), samples, after_ms=T0 - MINUTE_MS)
    since, state = newest_at_or_before(checkpoints, at)
    resumed = resume_window(config, state, [x for x in samples if x.source_ts_ms >= since], at_ms=at)
    assert resumed.window.mtbf_s == 1730.0  # from the end of the first fault (70 s) to the second (1800 s)
    assert resumed == replay_window("m", config, [], samples, at_ms=at)
    start = window_start(config, at) - MINUTE_MS
    lead = [x for x in samples if x.source_ts_ms < start and x.signal == "fault.active"][-1:]
    from_the_window = replay_window("m", config, lead, [x for x in samples if x.source_ts_ms >= start], at_ms=at)
    assert from_the_window.window.mtbf_s is None
