"""The Source contract, the same for every protocol: each case runs against OPC UA, S7 and CIP.

Every source reads the project's own simulator of its protocol on a free loopback port
(asyncua's server, python-snap7's server, cpppo; see `Peer`), and all three serve the same
simulated machine, so the same expectations hold for all three:

- values arrive with the type the machine model gives them, scaled where the config says so;
- when the server goes away the source leaves CONNECTED (the runtime turns that into DDEATH,
  which marks every metric of the device stale) and yields nothing made up while it is away;
- when the server returns the source reconnects by itself and reports every tag afresh;
- a tag the device does not have gives one bad sample with the protocol's code, and the
  other tags keep flowing.

One simulator per protocol serves all cases of that protocol. The OPC UA server runs on the
module's event loop (`loop`), so every case drives its scenario on that loop; the S7 and CIP
simulators run on threads and in a process, and are started and stopped off the loop.
"""

from __future__ import annotations

import abc
import asyncio
import random
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from asyncua.ua.status_codes import StatusCodes

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import Device
from plantline.connectors.samples import Quality, Value
from plantline.connectors.sim.cip_server import CipMachineServer
from plantline.connectors.sim.hosting import HostOptions
from plantline.connectors.sim.machine import SIGNAL_TYPES, SIGNALS
from plantline.connectors.sim.opcua_server import OpcUaMachineServer
from plantline.connectors.sim.s7_server import S7MachineServer
from plantline.connectors.sources import Source, SourceState
from plantline.connectors.sources.cip import CipSource
from plantline.connectors.sources.opcua import OpcUaSource
from plantline.connectors.sources.s7 import S7Source
from plantline_testing import free_port
from plantline_testing.sources import STEP_S, Recorder, until

pytestmark = [pytest.mark.peer]

CASE_TIMEOUT_S = 90.0
# One value of every kind the machine has, held while a source reads them: a bit, a negative
# integer, a counter (UInt32, DINT or LINT), a float32 and a double, and a scaled value (S7
# keeps fill_level as a WORD of 0.01 %, CIP as an INT of 0.1 %, OPC UA as a Double).
HELD: dict[str, Value] = {
    "state.run": True,
    "fault.code": -1234,
    "counter.total": 123_456,
    "cycle.time": 2.25,
    "process.pressure": 3.141592653589793,
    "process.fill_level": 42.5,
}
FLOWING = "process.temperature"  # a noisy value: it changes with nearly every model step
MISSING = "process.missing"


# -- the simulators -------------------------------------------------------------------------------

START_TIMEOUT_S = 60.0  # an asyncua server builds its address space for seconds on a busy machine
SIM = HostOptions(seed=7, update_interval_s=0.05, speed=20.0)  # a lively machine: values change every step


class Peer(abc.ABC):
    """A protocol's simulator, and how a source reads it."""

    protocol: str
    server: OpcUaMachineServer | S7MachineServer | CipMachineServer
    # A tag the device does not have, and the protocol's code for "no such thing".
    unknown_address: str
    unknown_code: int

    @property
    def url(self) -> str:
        return self.server.url

    def tags(self) -> list[dict[str, Any]]:
        """The config tags that read every signal of the simulated machine."""
        return self.server.tags()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def hold(self, signal: str, value: Value) -> None: ...

    @abc.abstractmethod
    async def release(self, signal: str) -> None: ...

    @abc.abstractmethod
    def source(self, device: Device) -> Source:
        """A source for `device`, retrying quickly."""

    def device(self, tags: list[dict[str, Any]]) -> Device:
        """A device of this protocol at the simulator, polling or sampling every 50 ms."""
        spec: dict[str, Any] = {"id": "filler-1", "protocol": self.protocol, "endpoint": self.url}
        if self.protocol == "opcua":
            spec["opcua"] = {"publishing_interval_ms": 50}
        return Device.model_validate({**spec, "sampling_interval_ms": 50, "tags": tags})


def quick() -> Backoff:
    return Backoff(initial=0.05, cap=0.3, rng=random.Random(0))


class OpcUaPeer(Peer):
    protocol = "opcua"
    unknown_address = "ns=2;s=Filler.no.such.node"
    unknown_code = StatusCodes.BadNodeIdUnknown
    server: OpcUaMachineServer

    def __init__(self) -> None:
        self.server = OpcUaMachineServer(free_port(), **SIM)

    async def start(self) -> None:
        await asyncio.wait_for(self.server.start(), START_TIMEOUT_S)

    async def stop(self) -> None:
        await asyncio.wait_for(self.server.stop(), START_TIMEOUT_S)

    async def hold(self, signal: str, value: Value) -> None:
        await self.server.write(signal, value)

    async def release(self, signal: str) -> None:
        await self.server.release(signal)

    def source(self, device: Device) -> Source:
        return OpcUaSource(device, backoff=quick())


class ThreadedPeer(Peer):
    """A simulator that runs beside the loop (S7 on threads, CIP in a process)."""

    server: S7MachineServer | CipMachineServer

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def hold(self, signal: str, value: Value) -> None:
        await asyncio.to_thread(self.server.write, signal, value)

    async def release(self, signal: str) -> None:
        await asyncio.to_thread(self.server.release, signal)


class S7Peer(ThreadedPeer):
    protocol = "s7"
    unknown_address = "DB11.DBW0"  # the simulator serves DB10 only
    unknown_code = 0x0A  # object does not exist

    def __init__(self) -> None:
        self.server = S7MachineServer(free_port(), **SIM)

    def source(self, device: Device) -> Source:
        return S7Source(device, backoff=quick())


