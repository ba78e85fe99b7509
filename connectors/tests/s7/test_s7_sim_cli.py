"""`python -m plantline.connectors.sim.s7_server` serves on loopback until SIGTERM; `--layout` is data."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest
import snap7

from plantline_testing import free_port

pytestmark = [pytest.mark.peer]
MODULE = "plantline.connectors.sim.s7_server"


def test_standalone_server_binds_loopback_refuses_a_taken_port_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--port", str(port), "--seed", "9", "--db", "7", "--ideal-cycle", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the server listens
        assert banner.startswith(f"serving Filler on s7://127.0.0.1:{port}?rack=0&slot=1 (DB7)"), banner
        listeners = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=True)
        assert [line.split()[3] for line in listeners.stdout.splitlines()] == [f"127.0.0.1:{port}"]
        client = snap7.Client()
        client.connect("127.0.0.1", 0, 1, port)
        try:
            assert client.db_read_real(7, 20) == 1.5  # cycle.ideal
        finally:
            client.disconnect()
        # A second simulator on the same port must not silently share it (SO_REUSEPORT).
        second = subprocess.run(
            [sys.executable, "-m", MODULE, "--port", str(port)], capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 1
        assert "Address already in use" in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_layout_is_printed_as_config_tags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", MODULE, "--port", "1", "--db", "12", "--layout"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    tags = json.loads(out.stdout)
    assert tags[0] == {"signal": "state.run", "address": "DB12.DBX0.0", "datatype": "bool"}
    assert {"signal": "process.temperature", "address": "DB12.DBW28", "datatype": "int16", "scale": 0.01,
            "unit": "degC"} in tags  # fmt: skip
    assert len({t["signal"] for t in tags}) == 16


def test_bad_arguments_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", MODULE, "--port", "1", "--speed", "0"], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 2
