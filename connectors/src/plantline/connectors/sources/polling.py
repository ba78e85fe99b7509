"""What the polled sources (S7, CIP) share: `PollingSource`, poll groups and report by exception.

    class S7Source(PollingSource):   # implements _connect, _poll and _disconnect
        ...

    async with S7Source(device) as source:
        async for sample in source.samples():
            ...

Connection. One task (`<protocol>-source:<id>`) connects, polls, and after any failure or loss
backs off with capped jittered exponential backoff and starts over (`SourceState`: DISCONNECTED
-> CONNECTING -> CONNECTED, BACKOFF between attempts, CLOSED at exit); a PLC that is down at
startup is retried the same way. The protocol libraries (python-snap7, pycomm3) block, so every
call into them runs on one worker thread per source (`_call`): the event loop never blocks, and
calls on one connection never overlap. An exception from `_poll` is a lost connection; a tag
the PLC refuses is not: it comes back as a bad `Reading` with the protocol's code.

Polling. Tags are polled in groups by sampling interval (the device's `sampling_interval_ms`
today, so one group), at a fixed rate: a poll that overruns its interval is followed by the
next one at once, never by a burst of catch-up polls. `set_slowdown(factor)` stretches every
interval from the next poll on.

Report by exception. PLCs give no timestamps and polls repeat unchanged values, so a sample is
yielded for a tag when its value, quality or code changed since the last sample, like an OPC UA
subscription: every tag once after each (re)connection, with the values just read, then its
changes. A numeric tag with an absolute deadband (engineering units) reports a change only when
it moved by more than the deadband; a percent deadband needs an EURange a PLC does not give, so
it is ignored with a warning (`counters.deadband_fallbacks`). The sample's timestamp is the
time the poll's answer arrived.

No fabricated values. While the PLC is unreachable nothing is polled and nothing is yielded;
`state` is not CONNECTED and the runtime turns that into DDEATH. Backpressure: `samples()`
reads a bounded queue; when it is full the poll loop waits (`counters.backpressure_waits`), so
polling slows down instead of dropping samples; what the PLC held meanwhile is simply not read.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import Device, Tag
from plantline.connectors.samples import Quality, Sample, Value
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.base import SourceBase

_log = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED = 10_000
T = TypeVar("T")


@dataclass(frozen=True)
class PollGroup:
    """Tags polled together at one interval (indexes into `device.tags`)."""

    interval_ms: int
    tags: tuple[int, ...]


def sampling_interval_ms(device: Device, tag: Tag) -> int:
    """Return how often `tag` is polled: the device's interval (a per-tag one would go here)."""
    del tag
    return device.sampling_interval_ms


def poll_groups(device: Device) -> list[PollGroup]:
    """Return the device's tags grouped by polling interval, shortest interval first."""
    groups: dict[int, list[int]] = {}
    for index, tag in enumerate(device.tags):
        groups.setdefault(sampling_interval_ms(device, tag), []).append(index)
    return [PollGroup(interval, tuple(groups[interval])) for interval in sorted(groups)]


@dataclass(frozen=True)
class Reading:
    """What one poll read for one tag: the raw value, or why there is none."""

    tag: int  # index into device.tags
    value: Value | None  # raw (unscaled); None when quality is bad
    quality: Quality
    code: int | None  # the protocol's own status code
    problem: str | None = None  # why it is not good, for the log


def scaled(tag: Tag, raw: Value) -> Value:
    """Return the value to publish: numbers times `scale` plus `offset`; bool and str as they are.

    With scale 1 and offset 0 the raw int or float is kept, so counters stay integers.
    """
    if isinstance(raw, bool | str):
        return raw
    if tag.scale == 1.0 and tag.offset == 0.0:
        return raw
    return float(raw) * tag.scale + tag.offset


class ChangeFilter:
    """Report by exception: decides whether a new reading of a tag is worth a sample. Pure."""

    def __init__(self, tags: Sequence[Tag]) -> None:
        self._deadbands = [
            t.deadband.value if t.deadband is not None and t.deadband.kind == "absolute" else 0.0 for t in tags
        ]
        self._last: dict[int, tuple[Value | None, Quality, int | None]] = {}

    def reset(self) -> None:
        """Forget what was reported: the next reading of every tag is reported (a new connection)."""
        self._last.clear()

    def changed(self, index: int, value: Value | None, quality: Quality, code: int | None) -> bool:
        """Return whether this reading differs from the last one reported, and if so remember it."""
        last = self._last.get(index)
        if last is not None and last[1] is quality and last[2] == code and self._same(index, last[0], value):
            return False
        self._last[index] = (value, quality, code)
        return True

    def _same(self, index: int, old: Value | None, new: Value | None) -> bool:
        if type(old) is not type(new):
            return False
        if isinstance(old, int | float) and isinstance(new, int | float) and not isinstance(new, bool):
            return abs(new - old) <= self._deadbands[index] if self._deadbands[index] else old == new
        return old == new


