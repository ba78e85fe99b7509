"""Capped, jittered exponential backoff, with a seeded random generator."""

from __future__ import annotations

import random
from typing import Any

import pytest

from plantline.connectors.backoff import Backoff


def test_delays_grow_by_the_multiplier_within_the_jitter_band() -> None:
    backoff = Backoff(initial=0.5, cap=100.0, multiplier=2.0, jitter=0.25, rng=random.Random(1))
    for n in range(8):
        base = 0.5 * 2.0**n
        delay = backoff.next_delay()
        assert base * 0.75 <= delay <= base, (n, delay)
    assert backoff.attempt == 8


def test_delays_never_exceed_the_cap() -> None:
    backoff = Backoff(initial=1.0, cap=30.0, multiplier=3.0, jitter=0.5, rng=random.Random(2))
    delays = [backoff.next_delay() for _ in range(2000)]  # a very long outage: no overflow either
    assert max(delays) <= 30.0
    assert min(delays[10:]) >= 15.0  # capped base 30, at most half taken off


def test_no_jitter_is_exactly_exponential() -> None:
    backoff = Backoff(initial=0.1, cap=1.0, multiplier=2.0, jitter=0.0, rng=random.Random(3))
    assert [backoff.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_spreads_over_the_whole_range() -> None:
    backoff = Backoff(initial=10.0, cap=10.0, multiplier=2.0, jitter=1.0, rng=random.Random(4))
    delays = [backoff.next_delay() for _ in range(500)]
    assert 0.0 <= min(delays) < 1.0
    assert 9.0 < max(delays) <= 10.0


def test_reset_starts_again_from_initial() -> None:
    backoff = Backoff(initial=0.5, cap=60.0, multiplier=2.0, jitter=0.2, rng=random.Random(5))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert 0.4 <= backoff.next_delay() <= 0.5
    assert 0.8 <= backoff.next_delay() <= 1.0


def test_same_seed_same_delays() -> None:
    def delays(seed: int) -> list[float]:
        backoff = Backoff(rng=random.Random(seed))
        return [backoff.next_delay() for _ in range(10)]

    assert delays(42) == delays(42)
    assert delays(42) != delays(43)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0.0}, "initial"),
        ({"initial": 5.0, "cap": 1.0}, "cap"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
