"""A connector run as a task of the test's event loop, reading one source for all its devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from plantline.connectors.config import ConnectorConfig
from plantline.connectors.runtime import Connector
from plantline.connectors.sources import Source

STOP_TIMEOUT_S = 30.0


@asynccontextmanager
async def running_connector(config: ConnectorConfig, source: Source) -> AsyncIterator[Connector]:
    """Yield a running Connector whose every device reads `source`; the block's end stops it and waits."""
    connector = Connector(config, source_factory=lambda _device: source)
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    try:
        yield connector
    finally:
        stop.set()
        await asyncio.wait_for(task, STOP_TIMEOUT_S)
