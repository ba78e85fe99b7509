"""Small batches: everything the outbox hands out is published, none is stranded in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plantline.connectors.config import load_config
from plantline.connectors.runtime import MAX_INFLIGHT_BATCHES
from plantline_testing.connector import running_connector
from plantline_testing.synthetic import SyntheticSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_many_small_batches_all_arrive_without_a_reconnect(line: Any) -> None:
    # Batches of 2 samples: pending(room * max_metrics) returns far more batches than the window.
    config = load_config(line.config_path)
    config = config.model_copy(
        update={"metrics_port": 0, "batching": config.batching.model_copy(update={"max_metrics": 2})}
    )
    total = MAX_INFLIGHT_BATCHES * 2 * 20
    source = SyntheticSource("filler", ["process.temperature"], rate=0, limit=total, chunk=2)

    async def scenario(reader: Any) -> int:
        async with running_connector(config, source):
            async with asyncio.timeout(120):
                while len({v.value for v in reader.values}) < total:
                    await asyncio.sleep(0.1)
        return len(line.broker.log_text().split("New client connected")) - 1

    with line.reader() as reader:
        connections = asyncio.run(scenario(reader))
    assert {v.value for v in reader.values} == set(range(total))
    assert connections == 2  # the reader and one connector session: nothing waited for a reconnect
