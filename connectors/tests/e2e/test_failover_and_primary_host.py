"""Broker failover in priority order, and births held until the primary host is ONLINE."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client import generate_latest

from plantline.connectors.config import load_config
from plantline.connectors.session import Phase
from plantline.connectors.sparkplug import MessageType
from plantline_testing import free_port
from plantline_testing.connector import running_connector
from plantline_testing.synthetic import SyntheticSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_the_first_broker_that_answers_in_priority_order_is_used(line: Any) -> None:
    config = load_config(line.config_path)
    real = config.brokers[0]
    dead = real.model_copy(update={"port": free_port()})  # nothing listens there
    config = config.model_copy(update={"brokers": [dead, real], "metrics_port": 0})
    source = SyntheticSource("filler", ["process.temperature"], rate=200, limit=10_000)

    async def scenario(reader: Any) -> str:
        async with running_connector(config, source) as connector:
            async with asyncio.timeout(60):
                while len(reader.values) < 50:
                    await asyncio.sleep(0.05)
            return generate_latest(connector.metrics.registry).decode()

    with line.reader() as reader:
        metrics = asyncio.run(scenario(reader))
    assert f'plantline_mqtt_connected{{broker="localhost:{real.port}"}} 1.0' in metrics
    assert f'broker="localhost:{dead.port}"' not in metrics  # it never had a session


def test_births_wait_for_the_primary_host_state(line: Any) -> None:
    config = load_config(line.config_path)
    config = config.model_copy(
        update={"sparkplug": config.sparkplug.model_copy(update={"primary_host_id": "scada"}), "metrics_port": 0}
    )
    source = SyntheticSource("filler", ["process.temperature"], rate=200, limit=10_000)

    async def scenario(reader: Any) -> tuple[int, int]:
        async with running_connector(config, source) as connector:
            async with asyncio.timeout(60):
                while connector.session.phase is not Phase.WAITING_FOR_HOST:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)  # connected: nothing may be born yet
                before = len(reader.of(MessageType.NBIRTH)) + len(reader.of(MessageType.DDATA))
                online = json.dumps({"online": True, "timestamp": int(time.time() * 1000)}).encode()
                await asyncio.to_thread(reader.publish, "spBv1.0/STATE/scada", online)
                while len(reader.values) < 20:
                    await asyncio.sleep(0.05)
                return before, len(reader.of(MessageType.NBIRTH))

    with line.reader() as reader:
        before, births = asyncio.run(scenario(reader))
    assert before == 0  # message-flow-edge-node-birth-publish-subscribe
    assert births == 1
