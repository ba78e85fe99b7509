"""A synthetic source: samples at a chosen rate with no PLC behind it (for benchmarks and tests).

It is a `SourceBase` whose connection always succeeds and is never lost; every sample of
signal i carries a running counter as its value, so a receiver can tell exactly which ones
arrived. Unlike a protocol source it does not buffer: `batches()` makes each chunk when the
consumer asks for it, so `produced` counts exactly what was handed over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.base import SourceBase


class SyntheticSource(SourceBase):
    """Yields `rate` samples per second (0: as fast as the consumer takes them), `limit` in all."""

    def __init__(self, device_id: str, signals: Sequence[str], *, rate: float, limit: int, chunk: int = 100) -> None:
        super().__init__("synthetic", device_id, "(synthetic)")
        self.signals = list(signals)
        self.rate = rate
        self.limit = limit
        self.chunk = chunk
        self.produced = 0
        self.slowdowns: list[float] = []  # every factor the source was asked to slow down by, in order

    async def _connect(self) -> None:
        """Nothing to connect to: it succeeds at once."""

    async def _serve(self) -> str:
        await asyncio.Event().wait()  # never lost: only leaving the `async with` ends it
        return "closed"

    async def _disconnect(self) -> None:
        """Nothing to let go of."""

    def _slowdown_changed(self) -> None:
        self.slowdowns.append(self.slowdown)  # recorded for tests; the rate stays what it is

    async def batches(self) -> AsyncIterator[list[Sample]]:
        """Yield `chunk` samples at a time at `rate` (read again after every chunk, so it may change) up to `limit`."""
        if await self.wait_for_state(SourceState.CONNECTED, SourceState.CLOSED) is SourceState.CLOSED:
            return
        n_signals = len(self.signals)
        due = time.monotonic()
        while self.state is SourceState.CONNECTED:
            if self.produced >= self.limit:
                await asyncio.sleep(0.01)  # `limit` may be raised later
                due = time.monotonic()
                continue
            first = self.produced
            chunk = min(self.chunk, self.limit - first)
            now_ms = int(time.time() * 1000)
            signals, device, good = self.signals, self.device_id, Quality.GOOD
            batch = [Sample(device, signals[n % n_signals], n, good, now_ms) for n in range(first, first + chunk)]
            self.produced += chunk
            self._counters.samples += chunk
            yield batch
            if self.rate > 0:
                due = max(due + chunk / self.rate, time.monotonic() - 1.0)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield the samples of `batches()` one by one.

        `SourceBase` does the same; it is spelled out here because the pipeline bench runs this
        source under older connector code too (`--against`), whose runtime read `samples()`.
        """
        async for batch in self.batches():
            for sample in batch:
                yield sample
