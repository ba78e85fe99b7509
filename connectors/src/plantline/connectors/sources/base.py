"""What every source shares: `SourceBase`, the connection task and the Source protocol's plumbing.

    class OpcUaSource(SourceBase):   # implements _connect, _serve and _disconnect
        ...

    async with OpcUaSource(device) as source:
        async for batch in source.batches():
            ...

Connection. Entering starts one task (`<protocol>-source:<id>`) that connects, serves the
connection until it is lost, and after any failure or loss backs off with capped jittered
exponential backoff and starts over (`SourceState`: DISCONNECTED -> CONNECTING -> CONNECTED,
BACKOFF between attempts, CLOSED at exit); a device that is down at startup is retried the same
way. A protocol says how to connect (`_connect`, which raises on failure), what to do while
connected (`_serve`, which returns or raises once the connection is lost) and how to let go of
a connection (`_disconnect`, called after every attempt that failed, every loss, and at exit).
The back-off follows the device's `reconnect` settings unless a `Backoff` is given.

Refusals. A protocol that can tell a refusal from an outage (`_refusal_of`: a certificate the
device or the connector does not trust) makes `refusal` say why; its one-line message is logged
as an error when it first happens or changes (then at debug), and `refusal` is cleared by the
next connection. Attempts go on meanwhile, so a fixed trust list is picked up without a restart.

Samples. A protocol hands samples to `_emit` (one) or `_emit_many` (what one read or one
notification gave), which wait while the bounded buffer that `batches()` reads is full
(`counters.backpressure_waits`) rather than dropping any. `batches()` hands over everything
buffered at once, so the consumer's cost is per batch, not per sample. A problem
of one tag is logged once at WARNING and then at DEBUG (`_log_once`), so a tag that stays
broken does not flood the log across polls and reconnections.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Self, TypedDict

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import ReconnectSettings
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sources import Refusal, SourceCounters, SourceState

_log = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED = 10_000


class SourceOptions(TypedDict, total=False):
    """What every source takes besides its device: a clock, a backoff and the size of its buffer."""

    clock: Callable[[], float]  # the samples' timestamps where the device gives none
    backoff: Backoff | None  # between connection attempts (default: the device's `reconnect` settings)
    max_buffered: int  # samples held for batches() before the device's data waits


class SourceBase(abc.ABC):
    """The Source protocol's plumbing; a protocol implements `_connect`, `_serve` and `_disconnect`."""

    def __init__(
        self,
        protocol: str,
        device_id: str,
        endpoint: str,
        *,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        reconnect: ReconnectSettings | None = None,
    ) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be >= 1, got {max_buffered!r}")
        self._protocol = protocol
        self._device_id = device_id
        self._where = endpoint
        self._clock = clock
        if backoff is None:
            settings = reconnect or ReconnectSettings()
            backoff = Backoff(initial=settings.initial_delay_s, cap=settings.max_delay_s)
        self._backoff = backoff
        self._max_buffered = max_buffered
        self._buffer: list[Sample] = []  # what batches() hands over next, in device order
        self._readable = asyncio.Event()  # the buffer has samples, or the source closed
        self._room = asyncio.Event()  # the buffer is below max_buffered
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._state = SourceState.DISCONNECTED
        self._state_changed = asyncio.Event()
        self._slowdown = 1.0
        self._counters = SourceCounters()
        self._warned: set[tuple[str, str]] = set()
        self._refusal: Refusal | None = None

    # -- what a protocol implements -------------------------------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the connection; raise anything on failure (it is counted, logged and retried)."""

    @abc.abstractmethod
    async def _serve(self) -> str:
        """Keep the connection's data flowing; return (or raise) why it was lost."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the connection, if any; safe to call when it is already gone."""

    def _release(self) -> None:  # noqa: B027  # optional: most sources hold nothing beyond the connection
        """Free what the source holds for its whole life; called once, at exit."""

    def _slowdown_changed(self) -> None:  # noqa: B027  # optional: most sources apply it at their next read
        """Apply a new slowdown factor now, if waiting for the next read is not enough."""

    def _refusal_of(self, exc: Exception) -> Refusal | None:
        """Return the refusal a failed attempt's exception is, or None for an outage (the default)."""
        del exc
        return None

    # -- the Source protocol ----------------------------------------------------------------------------

    @property
    def device_id(self) -> str:
        """The device (Sparkplug device_id) every sample of this source belongs to."""
        return self._device_id

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def counters(self) -> SourceCounters:
        return self._counters

    @property
    def refusal(self) -> Refusal | None:
        """Why the device and the connector refused each other at the last attempt; None once connected."""
        return self._refusal

    async def __aenter__(self) -> Self:
        if self._task is not None or self._closed:
            raise RuntimeError(f"{type(self).__name__}: a source can be entered once")
        self._task = asyncio.create_task(self._run(), name=f"{self._protocol}-source:{self.device_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect_quietly()
        self._release()
        self._mark_closed()

    async def wait_for_state(self, *states: SourceState) -> SourceState:
        """Return once the source is in one of `states` (at once if it already is).

        Raises RuntimeError if the source closes first (unless CLOSED is one of `states`).
        """
        while self._state not in states:
            if self._state is SourceState.CLOSED:
                raise RuntimeError(f"source {self.device_id!r} closed")
            await self._state_changed.wait()
        return self._state

    async def batches(self) -> AsyncIterator[list[Sample]]:
        """Yield every sample buffered so far as one list (never empty), in the device's order, until closed.

        One consumer. After the source closed, what it buffered before is still handed over.
        """
        while True:
            if not self._buffer:
                if self._closed:
                    return
                self._readable.clear()
                await self._readable.wait()
                continue
            batch, self._buffer = self._buffer, []
            self._room.set()
            yield batch

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield the samples of `batches()` one by one (for consumers that want them so)."""
        async for batch in self.batches():
            for sample in batch:
                yield sample

    @property
    def slowdown(self) -> float:
        """The factor the source's sampling intervals are currently multiplied by."""
        return self._slowdown

    def set_slowdown(self, factor: float) -> None:
        """Multiply the sampling intervals by `factor` (>= 1; 1 is full rate); the same factor again does nothing."""
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"slowdown factor must be a positive number, got {factor!r}")
        factor = max(1.0, factor)
        if factor == self._slowdown:
            return
        _log.info("device %s: sampling slowed down x%g (was x%g)", self.device_id, factor, self._slowdown)
        self._slowdown = factor
        self._slowdown_changed()

    # -- the connection task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, serve, and after any failure or loss back off and start over, until cancelled."""
        connected_before = False
        while True:
            self._set_state(SourceState.CONNECTING)
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001  # whatever failed, the attempt failed: back off and retry
                self._counters.connect_failures += 1
                self._attempt_failed(exc)
                self._set_state(SourceState.BACKOFF)
                await self._disconnect_quietly()
                await self._back_off()
                continue
            self._refusal = None
            self._set_state(SourceState.CONNECTED)
            self._backoff.reset()
            if connected_before:
                self._counters.reconnects += 1
            connected_before = True
            _log.info("device %s: connected to %s", self.device_id, self._where)
            try:
                reason = await self._serve()
            except Exception as exc:  # noqa: BLE001  # any failure while connected: the connection is lost
                reason = describe(exc)
            finally:
                self._set_state(SourceState.BACKOFF)
                await self._disconnect_quietly()
            _log.warning("device %s: connection lost (%s)", self.device_id, reason)
            await self._back_off()

    def _attempt_failed(self, exc: Exception) -> None:
        refusal = self._refusal_of(exc)
        if refusal is None:
            self._refusal = None
            _log.warning("device %s: cannot connect to %s: %s", self.device_id, self._where, describe(exc))
            return
        level = logging.DEBUG if refusal == self._refusal else logging.ERROR
        self._refusal = refusal
        _log.log(level, "device %s: %s", self.device_id, refusal.message)

    async def _back_off(self) -> None:
        delay = self._backoff.next_delay()
        _log.info("device %s: next attempt in %.1f s", self.device_id, delay)
        await asyncio.sleep(delay)

    async def _disconnect_quietly(self) -> None:
        try:
            await self._disconnect()
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001  # tearing down a dead connection: nothing to do about it
            _log.debug("device %s: disconnect: %s", self.device_id, describe(exc))

    # -- for protocols ----------------------------------------------------------------------------------

    async def _emit(self, sample: Sample) -> None:
        """Buffer `sample` for `batches()`, waiting for room rather than dropping anything."""
        await self._emit_many((sample,))

    async def _emit_many(self, samples: Sequence[Sample]) -> None:
        """Buffer `samples` (in order) for `batches()`, never more than `max_buffered`: wait for room."""
        taken = 0
        while taken < len(samples):
            room = self._max_buffered - len(self._buffer)
            if room <= 0:
                self._counters.backpressure_waits += 1
                self._room.clear()
                await self._room.wait()
                continue
            part = samples[taken : taken + room] if taken or room < len(samples) else samples
            self._buffer += part
            taken += len(part)
            self._readable.set()
            self._counters.samples += len(part)
            self._counters.bad_samples += sum(1 for sample in part if sample.quality is Quality.BAD)

    def _log_once(self, signal: str, problem: str, message: str, *args: object) -> None:
        """Warn the first time `signal` has `problem` (a kind of trouble); after that only at debug."""
        key = (signal, problem)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        _log.log(level, message, *args)

    def _now_ms(self) -> int:
        return math.floor(self._clock() * 1000)

    def _set_state(self, state: SourceState) -> None:
        if state is self._state:
            return
        _log.debug("device %s: %s -> %s", self.device_id, self._state.value, state.value)
        self._state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    def _mark_closed(self) -> None:
        """Enter CLOSED and wake a consumer waiting on an empty buffer (a full one drains first, then ends)."""
        self._set_state(SourceState.CLOSED)
        self._readable.set()


def describe(exc: BaseException) -> str:
    """Return `Type: message` for an exception (just the type when it has no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