class CipPeer(ThreadedPeer):
    protocol = "cip"
    unknown_address = "No_such_tag"
    unknown_code = 0x05  # path destination unknown

    def __init__(self) -> None:
        self.server = CipMachineServer(free_port(), **SIM)

    def source(self, device: Device) -> Source:
        return CipSource(device, backoff=quick())


PEERS: dict[str, type[Peer]] = {"opcua": OpcUaPeer, "s7": S7Peer, "cip": CipPeer}


@pytest.fixture(scope="module", params=sorted(PEERS))
def peer(request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop) -> Iterator[Peer]:
    """A running simulator of each protocol in turn, shared by the module's tests of that protocol.

    A test that stops it starts it again before it ends.
    """
    simulator = PEERS[request.param]()
    loop.run_until_complete(simulator.start())
    try:
        yield simulator
    finally:
        loop.run_until_complete(simulator.stop())


# -- the contract ----------------------------------------------------------------------------------


def run(loop: asyncio.AbstractEventLoop, scenario: Coroutine[Any, Any, None]) -> None:
    loop.run_until_complete(asyncio.wait_for(scenario, CASE_TIMEOUT_S))


def now_ms() -> int:
    return int(time.time() * 1000)


def test_values_arrive_with_their_types(peer: Peer, loop: asyncio.AbstractEventLoop) -> None:
    async def scenario() -> None:
        for signal, value in HELD.items():
            await peer.hold(signal, value)
        try:
            async with peer.source(peer.device(peer.tags())) as source, Recorder(source) as recorder:
                await until(lambda: recorder.signals() >= set(SIGNALS), what="a sample of every signal")
                latest = recorder.latest()
        finally:
            for signal in HELD:
                await peer.release(signal)
        for signal, value in HELD.items():
            assert type(latest[signal].value) is type(value), (signal, latest[signal])
            assert latest[signal].value == pytest.approx(value, rel=1e-9), signal
        assert {s: type(latest[s].value) for s in SIGNALS} == dict(SIGNAL_TYPES)
        assert {s: latest[s].quality for s in SIGNALS} == dict.fromkeys(SIGNALS, Quality.GOOD)
        assert source.counters.read_errors == 0

    run(loop, scenario())


@pytest.mark.slow
def test_a_stopped_server_takes_the_source_out_of_connected_without_made_up_values(
    peer: Peer, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        async with peer.source(peer.device(peer.tags())) as source, Recorder(source) as recorder:
            await until(lambda: recorder.signals() >= set(SIGNALS), what="a sample of every signal")
            await peer.stop()
            try:
                stopped_ms = now_ms()
                await asyncio.wait_for(source.wait_for_state(SourceState.BACKOFF, SourceState.CONNECTING), STEP_S)
                failures = source.counters.connect_failures
                await until(lambda: source.counters.connect_failures >= failures + 2, what="two attempts in vain")
                assert source.state is not SourceState.CONNECTED
                made_up = [r.sample for r in recorder.received if r.sample.source_ts_ms > stopped_ms]
                assert made_up == []
            finally:
                await peer.start()

    run(loop, scenario())


@pytest.mark.slow
def test_the_source_reconnects_when_the_server_returns(peer: Peer, loop: asyncio.AbstractEventLoop) -> None:
    async def scenario() -> None:
        async with peer.source(peer.device(peer.tags())) as source, Recorder(source) as recorder:
            await until(lambda: recorder.signals() >= set(SIGNALS), what="a sample of every signal")
            await peer.stop()
            try:
                await asyncio.wait_for(source.wait_for_state(SourceState.BACKOFF, SourceState.CONNECTING), STEP_S)
                await until(lambda: source.counters.connect_failures >= 1, what="an attempt in vain")
                # Counted before the restart: the source may reconnect and read every signal before
                # start() returns, and a signal that did not change is not reported twice.
                back = len(recorder.received)
            finally:
                await peer.start()
            await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), STEP_S)
            await until(lambda: recorder.signals(back) >= set(SIGNALS), what="every signal again")
            await until(lambda: [r.sample.signal for r in recorder.received[back:]].count(FLOWING) >= 3)
        assert source.counters.reconnects == 1
        assert {r.sample.quality for r in recorder.received} == {Quality.GOOD}

    run(loop, scenario())


def test_an_unknown_address_is_bad_with_its_code_and_the_other_tags_flow(
    peer: Peer, loop: asyncio.AbstractEventLoop
) -> None:
    tags = [*peer.tags(), {"signal": MISSING, "address": peer.unknown_address, "datatype": "int16"}]

    async def scenario() -> None:
        async with peer.source(peer.device(tags)) as source, Recorder(source) as recorder:
            await until(lambda: MISSING in recorder.signals(), what="a sample of the unknown tag")
            seen = len(recorder.received)
            await until(lambda: [r.sample.signal for r in recorder.received[seen:]].count(FLOWING) >= 3)
            assert source.state is SourceState.CONNECTED
        missing = [r.sample for r in recorder.received if r.sample.signal == MISSING]
        assert [(s.value, s.quality, s.protocol_code) for s in missing] == [(None, Quality.BAD, peer.unknown_code)]
        others = {r.sample.quality for r in recorder.received if r.sample.signal != MISSING}
        assert others == {Quality.GOOD}
        assert recorder.signals() >= set(SIGNALS)
        assert source.counters.read_errors == 1

    run(loop, scenario())
