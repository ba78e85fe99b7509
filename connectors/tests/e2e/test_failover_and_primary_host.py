"""Broker failover in priority order, and the primary host: births wait for it, its going away ends the session.

Against real mosquitto brokers (mutual TLS); the host is a Sparkplug reader that publishes the
primary host's retained STATE messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from plantline.connectors.config import ConnectorConfig, load_config
from plantline.connectors.session import Phase
from plantline.connectors.sparkplug import MessageType, state_payload_offline, state_payload_online
from plantline_testing import free_port
from plantline_testing.connector import running_connector
from plantline_testing.mosquitto import Broker
from plantline_testing.sparkplug_reader import Received, SparkplugReader
from plantline_testing.synthetic import SyntheticSource

STATE_TOPIC = "spBv1.0/STATE/scada"
COUNT = 3_000  # samples the source yields, 300 per second

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


# -- the primary host goes offline ----------------------------------------------------------------


@contextlib.contextmanager
def second_broker(line: Any, tmp_path: Path) -> Iterator[Broker]:
    """Another mosquitto with the same PKI as the line's broker, on its own port."""
    directory = tmp_path / "broker-b"
    directory.mkdir()
    for name in ("trust-bundle.pem", "crl.pem", "broker.crt", "broker.key"):
        shutil.copy(line.broker.directory / name, directory / name)
    broker = Broker(directory, free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def reader_on(line: Any, port: int, client_id: str) -> SparkplugReader:
    files = line.root / "reader"
    return SparkplugReader(
        port=port, group_id="site1", ca=files / "ca.crt", cert=files / "client.crt", key=files / "client.key",
        client_id=client_id,
    )  # fmt: skip


def with_host(line: Any, offline: str, *ports: int) -> ConnectorConfig:
    config = load_config(line.config_path)
    brokers = [config.brokers[0].model_copy(update={"port": port}) for port in ports]
    sparkplug = config.sparkplug.model_copy(update={"primary_host_id": "scada", "primary_host_offline": offline})
    return config.model_copy(update={"sparkplug": sparkplug, "brokers": brokers, "metrics_port": 0})


def bdseq(message: Received) -> int:
    value = next(m.value for m in message.payload.metrics if m.name == "bdSeq")
    assert isinstance(value, int), f"bdSeq is a {type(value).__name__}, not an integer"
    return value


async def until(condition: Any, what: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def host_says(reader: SparkplugReader, online: bool, timestamp: int) -> None:
    payload = state_payload_online(timestamp) if online else state_payload_offline(timestamp)
    reader.publish(STATE_TOPIC, payload, retain=True)  # a host's STATE is retained


def test_operational_behavior_primary_application_state_with_multiple_servers_walk(line: Any, tmp_path: Path) -> None:
    source = SyntheticSource("filler", ["process.temperature"], rate=300, limit=COUNT, chunk=10)
    t1 = int(time.time() * 1000)
    with (
        second_broker(line, tmp_path) as broker_b,
        line.reader() as on_a,
        reader_on(line, broker_b.port, "e2e-reader-b") as on_b,
    ):
        config = with_host(line, "disconnect", line.broker.port, broker_b.port)
        host_says(on_a, True, t1)
        host_says(on_b, True, t1)

        async def scenario() -> float:
            async with running_connector(config, source) as connector:
                await until(lambda: len(on_a.values) >= 50, "data on broker A")
                # The host loses broker A: its death STATE, newer than any seen, reaches the edge node.
                await asyncio.to_thread(host_says, on_a, False, t1 + 1_000)
                await until(lambda: on_a.of(MessageType.NDEATH), "the NDEATH on broker A")
                # On broker B the host's retained STATE is the older online one: stale, births wait.
                await until(lambda: connector.session.phase is Phase.WAITING_FOR_HOST, "waiting on broker B")
                await asyncio.sleep(1.5)
                assert not on_b.of(MessageType.NBIRTH)
                online_at = time.time()
                await asyncio.to_thread(host_says, on_b, True, t1 + 2_000)
                await until(lambda: {v.value for v in [*on_a.values, *on_b.values]} >= set(range(COUNT)), "all")
                return online_at

        online_at = asyncio.run(scenario())
        a, b = list(on_a.messages), list(on_b.messages)
    assert [m.kind for m in a if m.kind is not MessageType.DDATA][:2] == [MessageType.NBIRTH, MessageType.DBIRTH]
    (death,) = [m for m in a if m.kind is MessageType.NDEATH]
    assert bdseq(death) == bdseq(a[0])
    assert death.payload.timestamp is not None  # published by the edge node, not the Will (which has none)
    assert a.index(death) > max(i for i, m in enumerate(a) if m.kind is MessageType.DDATA)  # nothing after it
    nbirth_b = next(m for m in b if m.kind is MessageType.NBIRTH)
    assert nbirth_b.at >= online_at  # births on B only once the host said it is online there
    assert bdseq(nbirth_b) == bdseq(a[0]) + 1  # a new session
    assert "line1 disconnected" in line.broker.log_text()  # a DISCONNECT, not a dropped connection


def test_a_primary_host_offline_holds_data_on_the_session_when_configured_to_hold(line: Any) -> None:
    source = SyntheticSource("filler", ["process.temperature"], rate=300, limit=COUNT, chunk=10)
    t1 = int(time.time() * 1000)
    with line.reader() as reader:
        config = with_host(line, "hold", line.broker.port)
        host_says(reader, True, t1)

        async def scenario() -> None:
            async with running_connector(config, source) as connector:
                await until(lambda: len(reader.values) >= 50, "data")
                await asyncio.to_thread(host_says, reader, False, t1 + 1_000)
                await until(lambda: connector.session.phase is Phase.WAITING_FOR_HOST, "data held")
                await asyncio.sleep(0.5)  # what was in flight arrives
                held = len(reader.values)
                await asyncio.sleep(1.0)
                assert len(reader.values) == held  # nothing published while the host is offline
                await asyncio.to_thread(host_says, reader, True, t1 + 2_000)
                await until(lambda: {v.value for v in reader.values} >= set(range(COUNT)), "all")

        asyncio.run(scenario())
        births = reader.of(MessageType.NBIRTH)
    assert len(births) == 2
    assert bdseq(births[0]) == bdseq(births[1])  # the same session, born again
    assert not [m for m in reader.messages[: reader.messages.index(births[1])] if m.kind is MessageType.NDEATH]
