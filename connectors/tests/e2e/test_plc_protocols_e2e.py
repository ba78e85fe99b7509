"""S7 and EtherNet/IP machines end to end: simulator -> connector -> mosquitto -> a Sparkplug host."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import yaml

from plantline.connectors.sim import cip_server, s7_server
from plantline.connectors.sparkplug import MessageType
from plantline_testing import free_port

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MISSING = {"s7": ("DB99.DBW0", "int16"), "cip": ("Filler_no_such_tag", "int32")}


def _start(protocol: str, port: int, log: Any) -> subprocess.Popen[bytes]:
    module = f"plantline.connectors.sim.{protocol}_server"
    return subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), "--seed", "3", "--update-interval", "0.1"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # its own process group: the CIP simulator runs cpppo as a child
    )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the simulator's whole process group (a SIGKILL must take its children too)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=15)
    if sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("protocol", ["s7", "cip"])
def test_values_quality_and_device_loss(line: Any, protocol: str) -> None:
    port = free_port()
    tags = s7_server.layout_tags() if protocol == "s7" else cip_server.layout_tags()
    address, datatype = MISSING[protocol]
    tags.append({"signal": "process.missing", "address": address, "datatype": datatype})
    config = yaml.safe_load(line.config_path.read_text())
    endpoint = f"s7://127.0.0.1:{port}" if protocol == "s7" else f"cip://127.0.0.1:{port}"
    config["devices"] = [
        {"id": "capper", "protocol": protocol, "endpoint": endpoint, "sampling_interval_ms": 100, "tags": tags}
    ]
    line.config_path.write_text(yaml.safe_dump(config))
    log = (line.root / f"{protocol}-sim.log").open("ab")
    sim = _start(protocol, port, log)
    try:
        with line.reader() as reader:
            line.start_connector()
            reader.wait_for(lambda: len(reader.values_of("capper", "counter.total")) >= 2, 60, "counter.total")
            born = {m.name for m in reader.of(MessageType.DBIRTH, "capper")[0].payload.metrics}
            assert {t["signal"] for t in tags} <= born
            assert "kpi/oee" in born  # the layout has state.* signals, so KPIs are computed
            totals = [v.value for v in reader.values_of("capper", "counter.total")]
            assert all(isinstance(t, int) for t in totals)
            assert totals == sorted(totals)  # a production counter only goes up
            temperature = reader.values_of("capper", "process.temperature")
            assert temperature
            assert all(isinstance(v.value, float) for v in temperature)
            # The tag the PLC does not have: bad quality, the protocol's code kept, no value made up.
            reader.wait_for(lambda: bool(reader.values_of("capper", "process.missing")), 30, "the missing tag")
            missing = reader.values_of("capper", "process.missing")[0]
            assert missing.value is None
            assert missing.properties["Quality"] == 0
            assert isinstance(missing.properties["plantline.protocol_code"], int)
            # The PLC dies mid-stream: DDEATH; it returns: DBIRTH and data again.
            _stop(sim, signal.SIGKILL)
            reader.wait_for(lambda: bool(reader.of(MessageType.DDEATH, "capper")), 60, "DDEATH")
            births, seen = len(reader.of(MessageType.DBIRTH, "capper")), len(reader.values)
            sim = _start(protocol, port, log)
            reader.wait_for(lambda: len(reader.of(MessageType.DBIRTH, "capper")) > births, 90, "DBIRTH on return")
            reader.wait_for(lambda: len(reader.values) > seen + 5, 30, "data after return")
            assert not reader.errors
    finally:
        line.stop_connector()
        _stop(sim)
