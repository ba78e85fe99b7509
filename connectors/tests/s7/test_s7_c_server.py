"""S7Source against an independent peer: the C snap7 server of python-snap7 2.x, in its own virtualenv.

The data block is encoded by the simulator's own encoder (`encode_machine`), served by the C
server, and read through the S7 source's planner, codec and decoder: three implementations
that must agree. The C server is also the one that is killed (SIGKILL) mid-stream.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import snap7
from snap7.error import S7ProtocolError

from plantline.connectors.backoff import Backoff
from plantline.connectors.samples import Quality, Value
from plantline.connectors.sim.s7_server import S7_IO_LAYOUT, Area, encode_machine, encode_slot, layout_tags
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.polling import poll_groups
from plantline.connectors.sources.s7 import S7Source
from plantline_testing import free_port
from plantline_testing.snap7_c import CSnap7Server
from plantline_testing.sources import Recorder, sit_out_outage, until

pytestmark = [pytest.mark.peer]

QUICK = Backoff(initial=0.05, cap=0.3, rng=random.Random(1))
VALUES: dict[str, Value] = {
    "state.run": True,
    "state.idle": False,
    "state.blocked": False,
    "state.starved": False,
    "state.planned_stop": True,
    "fault.active": False,
    "fault.code": 1004,
    "counter.good": 3_000_000_000,
    "counter.reject": 12,
    "counter.total": -2_000_000_000,
    "cycle.time": 2.5,
    "cycle.ideal": 2.0,
    "rate.actual": 24.0,
    "process.temperature": 68.12,
    "process.fill_level": 0.01,
    "process.pressure": 2.875,
}
IO_TAGS = [
    {"signal": f"process.io_{slot.signal.replace('.', '_')}", "address": slot.address(10), "datatype": slot.datatype}
    for slot in S7_IO_LAYOUT
]


def areas(db_size: int = 1024) -> list[tuple[str, int, bytes]]:
    """The DB (10), outputs, inputs and flags holding VALUES as the simulator lays them out."""
    image = {Area.Q: bytearray(256), Area.I: bytearray(256), Area.M: bytearray(256)}
    for slot in S7_IO_LAYOUT:
        encode_slot(image[slot.area], slot, VALUES[slot.signal])
    block = encode_machine(VALUES, size=db_size)
    struct.pack_into(">i", block, 100, 0)
    return [
        ("DB", 10, bytes(block)),
        ("PA", 0, bytes(image[Area.Q])),
        ("PE", 0, bytes(image[Area.I])),
        ("MK", 0, bytes(image[Area.M])),
    ]


def test_values_from_the_c_server_and_an_unknown_db(c_snap7_python: Path, s7_device: Callable[..., Any]) -> None:
    missing = {"signal": "process.missing", "address": "DB11.DBW0", "datatype": "int16"}
    with CSnap7Server(free_port(), areas(), python=c_snap7_python) as server:
        device = s7_device(server.url, [*layout_tags(10), *IO_TAGS, missing])

        async def scenario() -> dict[str, Any]:
            async with S7Source(device, backoff=QUICK) as source, Recorder(source) as recorder:
                await until(lambda: recorder.signals() >= {t.signal for t in device.tags})
                return recorder.latest()

        latest = asyncio.run(scenario())

        # python-snap7 3.x's own single read misreports the C server's answer for a missing DB;
        # the source reads the item's return code instead.
        client = snap7.Client()
        client.connect("127.0.0.1", 0, 1, server.port)
        try:
            with pytest.raises(S7ProtocolError, match="Data item is truncated"):
                client.db_read(11, 0, 2)
        finally:
            client.disconnect()

    for signal, value in VALUES.items():
        sample = latest[signal]
        assert (sample.quality, sample.protocol_code) == (Quality.GOOD, 0xFF), sample
        assert type(sample.value) is type(value), (signal, sample.value)
        assert sample.value == pytest.approx(value, rel=1e-9), signal
    for tag in IO_TAGS:
        signal = tag["signal"].removeprefix("process.io_").replace("_", ".", 1)
        assert latest[tag["signal"]].value == VALUES[signal], tag
    bad = latest["process.missing"]
    assert (bad.value, bad.quality, bad.protocol_code) == (None, Quality.BAD, 0x0A)


def test_a_read_larger_than_the_pdu_from_the_c_server(c_snap7_python: Path, s7_device: Callable[..., Any]) -> None:
    tags = [
        {"signal": "process.first", "address": "DB10.DBB40", "datatype": "uint8"},
        {"signal": "process.straddling", "address": "DB10.DBD500", "datatype": "int32"},
        {"signal": "process.last", "address": "DB10.DBW1038", "datatype": "int16"},
    ]
    db = bytearray(areas(2048)[0][2])
    struct.pack_into(">B", db, 40, 77)
    struct.pack_into(">i", db, 500, -987_654)  # 40 + 462 = 502: straddles the first two pieces
    struct.pack_into(">h", db, 1038, 4321)
    with CSnap7Server(free_port(), [("DB", 10, bytes(db))], python=c_snap7_python) as server:
        device = s7_device(f"s7://127.0.0.1:{server.port}?pdu=960", tags)

        async def scenario() -> None:
            async with S7Source(device, backoff=QUICK, max_gap=1000) as source, Recorder(source) as recorder:
                await until(lambda: recorder.signals() >= {t["signal"] for t in tags})
                granted = source.pdu_size
                assert granted is not None
                assert granted < 1000  # one read of the 1000-byte range cannot fit
                plan = source.plan(poll_groups(device)[0])
                assert [(s.start, s.length) for s in plan.spans] == [(40, 1000)]
                assert len(plan.jobs) > 1
                assert all(job.response_size() <= granted for job in plan.jobs)
                values = {s: x.value for s, x in recorder.latest().items()}
                assert values == {"process.first": 77, "process.straddling": -987_654, "process.last": 4321}

        asyncio.run(scenario())


def test_a_c_server_killed_mid_stream_is_followed_when_it_comes_back(
    c_snap7_python: Path, s7_device: Callable[..., Any]
) -> None:
    port = free_port()
    tick = {"signal": "process.tick", "address": "DB10.DBD100", "datatype": "int32"}  # counted up every 50 ms
    device = s7_device(f"s7://127.0.0.1:{port}", [*layout_tags(10), tick], interval_ms=20)

    def server() -> CSnap7Server:
        return CSnap7Server(port, areas(), tick=(0, 100), python=c_snap7_python)

    async def scenario() -> None:
        async with S7Source(device, backoff=QUICK) as source, Recorder(source) as recorder:
            # Down at startup: retried, nothing yielded.
            await until(lambda: source.counters.connect_failures >= 2)
            assert recorder.received == []
            first = server()
            first.start()
            try:
                await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), 20)
                await until(lambda: sum(r.sample.signal == "process.tick" for r in recorder.received) >= 3)
                first.kill()  # SIGKILL: the PLC dies
            finally:
                first.kill()
            outage = await sit_out_outage(source, recorder)
            with server():
                await outage.check_followed(source, recorder, {t.signal for t in device.tags}, "process.tick", 3)
            ticks = [
                int(r.sample.value or 0)
                for r in recorder.received[outage.before :]
                if r.sample.signal == "process.tick"
            ]
            assert ticks == sorted(ticks)

    asyncio.run(scenario())
