"""`python -m plantline.connectors.sim.cip_server` runs cpppo on loopback until SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from pycomm3 import LogixDriver

from plantline.connectors.config import Tag
from plantline.connectors.sources.cip import logix_tag_definitions
from plantline_testing import free_port

pytestmark = [pytest.mark.peer, pytest.mark.slow]
MODULE = "plantline.connectors.sim.cip_server"


def test_standalone_simulator_serves_the_machine_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--port", str(port), "--machine", "Capper", "--ideal-cycle", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once cpppo listens and holds the machine's state
        assert banner.startswith(f"serving Capper on cip://127.0.0.1:{port} (Capper_<signal>)"), banner
        listeners = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=True)
        assert [line.split()[3] for line in listeners.stdout.splitlines()] == [f"127.0.0.1:{port}"]
        tags = [Tag(signal="cycle.ideal", address="Capper_cycle_ideal", datatype="float")]
        driver = LogixDriver(f"127.0.0.1:{port}", init_tags=False)
        driver.open()  # type: ignore[no-untyped-call]
        try:
            driver._tags = logix_tag_definitions(tags)
            reply = driver.read("Capper_cycle_ideal")
            assert not isinstance(reply, list)
            assert reply.value == 1.5
        finally:
            driver.close()  # type: ignore[no-untyped-call]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        time.sleep(0.2)
        gone = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=True)
        assert gone.stdout.strip() == ""  # cpppo ended with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_layout_is_printed_as_config_tags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", MODULE, "--port", "1", "--machine", "Capper", "--layout"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    tags = json.loads(out.stdout)
    assert tags[0] == {"signal": "state.run", "address": "Capper_state_run", "datatype": "bool"}
    assert {"signal": "process.fill_level", "address": "Capper_process_fill_level", "datatype": "int16",
            "scale": 0.1, "unit": "%"} in tags  # fmt: skip
