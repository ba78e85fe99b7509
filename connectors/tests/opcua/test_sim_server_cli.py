"""`python -m plantline.connectors.sim.opcua_server` serves the simulator until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest
from asyncua.client.client import Client

from plantline_testing.programs import run_module, serving

pytestmark = [pytest.mark.peer, pytest.mark.slow]
MODULE = "plantline.connectors.sim.opcua_server"


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
    with serving(MODULE, *args) as (proc, banner):
        assert banner.startswith(f"serving Press on opc.tcp://127.0.0.1:{port}/"), banner
        ideal, run = asyncio.run(_read(f"opc.tcp://127.0.0.1:{port}/"))
        assert ideal == 1.5
        assert isinstance(run, bool)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_standalone_server_refuses_bad_arguments() -> None:
    proc = run_module(MODULE, "--port", "1", "--speed", "0")
    assert proc.returncode == 2
    assert "speed must be > 0" in proc.stderr
