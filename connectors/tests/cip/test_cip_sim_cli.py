"""`python -m plantline.connectors.sim.cip_server` runs cpppo on loopback until SIGTERM."""

from __future__ import annotations

import json
import signal
import time

import pytest
from pycomm3 import LogixDriver

from plantline.connectors.config import Tag
from plantline.connectors.sources.cip import logix_tag_definitions
from plantline_testing import free_port
from plantline_testing.programs import listening_addresses, run_module, serving

pytestmark = [pytest.mark.peer, pytest.mark.slow]
MODULE = "plantline.connectors.sim.cip_server"


def test_standalone_simulator_serves_the_machine_and_stops_on_sigterm() -> None:
    port = free_port()
    args = ["--port", str(port), "--machine", "Capper", "--ideal-cycle", "1.5"]
    with serving(MODULE, *args) as (proc, banner):  # banner: cpppo listens, holding the state
        assert banner.startswith(f"serving Capper on cip://127.0.0.1:{port} (Capper_<signal>)"), banner
        assert listening_addresses(port) == [f"127.0.0.1:{port}"]
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
        assert listening_addresses(port) == []  # cpppo ended with it


def test_layout_is_printed_as_config_tags() -> None:
    tags = json.loads(run_module(MODULE, "--port", "1", "--machine", "Capper", "--layout", check=True).stdout)
    assert tags[0] == {"signal": "state.run", "address": "Capper_state_run", "datatype": "bool"}
    assert {"signal": "process.fill_level", "address": "Capper_process_fill_level", "datatype": "int16",
            "scale": 0.1, "unit": "%"} in tags  # fmt: skip
