"""Capped, jittered exponential backoff: the delay between reconnection attempts of a connection."""

from __future__ import annotations

import random


class Backoff:
    """Delays that grow by `multiplier` from `initial` up to `cap` seconds, each shortened by jitter.

    The n-th delay (n = 0, 1, ...) is drawn from `[base * (1 - jitter), base]` where
    `base = min(cap, initial * multiplier**n)`: a delay never exceeds `cap`, and `jitter`
    (0 = none, 1 = "full jitter") spreads many clients that lost the same server so they do
    not all come back in the same instant. Pure: the only randomness is `rng`, so a seeded
    `random.Random` gives a reproducible sequence.
    """

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 30.0,
        multiplier: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0:
            raise ValueError(f"initial must be > 0, got {initial!r}")
        if cap < initial:
            raise ValueError(f"cap ({cap!r}) must be >= initial ({initial!r})")
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")
        self.initial = initial
        self.cap = cap
        self.multiplier = multiplier
        self.jitter = jitter
        # Not for cryptography: only spreads retries in time.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._attempt = 0
        self._base = initial

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        """Return the delay before the next attempt, in seconds, and count the attempt."""
        base = self._base
        # Grown step by step and capped each time, so a long outage never overflows the float.
        self._base = min(self.cap, base * self.multiplier)
        self._attempt += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from `initial`: call it once a connection is established."""
        self._attempt = 0
        self._base = self.initial
