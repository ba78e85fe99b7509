"""Fixtures shared by the connector tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module, so a server running on it can outlive a single test.

    Tests drive it with `loop.run_until_complete(...)` (pytest-asyncio is not a dependency).
    """
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.run_until_complete(event_loop.shutdown_asyncgens())
    event_loop.close()
