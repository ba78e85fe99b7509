"""The MQTT link against a real mosquitto (mutual TLS): driven by the event loop, no network thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from plantline.connectors.config import load_config
from plantline.connectors.mqtt import ConnectFailed, Inbound, MqttLink, Will
from plantline_testing import free_port

pytestmark = [pytest.mark.peer, pytest.mark.slow]

WILL = Will("spBv1.0/site1/NDEATH/line1", b"", 1)


def test_a_session_publishes_and_awaits_pubacks_on_the_loop_without_a_thread(line: Any) -> None:
    config = load_config(line.config_path)
    link = MqttLink(client_id="link-test", brokers=config.brokers)
    acked: list[int] = []
    received: list[Inbound] = []

    async def scenario() -> tuple[list[int], list[str], int, str]:
        async with link.session(WILL, on_message=received.append, on_puback=acked.append) as session:
            threads = [t.name for t in threading.enumerate()]
            sock = session._client.socket()  # what paho writes to
            assert isinstance(sock, socket.socket)
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            session.subscribe([("spBv1.0/site1/NCMD/line1", 1)])
            mids = [session.publish("spBv1.0/site1/DDATA/line1/filler", bytes(100), 1) for _ in range(50)]
            await asyncio.wait_for(asyncio.gather(*(session.delivered(mid) for mid in mids)), 10)
            line.broker.kill()
            await asyncio.wait_for(session.lost.wait(), 30)  # the loop saw the socket close
            return mids, threads, nodelay, session.reason

    mids, threads, nodelay, reason = asyncio.run(scenario())
    assert sorted(acked) == sorted(mids)  # every PUBACK reached on_puback, on the loop
    assert not [name for name in threads if "paho" in name]
    assert nodelay  # paho never sets it; the link does
    assert reason


def test_leaving_the_block_disconnects_and_a_refusal_names_every_broker(line: Any) -> None:
    config = load_config(line.config_path)
    dead = config.brokers[0].model_copy(update={"port": free_port()})

    async def scenario() -> int:
        link = MqttLink(client_id="link-test", brokers=[dead, config.brokers[0]])
        async with link.session(WILL, on_message=lambda _m: None, on_puback=lambda _m: None) as session:
            index = session.index
        lonely = MqttLink(client_id="link-test", brokers=[dead]).session(
            WILL, on_message=lambda _m: None, on_puback=lambda _m: None
        )
        with pytest.raises(ConnectFailed, match=f"{dead.port}: cannot reach the broker"):
            await lonely.__aenter__()
        return index

    assert asyncio.run(scenario()) == 1  # the first that answers, in list order
    log = line.broker.log_text()
    assert "Client link-test disconnected" in log  # a DISCONNECT: the Will is not published
