"""OpcUaSource against the real asyncua simulator: values, types, timestamps, deadbands, statuses.

All tests of this module share one simulated Filler (see conftest.py); a test that holds a
node at chosen values releases it back to the model when it ends.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from asyncua.ua.status_codes import StatusCodes

from plantline.connectors.config import Device
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sim.machine import SIGNAL_TYPES, SIGNALS
from plantline.connectors.sim.opcua_server import OpcUaMachineServer
from plantline.connectors.sources import Source, SourceState
from plantline.connectors.sources.opcua import OpcUaSource

pytestmark = pytest.mark.peer

STEP = 20.0  # every await gets a deadline; each of these takes well under a second normally
T = TypeVar("T")
MakeDevice = Callable[..., Device]
FROZEN_CLOCK_S = 1000.0  # a source clock that shows if a timestamp was made up locally


async def within(awaitable: Awaitable[T], seconds: float = STEP) -> T:
    return await asyncio.wait_for(awaitable, seconds)


def tag(signal: str, node: str | None = None, **fields: Any) -> dict[str, Any]:
    """A tag reading the simulator's `node` (default: the signal of the same name)."""
    return {"signal": signal, "address": f"ns=2;s=Filler.{node or signal}", "datatype": "double", **fields}


class Collector:
    """Drains a source in the background, so tests can wait for what they expect."""

    def __init__(self, source: OpcUaSource) -> None:
        self.source = source
        self.samples: list[Sample] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        async for sample in self.source.samples():
            self.samples.append(sample)
            self._changed.set()

    def of(self, signal: str) -> list[Sample]:
        return [s for s in self.samples if s.signal == signal]

    def values(self, signal: str) -> list[Any]:
        return [s.value for s in self.of(signal)]

    async def until(self, condition: Callable[[], bool], seconds: float = STEP) -> None:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await within(wait(), seconds)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def state_of(source: OpcUaSource) -> SourceState:
    return source.state  # read afresh: the state changes while the test awaits


async def connected(source: OpcUaSource) -> None:
    await within(source.wait_for_state(SourceState.CONNECTED))


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[None]], None]:
    def run_test(scenario: Awaitable[None]) -> None:
        loop.run_until_complete(within(scenario, 60.0))

    return run_test


@pytest.fixture
def released(sim: OpcUaMachineServer, loop: asyncio.AbstractEventLoop) -> Iterator[list[str]]:
    """Signals a test holds; they go back to the model after the test."""
    held: list[str] = []
    yield held
    for signal in held:
        loop.run_until_complete(within(sim.release(signal)))


# -- values, types and timestamps ---------------------------------------------------------------------


def test_reads_every_signal_with_its_type_and_the_servers_timestamp(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None]
) -> None:
    async def scenario() -> None:
        source = OpcUaSource(device(sim.url, [tag(s) for s in SIGNALS]), clock=lambda: FROZEN_CLOCK_S)
        assert isinstance(source, Source)
        assert state_of(source) is SourceState.DISCONNECTED
        async with source:
            collector = Collector(source)
            await collector.until(lambda: all(collector.of(s) for s in SIGNALS))
            await collector.stop()
            ideal_on_server = sim.read("cycle.ideal")
        first = {s: collector.of(s)[0] for s in SIGNALS}
        for signal, sample in first.items():
            assert sample.device == "filler-1"
            assert sample.quality is Quality.GOOD, sample
            assert sample.protocol_code == StatusCodes.Good
            assert type(sample.value) is SIGNAL_TYPES[signal], sample  # bool, int (counters, fault code), float
            assert sample.source_ts_ms != FROZEN_CLOCK_S * 1000  # the server's time, not ours
            assert abs(sample.source_ts_ms - time.time() * 1000) < 120_000
        assert first["cycle.ideal"].value == 2.0
        assert ideal_on_server.SourceTimestamp is not None
        assert first["cycle.ideal"].source_ts_ms == math.floor(ideal_on_server.SourceTimestamp.timestamp() * 1000)
        assert sum(first[s].value is True for s in SIGNALS if s.startswith("state.")) == 1
        assert state_of(source) is SourceState.CLOSED
        assert source.counters.samples >= len(SIGNALS)
        assert source.counters.bad_samples == 0

    run(scenario())


