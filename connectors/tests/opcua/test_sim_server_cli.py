"""`python -m plantline.connectors.sim.opcua_server` serves the simulator until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
from asyncua.client.client import Client

pytestmark = [pytest.mark.peer, pytest.mark.slow]


async def _read(url: str) -> tuple[object, object]:
    client = Client(url, timeout=10, watchdog_intervall=10.0)
    await asyncio.wait_for(client.connect(), 20)
    try:
        ideal = await asyncio.wait_for(client.get_node("ns=2;s=Press.cycle.ideal").read_value(), 10)
        run = await asyncio.wait_for(client.get_node("ns=2;s=Press.state.run").read_value(), 10)
        return ideal, run
    finally:
        await asyncio.wait_for(client.disconnect(), 10)


def test_standalone_server_binds_loopback_and_stops_on_sigterm(free_port: Callable[[], int]) -> None:
    port = free_port()
    args = ["--port", str(port), "--seed", "9", "--machine", "Press", "--ideal-cycle", "1.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "plantline.connectors.sim.opcua_server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the server listens
        assert banner.startswith(f"serving Press on opc.tcp://127.0.0.1:{port}/"), banner
        ideal, run = asyncio.run(_read(f"opc.tcp://127.0.0.1:{port}/"))
        assert ideal == 1.5
        assert isinstance(run, bool)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_standalone_server_refuses_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "plantline.connectors.sim.opcua_server", "--port", "1", "--speed", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "speed must be > 0" in proc.stderr
