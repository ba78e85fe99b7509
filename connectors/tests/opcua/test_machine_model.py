"""The simulated machine: deterministic, and its signals keep a real machine's invariants."""

from __future__ import annotations

import itertools

import pytest

from plantline.connectors.samples import Value, is_canonical_signal
from plantline.connectors.sim.machine import (
    FAULTS,
    SIGNAL_TYPES,
    SIGNALS,
    STATE_SIGNALS,
    MachineModel,
    MachineState,
)

HOURS_12 = 12 * 3600
START = 1_700_000_000.0
History = list[tuple[float, MachineState, dict[str, Value]]]


def number(values: dict[str, Value], signal: str) -> float:
    value = values[signal]
    assert isinstance(value, int | float)
    assert not isinstance(value, bool)
    return value


def run(seed: int, step_s: float, duration_s: float = HOURS_12) -> History:
    model = MachineModel(seed, 2.0, START)
    out = []
    for i in range(1, int(duration_s / step_s) + 1):
        now = START + i * step_s
        values = dict(model.step(now))
        out.append((now, model.state, values))
    return out


@pytest.fixture(scope="module")
def history() -> History:
    return run(seed=11, step_s=1.0)


def test_every_signal_is_canonical_and_typed(history: History) -> None:
    assert all(is_canonical_signal(signal) for signal in SIGNALS)
    for _, _, values in history[:: len(history) // 50]:
        assert list(values) == list(SIGNALS)
        for signal, value in values.items():
            assert type(value) is SIGNAL_TYPES[signal], (signal, value)


def test_same_seed_and_times_give_the_same_history() -> None:
    assert run(seed=3, step_s=0.5, duration_s=3600) == run(seed=3, step_s=0.5, duration_s=3600)
    assert run(seed=3, step_s=0.5, duration_s=3600) != run(seed=4, step_s=0.5, duration_s=3600)


def test_discrete_history_does_not_depend_on_the_step_size() -> None:
    coarse = {now: values for now, _, values in run(seed=5, step_s=2.0, duration_s=7200)}
    fine = {now: values for now, _, values in run(seed=5, step_s=0.5, duration_s=7200)}
    discrete = [s for s in SIGNALS if not s.startswith("process.")]
    for now, values in coarse.items():
        assert {s: values[s] for s in discrete} == {s: fine[now][s] for s in discrete}, now


def test_counters_are_monotonic_and_total_is_good_plus_reject(
    history: History,
) -> None:
    previous = {"counter.good": 0, "counter.reject": 0, "counter.total": 0}
    for _, _, values in history:
        for name, last in previous.items():
            value = values[name]
            assert isinstance(value, int)
            assert value >= last, name
            previous[name] = value
        assert number(values, "counter.total") == number(values, "counter.good") + number(values, "counter.reject")
    assert previous["counter.good"] > 1000  # it does produce
    assert 0 < previous["counter.reject"] < previous["counter.total"] * 0.1  # a few rejects


def test_exactly_one_state_and_fault_active_iff_faulted(
    history: History,
) -> None:
    seen: set[MachineState] = set()
    for _, state, values in history:
        seen.add(state)
        assert sum(values[s] is True for s in STATE_SIGNALS.values()) == 1
        assert values["fault.active"] is (state is MachineState.FAULT)
        assert (values["fault.code"] != 0) is (state is MachineState.FAULT)
        if state is not MachineState.FAULT:
            assert values[STATE_SIGNALS[state]] is True
    assert seen == set(MachineState)  # twelve hours visit every state


def test_counts_only_rise_while_running(history: History) -> None:
    # A count can rise in a step that ends a run, so look at steps that start and end outside
    # RUN (a run lasts 20 s at least, so none fits inside a one-second step).
    for (_, before, previous), (_, after, values) in itertools.pairwise(history):
        if MachineState.RUN not in (before, after):
            assert values["counter.total"] == previous["counter.total"]
            assert values["rate.actual"] == 0.0


def test_cycle_time_jitters_around_the_ideal(history: History) -> None:
    cycles = [number(values, "cycle.time") for _, _, values in history if values["state.run"]]
    assert all(c >= 2.0 for c in cycles)  # never faster than ideal
    assert len(set(cycles)) > 100  # it varies
    typical = sorted(cycles)[len(cycles) // 2]
    assert 2.0 < typical < 2.2
    assert all(values["cycle.ideal"] == 2.0 for _, _, values in history)


def test_rate_follows_the_cycle_time(history: History) -> None:
    for _, _, values in history:
        if values["state.run"]:
            assert number(values, "rate.actual") == pytest.approx(60.0 / number(values, "cycle.time"), abs=0.01)


def test_fault_codes_come_from_the_table(history: History) -> None:
    codes = {values["fault.code"] for _, _, values in history} - {0}
    assert codes
    assert codes <= {fault.code for fault in FAULTS}


def test_process_values_stay_in_their_ranges(history: History) -> None:
    for _, _, values in history:
        assert 0.0 <= number(values, "process.temperature") <= 150.0
        assert 0.0 <= number(values, "process.pressure") <= 10.0
        assert 0.0 <= number(values, "process.fill_level") <= 100.0


def test_time_must_not_go_backwards() -> None:
    model = MachineModel(1, 2.0, START)
    model.step(START + 10)
    with pytest.raises(ValueError, match="backwards"):
        model.step(START + 5)


def test_ideal_cycle_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ideal_cycle_s"):
        MachineModel(1, 0.0, START)
