"""Fixtures for the OPC UA tests: free loopback ports and a shared simulator on the module's loop.

An asyncua server takes seconds to build its standard address space, so the tests of one
module share one simulator, running on one event loop that each test drives with
`loop.run_until_complete(...)` (pytest-asyncio is not a dependency).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from plantline.connectors.config import Device
from plantline.connectors.sim.opcua_server import OpcUaMachineServer

SERVER_START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture(scope="module")
def sim(loop: asyncio.AbstractEventLoop) -> Iterator[OpcUaMachineServer]:
    """A running simulated Filler (seed 7, model time x20, updates every 50 ms)."""
    server = OpcUaMachineServer(_free_port(), seed=7, update_interval_s=0.05, speed=20.0)
    loop.run_until_complete(asyncio.wait_for(server.start(), SERVER_START_TIMEOUT))
    yield server
    loop.run_until_complete(asyncio.wait_for(server.stop(), SERVER_START_TIMEOUT))


def make_device(url: str, tags: list[dict[str, Any]], **options: Any) -> Device:
    """A Device for `url` sampling every 50 ms; `options` go to its `opcua` section."""
    return Device.model_validate(
        {
            "id": "filler-1",
            "protocol": "opcua",
            "endpoint": url,
            "sampling_interval_ms": 50,
            "opcua": {"publishing_interval_ms": 50, **options},
            "tags": tags,
        }
    )


@pytest.fixture
def device() -> Callable[..., Device]:
    """`device(url, tags, **opcua_options)` builds a Device (see make_device)."""
    return make_device
