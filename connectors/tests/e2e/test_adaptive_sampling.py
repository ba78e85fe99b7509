"""Outbox pressure slows sampling down and says so in metrics; draining restores full rate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import generate_latest

from plantline.connectors.config import load_config
from plantline.connectors.runtime import SLOWDOWN_UNDER_PRESSURE
from plantline_testing.connector import running_connector
from plantline_testing.synthetic import SyntheticSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_pressure_slows_sources_and_draining_restores_them(line: Any) -> None:
    config = load_config(line.config_path)
    # A 1 MiB outbox fills in a few seconds at this rate while the broker is down.
    config = config.model_copy(
        update={"outbox": config.outbox.model_copy(update={"max_bytes": 1 << 20}), "metrics_port": 0}
    )
    source = SyntheticSource("filler", ["process.temperature", "process.pressure"], rate=40_000, limit=2_000_000)
    line.broker.stop()

    async def scenario() -> tuple[list[float], str, str]:
        async with running_connector(config, source) as connector:
            async with asyncio.timeout(90):
                while SLOWDOWN_UNDER_PRESSURE not in source.slowdowns:
                    await asyncio.sleep(0.1)
                under_pressure = generate_latest(connector.metrics.registry).decode()
                source.limit = source.produced  # stop producing, then let the broker drain the outbox
                await asyncio.to_thread(line.broker.start)
                while source.slowdowns[-1] != 1.0:
                    await asyncio.sleep(0.1)
                drained = generate_latest(connector.metrics.registry).decode()
        return source.slowdowns, under_pressure, drained

    slowdowns, under_pressure, drained = asyncio.run(scenario())
    assert slowdowns[-2:] == [SLOWDOWN_UNDER_PRESSURE, 1.0]
    assert f'plantline_sampling_slowdown_factor{{device="filler"}} {SLOWDOWN_UNDER_PRESSURE}' in under_pressure
    assert 'plantline_sampling_slowdown_factor{device="filler"} 1.0' in drained
    assert "plantline_outbox_bytes" in drained
