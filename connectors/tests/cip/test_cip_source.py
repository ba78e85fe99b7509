"""CipSource against cpppo's EtherNet/IP simulator: values and types, refused tags, outages."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator

import pytest

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import Device
from plantline.connectors.samples import Quality, Sample, Value
from plantline.connectors.sim.cip_server import CipMachineServer
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.cip import CipSource
from plantline_testing import free_port
from plantline_testing.sources import Recorder, plc_device, sit_out_outage, until

pytestmark = [pytest.mark.peer, pytest.mark.slow]

QUICK = Backoff(initial=0.05, cap=0.3, rng=random.Random(2))
EXTRA = {
    "Spare_sint": "SINT",
    "Spare_usint": "USINT",
    "Spare_uint": "UINT",
    "Spare_udint": "UDINT",
    "Spare_ulint": "ULINT",
    "Spare_text": "STRING",
    "Spare_reals": "REAL[4]",
}
HELD: dict[str, Value] = {
    "state.run": False,
    "state.idle": False,
    "state.blocked": True,
    "state.starved": False,
    "state.planned_stop": False,
    "fault.active": True,
    "fault.code": -1005,  # INT
    "counter.good": 2_000_000_000,  # DINT
    "counter.reject": 3,
    "counter.total": 2**40,  # LINT
    "cycle.time": 2.25,  # REAL
    "cycle.ideal": 2.0,
    "rate.actual": 26.5,
    "process.temperature": 61.5,
    "process.pressure": 3.141592653589793,  # LREAL
    "process.fill_level": 42.5,  # INT x 0.1 [425]
}


@pytest.fixture(scope="module")
def sim() -> Iterator[CipMachineServer]:
    """One cpppo simulator for the module (it takes a second or two to start)."""
    server = CipMachineServer(free_port(), seed=4, update_interval_s=0.05, speed=20.0, extra_tags=EXTRA)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def read_all(device: Device) -> tuple[dict[str, Sample], CipSource]:
    async with CipSource(device, backoff=QUICK) as source, Recorder(source) as recorder:
        await until(lambda: recorder.signals() >= {t.signal for t in device.tags}, what="a sample of every tag")
        return recorder.latest(), source


def test_values_and_types_match_what_the_simulator_holds(sim: CipMachineServer) -> None:
    for signal, value in HELD.items():
        sim.write(signal, value)
    sim.poke({"Spare_sint": -100, "Spare_usint": 250, "Spare_uint": 65000, "Spare_udint": 4_000_000_000})
    sim.poke({"Spare_ulint": 2**63 + 5, "Spare_reals[1]": 0.25, "Spare_reals[3]": -8.0})
    sim.poke_string("Spare_text", "Lot 4711")
    extra = [
        {"signal": "process.sint", "address": "Spare_sint", "datatype": "int8"},
        {"signal": "process.usint", "address": "Spare_usint", "datatype": "uint8"},
        {"signal": "process.uint", "address": "Spare_uint", "datatype": "uint16"},
        {"signal": "process.udint", "address": "Spare_udint", "datatype": "uint32"},
        {"signal": "process.ulint", "address": "Spare_ulint", "datatype": "uint64"},
        {"signal": "process.text", "address": "Spare_text", "datatype": "string"},
        {"signal": "process.real1", "address": "Spare_reals[1]", "datatype": "float"},  # one run
        {"signal": "process.real3", "address": "Spare_reals[3]", "datatype": "float"},  # of two elements
        {"signal": "process.good_again", "address": "Filler_counters[0]", "datatype": "int32"},
        {"signal": "process.total_low", "address": "Filler_counters[2]", "datatype": "int32"},
    ]
    try:
        latest, source = asyncio.run(read_all(plc_device("cip", sim.url, sim.tags() + extra)))
    finally:
        for signal in HELD:
            sim.release(signal)

    for signal, value in HELD.items():
        sample = latest[signal]
        assert (sample.quality, sample.protocol_code) == (Quality.GOOD, 0x00), sample
        assert type(sample.value) is type(value), (signal, sample.value)
        assert sample.value == pytest.approx(value, rel=1e-9), signal
    assert {s: latest[s].value for s in (t["signal"] for t in extra)} == {
        "process.sint": -100,
        "process.usint": 250,
        "process.uint": 65000,
        "process.udint": 4_000_000_000,
        "process.ulint": 2**63 + 5,
        "process.text": "Lot 4711",
        "process.real1": 0.25,
        "process.real3": -8.0,
        "process.good_again": 2_000_000_000,
        "process.total_low": 0,  # 2**40 wrapped into the DINT array element
    }
    assert source.counters.read_errors == 0


def test_unknown_tags_and_elements_are_bad_with_the_cip_status(
    sim: CipMachineServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plantline.connectors")
    tags = [
        {"signal": "process.nope", "address": "No_such_tag", "datatype": "int32"},
        {"signal": "process.c0", "address": "Filler_counters[0]", "datatype": "int32"},
        {"signal": "process.c9", "address": "Filler_counters[9]", "datatype": "int32"},  # the array has 3
        {"signal": "cycle.ideal", "address": "Filler_cycle_ideal", "datatype": "float"},
    ]
    latest, source = asyncio.run(read_all(plc_device("cip", sim.url, tags)))
    assert (latest["process.nope"].value, latest["process.nope"].quality) == (None, Quality.BAD)
    assert latest["process.nope"].protocol_code == 0x05
    assert (latest["process.c9"].quality, latest["process.c9"].protocol_code) == (Quality.BAD, 0xFF)
    assert latest["process.c0"].quality is Quality.GOOD
    assert latest["cycle.ideal"].value == 2.0
    assert source.counters.read_errors == 2
    assert "(No_such_tag): CIP general status 0x05: path destination unknown" in caplog.text
    assert "Access beyond end of the object" in caplog.text
    assert "reading Filler_counters[0], Filler_counters[9] one by one" in caplog.text


def test_a_controller_down_at_startup_then_killed_is_followed_without_fabricated_values() -> None:
    port = free_port()
    sim = CipMachineServer(port, seed=6, update_interval_s=0.05, speed=20.0)
    device = plc_device("cip", f"cip://127.0.0.1:{port}", sim.tags(), interval_ms=50)

    async def scenario() -> None:
        async with CipSource(device, backoff=QUICK) as source, Recorder(source) as recorder:
            await until(lambda: source.counters.connect_failures >= 2)
            assert recorder.received == []
            await asyncio.to_thread(sim.start)
            await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), 20)
            await until(lambda: sum(r.sample.signal == "counter.total" for r in recorder.received) >= 2)
            sim.kill()  # SIGKILL: the controller dies
            outage = await sit_out_outage(source, recorder)
            await asyncio.to_thread(sim.start)
            await outage.check_followed(source, recorder, {t.signal for t in device.tags}, "counter.total", 2)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()