def test_scale_and_offset_are_applied_to_numbers_only(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None]
) -> None:
    tags = [
        tag("process.temperature"),
        tag("process.temperature_f", "process.temperature", scale=1.8, offset=32.0),
        tag("process.ideal_ms", "cycle.ideal", scale=1000.0),
        tag("counter.total", datatype="uint32"),
        tag("state.run", datatype="bool", scale=5.0, offset=1.0),
    ]

    async def scenario() -> None:
        async with OpcUaSource(device(sim.url, tags)) as source:
            collector = Collector(source)

            def pairs() -> list[tuple[Sample, Sample]]:
                celsius = {s.source_ts_ms: s for s in collector.of("process.temperature")}
                return [
                    (celsius[f.source_ts_ms], f)
                    for f in collector.of("process.temperature_f")
                    if f.source_ts_ms in celsius
                ]

            await collector.until(lambda: len(pairs()) >= 3 and bool(collector.of("state.run")))
            await collector.stop()
        for celsius, fahrenheit in pairs():
            assert isinstance(celsius.value, float)
            assert fahrenheit.value == pytest.approx(celsius.value * 1.8 + 32.0)
        assert collector.values("process.ideal_ms")[0] == 2000.0
        assert type(collector.values("counter.total")[0]) is int  # unscaled: the raw integer
        assert type(collector.values("state.run")[0]) is bool  # a bool is never scaled

    run(scenario())


# -- deadbands -------------------------------------------------------------------------------------------


def test_deadbands_suppress_small_changes(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None], released: list[str]
) -> None:
    tags = [
        tag("process.level_all", "process.fill_level"),
        tag("process.level_abs", "process.fill_level", deadband={"kind": "absolute", "value": 1.0}),
        # 10 engineering units at scale 10 are 1.0 in the server's units
        tag("process.level_x10", "process.fill_level", scale=10.0, deadband={"kind": "absolute", "value": 10.0}),
        # 2 % of the EURange 0..100 %
        tag("process.level_pct", "process.fill_level", deadband={"kind": "percent", "value": 2.0}),
    ]
    writes = [50.5, 51.2, 52.5, 55.0]  # steps 0.5, 0.7, 1.3, 2.5 from 50.0

    async def scenario() -> None:
        released.append("process.fill_level")
        await sim.write("process.fill_level", 50.0)
        async with OpcUaSource(device(sim.url, tags)) as source:
            collector = Collector(source)
            await collector.until(lambda: all(collector.of(t["signal"]) for t in tags))
            for value in writes:
                await sim.write("process.fill_level", value)
            await collector.until(lambda: 55.0 in collector.values("process.level_all"))
            await asyncio.sleep(0.3)  # room for anything that should not come
            await collector.stop()
        assert collector.values("process.level_all") == [50.0, *writes]
        assert collector.values("process.level_abs") == [50.0, 52.5, 55.0]
        assert collector.values("process.level_x10") == [500.0, 525.0, 550.0]
        assert collector.values("process.level_pct") == [50.0, 55.0]
        assert source.counters.deadband_fallbacks == 0

    run(scenario())


def test_refused_percent_deadband_falls_back_to_every_change(
    sim: OpcUaMachineServer,
    device: MakeDevice,
    run: Callable[[Awaitable[None]], None],
    released: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # cycle.ideal has no EURange, so a percent deadband means nothing there and the server says so.
    tags = [tag("process.ideal", "cycle.ideal", deadband={"kind": "percent", "value": 50.0})]

    async def scenario() -> None:
        released.append("cycle.ideal")
        async with OpcUaSource(device(sim.url, tags)) as source:
            collector = Collector(source)
            await collector.until(lambda: bool(collector.of("process.ideal")))
            for value in (2.01, 2.02):
                await sim.write("cycle.ideal", value)
            await collector.until(lambda: 2.02 in collector.values("process.ideal"))
            await collector.stop()
        assert collector.values("process.ideal") == [2.0, 2.01, 2.02]  # no deadband: every change
        assert all(s.quality is Quality.GOOD for s in collector.samples)
        assert source.counters.deadband_fallbacks == 1
        assert source.counters.read_errors == 0

    run(scenario())
    warning = [r.getMessage() for r in caplog.records if "deadband" in r.getMessage()]
    assert warning == [
        "device filler-1: process.ideal (ns=2;s=Filler.cycle.ideal): the server refused the percent deadband "
        "(BadDeadbandFilterInvalid, a percent deadband needs an EURange on the node); subscribing without a deadband"
    ]


# -- statuses ---------------------------------------------------------------------------------------------


def test_forced_bad_status_yields_a_bad_sample_with_the_code(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None], released: list[str]
) -> None:
    async def scenario() -> None:
        released.append("process.pressure")
        async with OpcUaSource(device(sim.url, [tag("process.pressure")])) as source:
            collector = Collector(source)
            await collector.until(lambda: bool(collector.samples))
            await sim.force_bad("process.pressure", StatusCodes.BadSensorFailure)
            await collector.until(lambda: collector.samples[-1].quality is Quality.BAD)
            await sim.force_bad("process.pressure", StatusCodes.UncertainLastUsableValue)
            await collector.until(lambda: collector.samples[-1].quality is Quality.UNCERTAIN)
            await sim.release("process.pressure")
            await collector.until(lambda: collector.samples[-1].quality is Quality.GOOD)
            await collector.stop()
        bad = [s for s in collector.samples if s.quality is Quality.BAD]
        assert len(bad) == 1
        assert bad[0].value is None  # never a made-up value
        assert bad[0].protocol_code == StatusCodes.BadSensorFailure
        uncertain = [s for s in collector.samples if s.quality is Quality.UNCERTAIN]
        assert uncertain[0].protocol_code == StatusCodes.UncertainLastUsableValue
        assert isinstance(uncertain[0].value, float)  # uncertain keeps the value
        assert source.counters.bad_samples == 1

    run(scenario())


