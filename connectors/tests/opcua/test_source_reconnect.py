"""OpcUaSource keeps going by itself: a server down at startup, then stopped and restarted.

One scenario on one port: the source starts before the server exists, connects when it comes
up, loses it when it stops (and yields nothing while it is gone: no sample is stamped inside
the outage), and re-creates its subscriptions when the server is back on the same port.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import Device
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sim.opcua_server import OpcUaMachineServer
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.opcua import OpcUaSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]

STEP = 30.0  # a deadline per await; starting an asyncua server takes seconds on a busy machine
T = TypeVar("T")
SIGNALS = ["process.temperature", "state.run", "counter.total", "cycle.ideal"]


async def within(awaitable: Awaitable[T], seconds: float = STEP) -> T:
    return await asyncio.wait_for(awaitable, seconds)


@dataclass(frozen=True)
class Received:
    sample: Sample
    state: SourceState  # the source's state when the sample came out of samples()
    at_ms: int  # wall clock when it came out


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def state_of(source: OpcUaSource) -> SourceState:
    return source.state  # read afresh: the state changes while the test awaits


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _scenario(port: int, device: Device) -> None:
    url = f"opc.tcp://127.0.0.1:{port}/"
    assert device.endpoint == url
    backoff = Backoff(initial=0.1, cap=0.5, rng=random.Random(0))  # quick retries for the test
    received: list[Received] = []
    async with OpcUaSource(device, backoff=backoff) as source:

        async def drain() -> None:
            async for sample in source.samples():
                received.append(Received(sample, source.state, _now_ms()))

        drainer = asyncio.create_task(drain())

        # 1. Nobody listens yet: the source keeps trying, and yields nothing.
        await within(_until(lambda: source.counters.connect_failures >= 2))
        assert state_of(source) in (SourceState.CONNECTING, SourceState.BACKOFF)
        assert received == []

        # 2. The server comes up: the source connects without being restarted.
        first = OpcUaMachineServer(port, seed=3, update_interval_s=0.05, speed=20.0)
        await within(first.start())
        await within(source.wait_for_state(SourceState.CONNECTED))
        await within(_until(lambda: {r.sample.signal for r in received} >= set(SIGNALS)))
        assert source.counters.reconnects == 0
        temperature_before = len([r for r in received if r.sample.signal == "process.temperature"])
        await within(
            _until(lambda: len([r for r in received if r.sample.signal == "process.temperature"]) > temperature_before)
        )

        # 3. The server stops: the source notices, and nothing comes out while it is away.
        stopped_ms = _now_ms()
        await within(first.stop())
        await within(source.wait_for_state(SourceState.BACKOFF, SourceState.CONNECTING))
        lost_ms, count_at_loss = _now_ms(), len(received)
        failures_at_loss = source.counters.connect_failures
        await asyncio.sleep(1.5)  # several reconnect attempts against a closed port
        assert len(received) == count_at_loss, "samples appeared while the server was down"
        assert source.counters.connect_failures >= failures_at_loss + 2
        assert state_of(source) is not SourceState.CONNECTED

        # 4. Back on the same port, counters retained (a PLC restart): subscriptions re-created.
        restarted_ms = _now_ms()
        second = OpcUaMachineServer(port, model=first.model, update_interval_s=0.05, speed=20.0)
        await within(second.start())
        try:
            await within(source.wait_for_state(SourceState.CONNECTED))

            def after() -> list[Received]:
                return [r for r in received if r.at_ms >= restarted_ms]

            await within(_until(lambda: {r.sample.signal for r in after()} >= set(SIGNALS)))
            await within(_until(lambda: len([r for r in after() if r.sample.signal == "process.temperature"]) >= 3))
        finally:
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)
            await within(second.stop())

    assert source.counters.reconnects == 1
    # No value is stamped inside the outage: nothing was made up while the server was gone.
    outage = [r for r in received if stopped_ms < r.sample.source_ts_ms < restarted_ms]
    assert outage == [], outage
    assert all(r.sample.quality is Quality.GOOD for r in received)
    # The counters went on from where they were: the same machine, not a new one.
    totals = [r.sample.value for r in received if r.sample.signal == "counter.total"]
    assert all(isinstance(total, int) for total in totals)
    assert totals == sorted(total for total in totals if isinstance(total, int))
    assert lost_ms - stopped_ms < 10_000  # a closed connection is noticed at once, not by the watchdog


def test_source_connects_late_survives_a_restart_and_fabricates_nothing(
    free_port: Callable[[], int], device: Callable[..., Device]
) -> None:
    port = free_port()
    tags = [{"signal": s, "address": f"ns=2;s=Filler.{s}", "datatype": "double"} for s in SIGNALS]
    asyncio.run(within(_scenario(port, device(f"opc.tcp://127.0.0.1:{port}/", tags)), 120.0))
