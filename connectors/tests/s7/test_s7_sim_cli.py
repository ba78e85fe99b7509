"""`python -m plantline.connectors.sim.s7_server` serves on loopback until SIGTERM; `--layout` is data."""

from __future__ import annotations

import json
import signal
import socket

import pytest
import snap7

from plantline_testing import free_port
from plantline_testing.programs import listening_addresses, run_module, serving

pytestmark = [pytest.mark.peer]
MODULE = "plantline.connectors.sim.s7_server"


def test_standalone_server_binds_loopback_refuses_a_taken_port_and_stops_on_sigterm() -> None:
    port = free_port()
    args = ["--port", str(port), "--seed", "9", "--db", "7", "--ideal-cycle", "1.5"]
    with serving(MODULE, *args) as (proc, banner):
        assert banner.startswith(f"serving Filler on s7://127.0.0.1:{port}?rack=0&slot=1 (DB7)"), banner
        assert listening_addresses(port) == [f"127.0.0.1:{port}"]
        client = snap7.Client()
        client.connect("127.0.0.1", 0, 1, port)
        try:
            assert client.db_read_real(7, 20) == 1.5  # cycle.ideal
        finally:
            client.disconnect()
        # A second simulator on the same port must not silently share it (SO_REUSEPORT).
        second = run_module(MODULE, "--port", str(port))
        assert second.returncode == 1
        assert "Address already in use" in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_layout_is_printed_as_config_tags() -> None:
    tags = json.loads(run_module(MODULE, "--port", "1", "--db", "12", "--layout", check=True).stdout)
    assert tags[0] == {"signal": "state.run", "address": "DB12.DBX0.0", "datatype": "bool"}
    assert {"signal": "process.temperature", "address": "DB12.DBW28", "datatype": "int16", "scale": 0.01,
            "unit": "degC"} in tags  # fmt: skip
    assert len({t["signal"] for t in tags}) == 16


def test_bad_arguments_exit_2() -> None:
    assert run_module(MODULE, "--port", "1", "--speed", "0").returncode == 2