def test_a_node_the_server_does_not_know_yields_one_bad_sample(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None]
) -> None:
    tags = [tag("process.temperature"), tag("process.missing", "no.such.node")]

    async def scenario() -> None:
        async with OpcUaSource(device(sim.url, tags), clock=lambda: FROZEN_CLOCK_S) as source:
            collector = Collector(source)
            await collector.until(lambda: bool(collector.of("process.missing")))
            await collector.until(lambda: len(collector.of("process.temperature")) >= 3)  # the rest flows
            await collector.stop()
            assert source.state is SourceState.CONNECTED
        (missing,) = collector.of("process.missing")
        assert missing == Sample(
            "filler-1", "process.missing", None, Quality.BAD, int(FROZEN_CLOCK_S * 1000), StatusCodes.BadNodeIdUnknown
        )
        assert source.counters.read_errors == 1

    run(scenario())


# -- adaptive sampling -------------------------------------------------------------------------------------


def test_slowdown_recreates_subscriptions_with_longer_intervals(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None]
) -> None:
    async def until_intervals(expected: list[float]) -> None:
        while sim.publishing_intervals() != expected:
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with OpcUaSource(device(sim.url, [tag("process.temperature")])) as source:
            collector = Collector(source)
            await connected(source)
            await within(until_intervals([50.0]))
            source.set_slowdown(3.0)
            assert source.slowdown == 3.0
            await within(until_intervals([150.0]))  # the old subscription is gone, the new one is slower
            before = len(collector.samples)
            await collector.until(lambda: len(collector.samples) >= before + 3)  # and samples flow
            source.set_slowdown(0.5)  # below 1 means full rate
            await within(until_intervals([50.0]))
            await collector.stop()
            assert source.state is SourceState.CONNECTED
            assert source.counters.reconnects == 0
        with pytest.raises(ValueError, match="positive"):
            source.set_slowdown(float("nan"))

    run(scenario())


# -- backpressure ------------------------------------------------------------------------------------------


def test_a_full_queue_holds_back_the_server_without_losing_samples(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None], released: list[str]
) -> None:
    written = [3.0 + i / 100 for i in range(50)]

    async def scenario() -> None:
        async with _ideal_source(sim, device, released, queue_size=100, max_buffered=5) as source:
            for value in written:
                await sim.write("cycle.ideal", value)
            await within(_until(lambda: source.counters.backpressure_waits >= 1))
            assert source.counters.samples == 5  # the queue is full and nothing was dropped
            received = await _values_until(source, written[-1])
        assert received == [2.5, *written]  # everything, in order
        assert source.counters.samples == 51

    run(scenario())


def test_queue_size_discards_the_oldest_at_the_server_when_the_consumer_lags(
    sim: OpcUaMachineServer, device: MakeDevice, run: Callable[[Awaitable[None]], None], released: list[str]
) -> None:
    written = [4.0 + i / 100 for i in range(10)]

    async def scenario() -> None:
        async with _ideal_source(sim, device, released, queue_size=2, max_buffered=1) as source:  # the queue is full
            for value in written:
                await sim.write("cycle.ideal", value)
            await asyncio.sleep(0.5)  # several publishing intervals
            received = await _values_until(source, written[-1])
        assert received[0] == 2.5
        later = [value for value in received[1:] if isinstance(value, float)]
        assert later == received[1:]
        assert later == sorted(later)  # order kept
        assert set(later) <= set(written)
        assert later[-2:] == written[-2:]  # the newest survive ...
        assert len(later) <= 4  # ... the oldest were discarded at the server (2 per item queue)

    run(scenario())


@asynccontextmanager
async def _ideal_source(
    sim: OpcUaMachineServer, device: MakeDevice, released: list[str], *, queue_size: int, max_buffered: int
) -> AsyncIterator[OpcUaSource]:
    """Yield a source of the held `cycle.ideal` (2.5) once its first sample waits, not consumed."""
    released.append("cycle.ideal")
    await sim.write("cycle.ideal", 2.5)
    dev = device(sim.url, [tag("process.ideal", "cycle.ideal")], queue_size=queue_size)
    async with OpcUaSource(dev, max_buffered=max_buffered) as source:
        await within(_until(lambda: source.counters.samples == 1))
        yield source


async def _values_until(source: OpcUaSource, last: object) -> list[object]:
    """Return the values the source yields from now on, up to and with `last`."""
    received: list[object] = []
    async for sample in source.samples():
        received.append(sample.value)
        if sample.value == last:
            break
    return received


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
