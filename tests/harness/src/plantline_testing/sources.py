"""Helpers for tests of protocol sources: record what `samples()` yields, wait for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from plantline.connectors.samples import Sample
from plantline.connectors.sources import Source, SourceState

STEP_S = 20.0  # a deadline per wait


@dataclass(frozen=True)
class Received:
    """One sample as it came out of `samples()`, with the source's state and the wall clock then."""

    sample: Sample
    state: SourceState
    at_ms: int


class Recorder:
    """Drains a source's `samples()` into `received` while the block runs."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.received: list[Received] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        async for sample in self.source.samples():
            self.received.append(Received(sample, self.source.state, int(time.time() * 1000)))

    def latest(self) -> dict[str, Sample]:
        """The last sample of every signal received so far."""
        return {r.sample.signal: r.sample for r in self.received}

    def signals(self, since: int = 0) -> set[str]:
        """The signals received from position `since` on."""
        return {r.sample.signal for r in self.received[since:]}


async def until(condition: Callable[[], bool], timeout_s: float = STEP_S, what: str = "condition") -> None:
    """Return once `condition()` holds; raise TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.01)
