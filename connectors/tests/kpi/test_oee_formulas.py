"""The OEE formulas against hand-computed results, and the counter rules (resets, rollovers)."""

from __future__ import annotations

import pytest

from plantline.connectors.kpi.oee import (
    CounterEvent,
    CounterRules,
    KpiWarning,
    availability,
    compute_oee,
    oee,
    performance,
    quality,
)

# The OEE literature's worked example (oee.com, "OEE calculation"), in minutes, seconds and parts.
SHIFT_MIN = 8 * 60
BREAKS_MIN = 2 * 15 + 30  # two short breaks and a meal
DOWN_MIN = 47
IDEAL_CYCLE_S = 1.0
TOTAL = 19_271
REJECT = 423


def test_the_textbook_example_from_the_definitions() -> None:
    planned_min = SHIFT_MIN - BREAKS_MIN
    run_min = planned_min - DOWN_MIN
    good = TOTAL - REJECT
    assert (planned_min, run_min, good) == (420, 373, 18_848)
    a = run_min / planned_min
    p = (IDEAL_CYCLE_S * TOTAL) / (run_min * 60)
    q = good / TOTAL
    assert round(a, 4) == 0.8881
    assert round(p, 4) == 0.8611
    assert round(q, 4) == 0.9780
    assert round(a * p * q, 4) == 0.7479
    # OEE is also fully productive time / planned production time: good parts at the ideal rate.
    assert a * p * q == pytest.approx(good * IDEAL_CYCLE_S / (planned_min * 60), rel=1e-12)

    figures = compute_oee(
        run_s=run_min * 60,
        planned_s=planned_min * 60,
        total=TOTAL,
        good=good,
        ideal_work_s=IDEAL_CYCLE_S * TOTAL,
    )
    assert figures.availability == pytest.approx(a, abs=1e-12)
    assert figures.performance == pytest.approx(p, abs=1e-12)
    assert figures.quality == pytest.approx(q, abs=1e-12)
    assert figures.oee == pytest.approx(0.7479, abs=1e-4)
    assert figures.warnings == frozenset()


@pytest.mark.parametrize(
    ("run_s", "planned_s", "expected"),
    [(300.0, 400.0, 0.75), (400.0, 400.0, 1.0), (0.0, 400.0, 0.0), (0.0, 0.0, None)],
)
def test_availability(run_s: float, planned_s: float, expected: float | None) -> None:
    assert availability(run_s, planned_s) == expected


@pytest.mark.parametrize(
    ("ideal_work_s", "run_s", "expected"),
    # 90 parts at 2 s ideal in 200 s of running: 180 / 200.
    [(90 * 2.0, 200.0, 0.9), (0.0, 200.0, 0.0), (180.0, 0.0, None), (250.0, 200.0, 1.25)],
)
def test_performance(ideal_work_s: float, run_s: float, expected: float | None) -> None:
    assert performance(ideal_work_s, run_s) == expected


@pytest.mark.parametrize(("good", "total", "expected"), [(95, 100, 0.95), (0, 10, 0.0), (0, 0, None)])
def test_quality(good: int, total: int, expected: float | None) -> None:
    assert quality(good, total) == expected


def test_oee_is_the_product_and_a_zero_factor_wins_over_an_undefined_one() -> None:
    assert oee(0.5, 0.8, 0.9) == pytest.approx(0.36)
    assert oee(None, 0.8, 0.9) is None
    assert oee(0.5, None, 0.9) is None
    assert oee(0.0, None, None) == 0.0  # planned time, nothing run: zero, not unknown
    assert oee(0.5, 0.0, None) == 0.0  # ran, made nothing


def test_a_small_case_by_hand() -> None:
    # 10 min planned, 8 min running, 200 parts of which 190 good, ideal cycle 2 s:
    # A = 480/600 = 0.8, P = 400/480 = 0.8333.., Q = 0.95, OEE = 0.8 * 0.8333 * 0.95 = 0.6333..
    f = compute_oee(run_s=480, planned_s=600, total=200, good=190, ideal_work_s=400)
    assert (f.availability, f.quality) == (0.8, 0.95)
    assert f.performance == pytest.approx(5 / 6)
    assert f.oee == pytest.approx(0.8 * 5 / 6 * 0.95)
    assert f.oee == pytest.approx(190 * 2 / 600)


