"""What the polled sources (S7, CIP) share: `PollingSource`, poll groups and report by exception.

    class S7Source(PollingSource[ReadPlan, list[list[ItemResult]]]):
        ...   # _connect, _disconnect, and _plan_reads, _exchange, _failed_merged, _readings

    async with S7Source(device) as source:
        async for batch in source.batches():
            ...

Connection. `SourceBase`'s task connects, polls while connected, and backs off and starts over
after any failure or loss. The protocol libraries (python-snap7, pycomm3) block, so every call
into them runs on one worker thread per source (`_call`): the event loop never blocks, and calls
on one connection never overlap. An exception from a poll is a lost connection; a tag the PLC
refuses is not: it comes back as a bad `Reading` with the protocol's code.

Polling. Tags are polled in groups by sampling interval (a tag's own `sampling_interval_ms`, else
the device's), each group at its fixed rate: a poll that overruns its interval is followed by the
next one at once, never by a burst of catch-up polls. `set_slowdown(factor)` stretches every
interval from the next poll on.

Merged reads. A protocol reads neighbouring tags with one request where it can (an S7 range, a
CIP array run); the plan is built once per group and connection (`plan`). When such a request
fails as a whole (one tag past the end of a DB or an array, say), its tags are read on their
own from then on, until the next connection, so the others read good again.

Report by exception. PLCs give no timestamps and polls repeat unchanged values, so a sample is
yielded for a tag when its value, quality or code changed since the last sample, like an OPC UA
subscription: every tag once after each (re)connection, with the values just read, then its
changes. A numeric tag with an absolute deadband (engineering units) reports a change only when
it moved by more than the deadband; a percent deadband needs an EURange a PLC does not give, so
it is ignored with a warning (`counters.deadband_fallbacks`). The sample's timestamp is the
time the poll's answer arrived.

No fabricated values. While the PLC is unreachable nothing is polled and nothing is yielded;
`state` is not CONNECTED and the runtime turns that into DDEATH. Backpressure: `batches()`
reads a bounded buffer; when it is full the poll loop waits (`counters.backpressure_waits`), so
polling slows down instead of dropping samples; what the PLC held meanwhile is simply not read.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar, Unpack

from plantline.connectors.config import Device, Tag
from plantline.connectors.samples import Quality, Sample, Value, scaled
from plantline.connectors.sources.base import SourceBase, SourceOptions

_log = logging.getLogger(__name__)

T = TypeVar("T")
PlanT = TypeVar("PlanT")  # what a protocol sends for one poll of a group
AnswersT = TypeVar("AnswersT")  # what comes back


@dataclass(frozen=True)
class PollGroup:
    """Tags polled together at one interval (indexes into `device.tags`)."""

    interval_ms: int
    tags: tuple[int, ...]


def poll_groups(device: Device) -> list[PollGroup]:
    """Return the device's tags grouped by polling interval, shortest interval first."""
    groups: dict[int, list[int]] = {}
    for index, tag in enumerate(device.tags):
        groups.setdefault(device.interval_of(tag), []).append(index)
    return [PollGroup(interval, tuple(groups[interval])) for interval in sorted(groups)]


@dataclass(frozen=True)
class Reading:
    """What one poll read for one tag: the raw value, or why there is none."""

    tag: int  # index into device.tags
    value: Value | None  # raw (unscaled); None when quality is bad
    quality: Quality
    code: int | None  # the protocol's own status code
    problem: str | None = None  # why it is not good, for the log


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


class PollingSource(SourceBase, Generic[PlanT, AnswersT]):
    """A device polled over a blocking protocol library.

    A protocol implements `_connect` and `_disconnect` (see `SourceBase`) and the four steps of a
    poll: `_plan_reads` (the requests that read a group), `_exchange` (send them; on the worker
    thread), `_failed_merged` (the tags of failed requests that read several tags) and `_readings`.
    """

    def __init__(self, device: Device, *, protocol: str, **options: Unpack[SourceOptions]) -> None:
        if device.protocol != protocol:
            raise ValueError(f"device {device.id!r} speaks {device.protocol}, not {protocol}")
        super().__init__(protocol, device.id, device.endpoint, reconnect=device.reconnect, **options)
        self._device = device
        self._groups = poll_groups(device)
        self._filter = ChangeFilter(device.tags)
        self._plans: dict[PollGroup, PlanT] = {}
        self._isolated: set[int] = set()  # tag indexes read on their own
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

    # -- what a protocol implements besides connecting (blocking work goes through `_call`) ----------

    @abc.abstractmethod
    def _plan_reads(self, group: PollGroup, isolated: Collection[int]) -> PlanT:
        """Return the requests that read `group`; the tags in `isolated` get requests of their own."""

    @abc.abstractmethod
    def _exchange(self, plan: PlanT) -> AnswersT:
        """Send the requests of `plan` and return the answers (worker thread); raise on a lost link."""

    @abc.abstractmethod
    def _failed_merged(self, group: PollGroup, plan: PlanT, answers: AnswersT) -> set[int]:
        """Return the tags of the failed requests that read more than one tag."""

    @abc.abstractmethod
    def _readings(self, group: PollGroup, plan: PlanT, answers: AnswersT) -> Sequence[Reading]:
        """Return one Reading per tag of `group` from the answers to `plan`."""

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        """Run a blocking library call on this source's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    def _release(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- polling --------------------------------------------------------------------------------------

    def plan(self, group: PollGroup) -> PlanT:
        """Return the read plan of `group` for the current connection (built once per connection)."""
        plan = self._plans.get(group)
        if plan is None:
            plan = self._plans[group] = self._plan_reads(group, frozenset(self._isolated))
        return plan

    async def _poll(self, group: PollGroup) -> Sequence[Reading]:
        """Read one group's tags; raise only when the connection itself failed.

        A request that read several tags and failed is split: its tags are read on their own from
        then on (until the next connection), so one misconfigured tag does not turn its neighbours bad.
        """
        plan = self.plan(group)
        answers = await self._call(self._exchange, plan)
        split = self._failed_merged(group, plan, answers) - self._isolated
        if split:
            _log.warning(
                "device %s: a merged read failed; reading %s one by one",
                self.device_id,
                ", ".join(self._device.tags[t].address for t in sorted(split)),
            )
            self._isolated |= split
            del self._plans[group]
            plan = self.plan(group)
            answers = await self._call(self._exchange, plan)
        return self._readings(group, plan, answers)

    async def _serve(self) -> str:
        """Poll every group on its schedule until a poll raises (the connection is lost)."""
        self._filter.reset()  # a new connection reports every tag afresh, and is planned afresh
        self._plans.clear()
        self._isolated.clear()
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
        samples: list[Sample] = []
        for reading in readings:
            tag = self._device.tags[reading.tag]
            value = scaled(reading.value, tag.scale, tag.offset) if reading.value is not None else None
            if not self._filter.changed(reading.tag, value, reading.quality, reading.code):
                continue
            if reading.quality is not Quality.GOOD:
                self._counters.read_errors += reading.quality is Quality.BAD
                problem = reading.problem or reading.quality.value
                self._log_once(
                    tag.signal, problem, "device %s: %s (%s): %s", self.device_id, tag.signal, tag.address, problem
                )
            samples.append(Sample(self.device_id, tag.signal, value, reading.quality, now_ms, reading.code))
        await self._emit_many(samples)
