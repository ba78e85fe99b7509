"""Every session of the edge node starts NBIRTH, a DBIRTH of every device, then data (payloads-dbirth-order).

The connector runs as a process with several devices, one of them unplugged (its PLC never
answers), and is restarted with a backlog in its outbox; a Sparkplug host checks the order of
what it receives.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from plantline.connectors.sparkplug import MessageType
from plantline_testing import free_port
from plantline_testing.sparkplug_reader import Received

pytestmark = [pytest.mark.peer, pytest.mark.slow]

READING = ("filler", "capper", "labeler")  # three devices on the simulator
DEVICES = (*READING, "unplugged")  # and one whose PLC is not there


def _sessions(messages: list[Received]) -> list[list[Received]]:
    """Split what the host received at each NBIRTH (what comes before the first is left out)."""
    sessions: list[list[Received]] = []
    for message in messages:
        if message.kind is MessageType.NBIRTH:
            sessions.append([])
        if sessions:
            sessions[-1].append(message)
    return sessions


def _bdseq(message: Received) -> object:
    return next(m.value for m in message.payload.metrics if m.name == "bdSeq")


def test_payloads_dbirth_order_after_a_restart_with_a_backlog_and_several_devices(line: Any) -> None:
    config = yaml.safe_load(line.config_path.read_text())
    filler = config["devices"][0]
    devices = [{**filler, "id": device} for device in READING]
    devices.append({**filler, "id": "unplugged", "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/"})
    config["devices"] = devices
    line.config_path.write_text(yaml.safe_dump(config))
    with line.reader() as reader:
        line.start_sim()
        line.start_connector()
        flowing = lambda: all(reader.of(MessageType.DDATA, d) for d in READING)  # noqa: E731
        reader.wait_for(flowing, 60, "data of every reading device")
        line.broker.kill()  # samples pile up in the outbox
        time.sleep(3)
        assert line.stop_connector() == 0
        subscribed = reader.subscriptions
        line.broker.start()
        reader.wait_for(lambda: reader.subscriptions > subscribed, 30, "the host back on the broker")
        line.start_connector()  # with a backlog of every reading device
        replayed = lambda: all(any(v.historical for v in reader.values if v.device_id == d) for d in READING)  # noqa: E731
        reader.wait_for(replayed, 60, "the backlog of every reading device")
        live = len(reader.values)
        reader.wait_for(lambda: len(reader.values) > live + 20, 30, "live data after the backlog")
        messages = list(reader.messages)
        assert not reader.errors
        assert reader.unresolved() == 0  # no data ever came before its device's DBIRTH

    sessions = _sessions(messages)
    assert len(sessions) == 2  # one per run: no host had to ask for a rebirth
    assert _bdseq(sessions[1][0]) != _bdseq(sessions[0][0])
    for session in sessions:
        head = [(m.kind, m.device_id) for m in session[: 1 + len(DEVICES)]]
        assert head == [(MessageType.NBIRTH, None)] + [(MessageType.DBIRTH, d) for d in DEVICES]
        assert [m.payload.seq for m in session[: 1 + len(DEVICES)]] == list(range(1 + len(DEVICES)))
        assert {m.kind for m in session[1 + len(DEVICES) :]} <= {MessageType.DDATA, MessageType.DDEATH}
        unplugged = session[len(DEVICES)].payload
        assert all(m.value is None for m in unplugged.metrics)  # born without values ...
        assert all(dict(m.properties)["Quality"].value == 0 for m in unplugged.metrics)  # ... and bad
    after_restart = sessions[1][1 + len(DEVICES) :]
    assert {m.device_id for m in after_restart if m.kind is MessageType.DDATA} == set(READING)
    assert not any(m.kind is MessageType.DDEATH for m in after_restart)
