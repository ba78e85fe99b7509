"""A synthetic source: samples at a chosen rate with no PLC behind it (for benchmarks and tests).

It implements the connector's Source protocol; every sample of signal i carries a running
counter as its value, so a receiver can tell exactly which ones arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sources import SourceCounters, SourceState


class SyntheticSource:
    """Yields `rate` samples per second (0: as fast as the consumer takes them), `limit` in all."""

    def __init__(self, device_id: str, signals: Sequence[str], *, rate: float, limit: int, chunk: int = 100) -> None:
        self._device_id = device_id
        self.signals = list(signals)
        self.rate = rate
        self.limit = limit
        self.chunk = chunk
        self.produced = 0
        self.slowdowns: list[float] = []
        self._state = SourceState.DISCONNECTED
        self._changed = asyncio.Event()
        self._counters = SourceCounters()

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def counters(self) -> SourceCounters:
        return self._counters

    def _set(self, state: SourceState) -> None:
        self._state = state
        self._changed.set()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._set(SourceState.CONNECTED)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._set(SourceState.CLOSED)

    async def wait_for_state(self, *states: SourceState) -> SourceState:
        while self._state not in states:
            await self._changed.wait()
        return self._state

    def set_slowdown(self, factor: float) -> None:
        if not self.slowdowns or self.slowdowns[-1] != factor:
            self.slowdowns.append(factor)

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield samples at `rate` (read again after every chunk, so it may change) up to `limit`."""
        n_signals = len(self.signals)
        due = time.monotonic()
        while self._state is SourceState.CONNECTED:
            if self.produced >= self.limit:
                await asyncio.sleep(0.01)  # `limit` may be raised later
                due = time.monotonic()
                continue
            chunk = min(self.chunk, self.limit - self.produced)
            for _ in range(chunk):
                n = self.produced
                self.produced += 1
                self._counters.samples += 1
                yield Sample(self._device_id, self.signals[n % n_signals], n, Quality.GOOD, int(time.time() * 1000))
            if self.rate > 0:
                due = max(due + chunk / self.rate, time.monotonic() - 1.0)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)
