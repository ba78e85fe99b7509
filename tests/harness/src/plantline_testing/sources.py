"""Helpers for tests of protocol sources: devices to read, what `batches()` yields, waits, outages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from plantline.connectors.config import Device, Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sources import Source, SourceState

STEP_S = 20.0  # a deadline per wait


def plc_device(protocol: str, endpoint: str, tags: list[dict[str, Any]], *, interval_ms: int = 50) -> Device:
    """Return the Device `filler-1` of `protocol` polling `tags` every `interval_ms`.

    It is built with `model_construct`: the tags are validated one by one, the device as a whole is not.
    """
    return Device.model_construct(
        id="filler-1",
        protocol=protocol,
        endpoint=endpoint,
        sampling_interval_ms=interval_ms,
        tags=[Tag.model_validate(tag) for tag in tags],
    )


@dataclass(frozen=True)
class Received:
    """One sample as it came out of `batches()`, with the source's state and the wall clock then."""

    sample: Sample
    state: SourceState
    at_ms: int


class Recorder:
    """Drains a source's `batches()` into `received`, sample by sample, while the block runs."""

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
        async for batch in self.source.batches():
            at_ms = int(time.time() * 1000)
            self.received += [Received(sample, self.source.state, at_ms) for sample in batch]

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


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Outage:
    """A peer lost and let back, as a source saw it: the samples received before, and when (ms)."""

    before: int
    lost_ms: int
    back_ms: int

    async def check_followed(self, source: Source, recorder: Recorder, signals: set[str], counter: str, n: int) -> None:
        """Assert the source came back: every signal and `n` of `counter` reported since, none made up.

        It waits for the source to be CONNECTED and to report, then asserts one reconnect, no sample
        read while the peer was away, and GOOD samples only.
        """
        await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), STEP_S)
        await until(lambda: recorder.signals(self.before) >= signals)
        await until(lambda: sum(r.sample.signal == counter for r in recorder.received[self.before :]) >= n)
        assert source.counters.reconnects == 1
        # A poll that completed in the millisecond the loss was seen is older than the loss.
        assert not [r for r in recorder.received if self.lost_ms < r.sample.source_ts_ms < self.back_ms]
        assert all(r.sample.quality is Quality.GOOD for r in recorder.received)


async def sit_out_outage(source: Source, recorder: Recorder) -> Outage:
    """Return the outage once the source has seen its peer go and failed to reconnect twice more.

    The test lets the peer back right after, so `back_ms` is now.
    """
    await asyncio.wait_for(source.wait_for_state(SourceState.BACKOFF), STEP_S)
    lost_ms, before = _now_ms(), len(recorder.received)
    failures = source.counters.connect_failures
    await until(lambda: source.counters.connect_failures >= failures + 2)
    return Outage(before, lost_ms, _now_ms())
