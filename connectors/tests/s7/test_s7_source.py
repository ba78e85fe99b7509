"""S7Source against the python-snap7 3.x server of the simulator: values, errors, PDU splits, outages."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from plantline.connectors.backoff import Backoff
from plantline.connectors.samples import Quality, Value
from plantline.connectors.sim.s7_server import S7_IO_LAYOUT, Area, S7MachineServer
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.polling import poll_groups
from plantline.connectors.sources.s7 import S7Source
from plantline_testing import free_port
from plantline_testing.sources import Recorder, sit_out_outage, until

pytestmark = [pytest.mark.peer]

QUICK = Backoff(initial=0.05, cap=0.3, rng=random.Random(0))

# Held values that exercise every type of the layout at its edges (raw values in brackets).
HELD: dict[str, Value] = {
    "state.run": False,
    "state.idle": True,
    "state.blocked": False,
    "state.starved": True,
    "state.planned_stop": False,
    "fault.active": True,
    "fault.code": -1234,  # INT
    "counter.good": 4_000_000_000,  # DWORD above 2**31
    "counter.reject": 17,
    "counter.total": -5,  # DINT
    "cycle.time": 2.25,  # REAL (exact in float32)
    "cycle.ideal": 2.0,
    "rate.actual": 26.5,
    "process.temperature": -12.34,  # INT x 0.01 [-1234]
    "process.fill_level": 655.35,  # WORD x 0.01 [65535]
    "process.pressure": 3.141592653589793,  # LREAL
}
# The process image and flags mirror some signals; read them as extra process values.
IO_TAGS = [
    {"signal": f"process.io_{slot.signal.replace('.', '_')}", "address": slot.address(10), "datatype": slot.datatype}
    for slot in S7_IO_LAYOUT
]
# Types the layout does not use, poked into the data block's spare bytes (40 on).
SPARE_TAGS = [
    {"signal": "process.sint", "address": "DB10.DBB40", "datatype": "int8"},
    {"signal": "process.byte", "address": "DB10.DBB41", "datatype": "uint8"},
    {"signal": "process.text", "address": "DB10.DBS42.10", "datatype": "string"},
    {"signal": "process.lint", "address": "DB10.DBL56", "datatype": "int64"},
    {"signal": "process.flag", "address": "DB10.DBX64.6", "datatype": "bool"},
]


def poke_spares(sim: S7MachineServer) -> None:
    sim.poke(Area.DB, 40, struct.pack(">bB", -5, 200))
    sim.poke(Area.DB, 42, bytes([10, 5]) + b"hello".ljust(10, b"\x00"))
    sim.poke(Area.DB, 56, struct.pack(">q", -(2**40)))
    sim.poke(Area.DB, 64, b"\x40")


async def read_once(device: Any, signals: set[str], **options: Any) -> tuple[dict[str, Any], S7Source]:
    """Run a source until every signal was received; return the latest sample of each."""
    async with S7Source(device, backoff=QUICK, **options) as source, Recorder(source) as recorder:
        await until(lambda: recorder.signals() >= signals, what=f"samples of {sorted(signals)}")
        return recorder.latest(), source


def test_values_and_types_match_what_the_simulator_holds(s7_device: Callable[..., Any]) -> None:
    with S7MachineServer(free_port(), seed=5, update_interval_s=0.05, speed=20.0) as sim:
        for signal, value in HELD.items():
            sim.write(signal, value)
        poke_spares(sim)
        device = s7_device(sim.url, sim.tags() + IO_TAGS + SPARE_TAGS)
        latest, _ = asyncio.run(read_once(device, {t.signal for t in device.tags}))

    for signal, value in HELD.items():
        sample = latest[signal]
        assert sample.quality is Quality.GOOD, sample
        assert sample.protocol_code == 0xFF
        assert sample.device == "filler-1"
        assert type(sample.value) is type(value), (signal, sample.value)
        assert sample.value == pytest.approx(value, rel=1e-9), signal
    io = {s: latest[s].value for s in (t["signal"] for t in IO_TAGS)}
    assert io == {
        "process.io_state_run": False,
        "process.io_state_idle": True,
        "process.io_state_blocked": False,
        "process.io_state_starved": True,
        "process.io_state_planned_stop": False,
        "process.io_fault_active": True,
        "process.io_fault_code": -1234,
        "process.io_counter_total": -5,
    }
    spares = {s: latest[s].value for s in (t["signal"] for t in SPARE_TAGS)}
    assert spares == {
        "process.sint": -5,
        "process.byte": 200,
        "process.text": "hello",
        "process.lint": -(2**40),
        "process.flag": True,
    }


def test_changes_of_the_model_are_reported_and_unchanged_values_are_not_repeated(s7_device: Callable[..., Any]) -> None:
    async def scenario(sim: S7MachineServer) -> None:
        device = s7_device(sim.url, sim.tags(), interval_ms=20)
        async with S7Source(device, backoff=QUICK) as source, Recorder(source) as recorder:
            await until(lambda: sum(r.sample.signal == "counter.total" for r in recorder.received) >= 3)
            totals = [int(r.sample.value or 0) for r in recorder.received if r.sample.signal == "counter.total"]
            assert totals == sorted(set(totals))  # each reported once, increasing
            ideal = [r for r in recorder.received if r.sample.signal == "cycle.ideal"]
            assert len(ideal) == 1  # never changes: reported once per connection

    with S7MachineServer(free_port(), seed=2, update_interval_s=0.02, speed=50.0) as sim:
        asyncio.run(scenario(sim))


def test_an_unknown_db_is_bad_with_its_code_and_a_bad_neighbour_does_not_spoil_good_tags(
    caplog: pytest.LogCaptureFixture, s7_device: Callable[..., Any]
) -> None:
    caplog.set_level(logging.WARNING, logger="plantline.connectors")
    tags = [
        {"signal": "process.missing", "address": "DB11.DBW0", "datatype": "int16"},
        {"signal": "process.last", "address": "DB10.DBW1020", "datatype": "int16"},  # the DB has 1024 bytes
        {"signal": "process.beyond", "address": "DB10.DBW1030", "datatype": "int16"},  # merged with the one above
        {"signal": "cycle.ideal", "address": "DB10.DBD20", "datatype": "float"},
    ]
    with S7MachineServer(free_port(), ideal_cycle_s=1.5) as sim:
        sim.poke(Area.DB, 1020, struct.pack(">h", 321))
        device = s7_device(sim.url, tags)
        latest, source = asyncio.run(read_once(device, {t["signal"] for t in tags}))
    assert (latest["process.missing"].value, latest["process.missing"].quality) == (None, Quality.BAD)
    assert latest["process.missing"].protocol_code == 0x0A
    assert (latest["process.beyond"].quality, latest["process.beyond"].protocol_code) == (Quality.BAD, 0x05)
    assert (latest["process.last"].value, latest["process.last"].quality) == (321, Quality.GOOD)
    assert latest["cycle.ideal"].value == 1.5
    assert source.counters.read_errors == 2
    assert "DB11.DBW0): item return code 0x0A: object does not exist" in caplog.text
    assert "DB11 is not in the PLC" in caplog.text
    assert "reading DB10.DBW1020, DB10.DBW1030 one by one" in caplog.text


@pytest.mark.parametrize(("asked", "granted", "pieces"), [(480, 480, [462, 462, 76]), (240, 240, [222] * 4 + [112])])
def test_a_read_larger_than_the_pdu_is_split(
    asked: int, granted: int, pieces: list[int], s7_device: Callable[..., Any]
) -> None:
    tags = [  # one range of 1000 bytes, 100..1099, of a 2048-byte DB
        {"signal": "process.first", "address": "DB10.DBW100", "datatype": "int16"},
        {"signal": "process.straddling", "address": "DB10.DBD560", "datatype": "int32"},  # 100 + 462 = 562
        {"signal": "process.middle", "address": "DB10.DBD800", "datatype": "float"},
        {"signal": "process.last", "address": "DB10.DBW1098", "datatype": "int16"},
    ]
    expected = {"process.first": 11, "process.straddling": 123_456_789, "process.middle": 0.5, "process.last": -2}

    async def scenario(url: str) -> None:
        device = s7_device(f"{url.split('?', maxsplit=1)[0]}?pdu={asked}", tags)
        async with S7Source(device, backoff=QUICK, max_gap=1000) as source, Recorder(source) as recorder:
            await until(lambda: recorder.signals() >= set(expected))
            assert source.pdu_size == granted
            plan = source.plan(poll_groups(device)[0])
            assert [(s.start, s.length) for s in plan.spans] == [(100, 1000)]
            assert [p.length for job in plan.jobs for p in job.pieces] == pieces
            assert len(plan.jobs) == len(pieces)
            assert {s: x.value for s, x in recorder.latest().items()} == expected

    with S7MachineServer(free_port(), db_size=2048) as sim:
        sim.poke(Area.DB, 100, struct.pack(">h", 11))
        sim.poke(Area.DB, 560, struct.pack(">i", 123_456_789))
        sim.poke(Area.DB, 800, struct.pack(">f", 0.5))
        sim.poke(Area.DB, 1098, struct.pack(">h", -2))
        asyncio.run(scenario(sim.url))


def test_a_plc_down_at_startup_then_stopped_and_restarted_is_followed_without_fabricated_values(
    s7_device: Callable[..., Any],
) -> None:
    port = free_port()
    url = f"s7://127.0.0.1:{port}?rack=0&slot=1"
    sim = S7MachineServer(port, seed=3, update_interval_s=0.02, speed=50.0)
    device = s7_device(url, sim.tags(), interval_ms=20)

    async def scenario() -> None:
        async with S7Source(device, backoff=QUICK) as source, Recorder(source) as recorder:
            # 1. Nobody listens: the source keeps trying and yields nothing.
            await until(lambda: source.counters.connect_failures >= 2)
            assert source.state in (SourceState.CONNECTING, SourceState.BACKOFF)
            assert recorder.received == []
            # 2. The PLC comes up: connected without a restart of the source.
            sim.start()
            await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), 20)
            await until(lambda: "counter.total" in recorder.signals())
            # 3. The PLC stops: BACKOFF, and nothing is read while it is away.
            sim.stop()
            outage = await sit_out_outage(source, recorder)
            # 4. Back on the same port: CONNECTED again, every tag reported afresh, then changes.
            sim.start()
            await outage.check_followed(source, recorder, {t.signal for t in device.tags}, "counter.total", 2)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()


def test_memory_stays_flat_while_retrying(caplog: pytest.LogCaptureFixture, s7_device: Callable[..., Any]) -> None:
    caplog.set_level(logging.CRITICAL, logger="plantline.connectors")
    caplog.set_level(logging.CRITICAL, logger="snap7")
    device = s7_device(
        f"s7://127.0.0.1:{free_port()}", [{"signal": "state.run", "address": "M0.0", "datatype": "bool"}]
    )
    backoff = Backoff(initial=0.0005, cap=0.001, jitter=0.0)

    async def scenario() -> tuple[int, int]:
        async with S7Source(device, backoff=backoff) as source:
            await until(lambda: source.counters.connect_failures >= 100)
            tracemalloc.start()
            try:
                start = source.counters.connect_failures
                first, _ = tracemalloc.get_traced_memory()
                await until(lambda: source.counters.connect_failures >= start + 1000, timeout_s=60)
                last, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert source.state is not SourceState.CONNECTED
            return first, last

    first, last = asyncio.run(scenario())
    assert last - first < 64 * 1024, f"grew by {last - first} bytes over 1000 failed connects"