def test_edge_cases_are_none_and_say_why() -> None:
    nothing = compute_oee(run_s=0, planned_s=0, total=0, good=0, ideal_work_s=0)
    assert (nothing.availability, nothing.performance, nothing.quality, nothing.oee) == (None, None, None, None)
    assert nothing.warnings == frozenset()

    idle = compute_oee(run_s=0, planned_s=600, total=0, good=0, ideal_work_s=0)
    assert (idle.availability, idle.performance, idle.quality, idle.oee) == (0.0, None, None, 0.0)

    counted_not_run = compute_oee(run_s=0, planned_s=600, total=5, good=5, ideal_work_s=5)
    assert counted_not_run.performance is None
    assert KpiWarning.COUNTS_WITHOUT_RUN_TIME in counted_not_run.warnings

    too_fast = compute_oee(run_s=100, planned_s=100, total=60, good=60, ideal_work_s=120)
    assert too_fast.performance == 1.2
    assert too_fast.warnings == {KpiWarning.IDEAL_CYCLE_SUSPECT}

    no_ideal = compute_oee(run_s=100, planned_s=100, total=60, good=60, ideal_work_s=0, unvalued=60)
    assert no_ideal.performance is None
    assert no_ideal.oee is None
    assert no_ideal.warnings == {KpiWarning.NO_IDEAL_CYCLE}

    skewed = compute_oee(run_s=100, planned_s=100, total=60, good=61, ideal_work_s=60)
    assert skewed.quality == 1.0
    assert skewed.warnings == {KpiWarning.COUNTS_INCONSISTENT}

    unknown_good = compute_oee(run_s=100, planned_s=100, total=60, good=None, ideal_work_s=60)
    assert unknown_good.quality is None
    assert unknown_good.warnings == {KpiWarning.NO_QUALITY_COUNTS}


@pytest.mark.parametrize(
    ("bits", "previous", "value", "parts", "event"),
    [
        (32, 100, 105, 5, CounterEvent.NONE),
        (32, 100, 100, 0, CounterEvent.NONE),
        (16, 65_530, 4, 10, CounterEvent.ROLLOVER),  # 65530 -> 65535 is 5, then 0 .. 4 is 5 more
        (16, 65_535, 0, 1, CounterEvent.ROLLOVER),
        (32, 2**32 - 3, 7, 10, CounterEvent.ROLLOVER),
        (32, 123_456, 3, 3, CounterEvent.RESET),  # a PLC restart: counted up from zero since
        (32, 123_456, 0, 0, CounterEvent.RESET),
        (16, 30_000, 12, 12, CounterEvent.RESET),  # far from the modulus: a reset, not a rollover
        (32, 5_000, 3_000, 0, CounterEvent.DISCONTINUITY),  # a drop, not to near zero
        (32, 45, 44, 0, CounterEvent.DISCONTINUITY),  # a glitch, not a reset to 44
    ],
)
def test_counter_increments(bits: int, previous: int, value: int, parts: int, event: CounterEvent) -> None:
    assert CounterRules(bits=bits).increment(previous, value) == (parts, event)


def test_a_signed_counter_counts_on_through_its_wrap() -> None:
    rules = CounterRules(bits=32)
    # A DINT wraps from 2^31 - 1 to -2^31: modulo 2^32 that is just the next value ...
    before, after = rules.normalise(2**31 - 2), rules.normalise(-(2**31) + 1)
    assert rules.increment(before, after) == (3, CounterEvent.NONE)
    # ... and its way back up through -1 to 0 is the rollover.
    assert rules.increment(rules.normalise(-2), rules.normalise(1)) == (3, CounterEvent.ROLLOVER)


def test_counter_rules_are_configurable_and_checked() -> None:
    rules = CounterRules(bits=16, rollover_margin=100, reset_max=10)
    assert rules.increment(65_000, 5) == (5, CounterEvent.RESET)  # not near enough to the max to roll over
    assert rules.increment(65_000, 50) == (0, CounterEvent.DISCONTINUITY)  # neither
    assert rules.increment(65_500, 5) == (41, CounterEvent.ROLLOVER)
    assert rules.increment(500, 11) == (0, CounterEvent.DISCONTINUITY)  # above reset_max
    with pytest.raises(ValueError, match="counter_bits"):
        CounterRules(bits=4)
    with pytest.raises(ValueError, match="rollover_margin"):
        CounterRules(bits=16, rollover_margin=40_000)
    with pytest.raises(ValueError, match="reset_max"):
        CounterRules(reset_max=-1)