class PollingSource(SourceBase, abc.ABC):
    """A device polled over a blocking protocol library; implement `_connect`, `_poll`, `_disconnect`."""

    def __init__(
        self,
        device: Device,
        *,
        protocol: str,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        if device.protocol != protocol:
            raise ValueError(f"device {device.id!r} speaks {device.protocol}, not {protocol}")
        super().__init__(device, max_buffered=max_buffered)
        self._protocol = protocol
        self._clock = clock
        self._backoff = backoff if backoff is not None else Backoff(initial=0.5, cap=30.0)
        self._groups = poll_groups(device)
        self._filter = ChangeFilter(device.tags)
        self._task: asyncio.Task[None] | None = None
        self._warned: set[tuple[str, str]] = set()
        # One worker thread: the protocol library blocks, and one connection is not shared.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{protocol}-source-{device.id}")
        for tag in device.tags:
            if tag.deadband is not None and tag.deadband.kind == "percent":
                self._counters.deadband_fallbacks += 1
                _log.warning(
                    "device %s: %s (%s): a percent deadband needs an EURange, which %s does not give; ignored",
                    device.id,
                    tag.signal,
                    tag.address,
                    protocol,
                )

    # -- what a protocol implements (on the event loop; blocking work goes through `_call`) ---------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the connection; raise anything on failure (it is counted, logged and retried)."""

    @abc.abstractmethod
    async def _poll(self, group: PollGroup) -> Sequence[Reading]:
        """Read one group's tags; raise only when the connection itself failed."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the connection, if any; safe to call when it is already gone."""

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        """Run a blocking library call on this source's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    # -- the Source protocol ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None or self._closed:
            raise RuntimeError(f"a {type(self).__name__} can be entered once")
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
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._mark_closed()

    def set_slowdown(self, factor: float) -> None:
        """Multiply the polling intervals by `factor` (>= 1; 1 is full rate), from the next poll on."""
        self._change_slowdown(factor)

    # -- the connection task ------------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, poll, and after any failure or loss back off and start over, until cancelled."""
        connected_before = False
        while True:
            self._set_state(SourceState.CONNECTING)
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001  # whatever failed, the attempt failed: back off and retry
                self._counters.connect_failures += 1
                endpoint = self._device.endpoint
                _log.warning("device %s: cannot connect to %s: %s", self.device_id, endpoint, describe(exc))
                self._set_state(SourceState.BACKOFF)
                await self._disconnect_quietly()
                await self._back_off()
                continue
            self._set_state(SourceState.CONNECTED)
            self._backoff.reset()
            if connected_before:
                self._counters.reconnects += 1
            connected_before = True
            _log.info("device %s: connected to %s", self.device_id, self._device.endpoint)
            self._filter.reset()  # a new connection reports every tag afresh
            reason = "polling stopped"
            try:
                await self._poll_forever()
            except Exception as exc:  # noqa: BLE001  # any failure of a poll: the connection is lost
                reason = describe(exc)
            finally:
                self._set_state(SourceState.BACKOFF)
                await self._disconnect_quietly()
            _log.warning("device %s: connection lost (%s)", self.device_id, reason)
            await self._back_off()

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

    async def _poll_forever(self) -> None:
        """Poll every group on its schedule until a poll raises (the connection is lost)."""
        loop = asyncio.get_running_loop()
        due = [loop.time()] * len(self._groups)
        while True:
            which = min(range(len(due)), key=due.__getitem__)
            delay = due[which] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            group = self._groups[which]
            readings = await self._poll(group)
            await self._publish(readings, self._now_ms())
            due[which] = max(due[which] + group.interval_ms / 1000.0 * self._slowdown, loop.time())

    async def _publish(self, readings: Sequence[Reading], now_ms: int) -> None:
        for reading in readings:
            tag = self._device.tags[reading.tag]
            value = scaled(tag, reading.value) if reading.value is not None else None
            if not self._filter.changed(reading.tag, value, reading.quality, reading.code):
                continue
            if reading.quality is not Quality.GOOD:
                self._counters.read_errors += reading.quality is Quality.BAD
                self._log_once(
                    tag.signal,
                    "device %s: %s (%s): %s",
                    self.device_id,
                    tag.signal,
                    tag.address,
                    reading.problem or reading.quality.value,
                )
            await self._emit(Sample(self.device_id, tag.signal, value, reading.quality, now_ms, reading.code))

    async def _emit(self, sample: Sample) -> None:
        if self._queue.full():
            self._counters.backpressure_waits += 1
        await self._queue.put(sample)
        self._counters.samples += 1
        if sample.quality is Quality.BAD:
            self._counters.bad_samples += 1

    def _log_once(self, signal: str, message: str, *args: object) -> None:
        """Warn the first time a tag has this kind of problem; after that only at debug."""
        key = (signal, message % args)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        _log.log(level, message, *args)

    def _now_ms(self) -> int:
        return math.floor(self._clock() * 1000)


def describe(exc: BaseException) -> str:
    """Return `Type: message` for an exception (just the type when it has no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
