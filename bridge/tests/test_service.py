"""The bridge's acknowledgement rule and dead letters, with a recording stand-in for the Kafka client.

The stand-in records what the bridge hands to Kafka and delivers reports when the test says so;
the real client against a real Kafka is tested in tests/e2e/test_bridge_kafka_e2e.py.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from bridge_support import T0, bridge_config, edge, samples
from plantline.bridge.kafka import BatchStats
from plantline.bridge.records import TOO_LARGE, UNDECODABLE
from plantline.bridge.service import Bridge
from plantline.connectors.hostlink import AckToken, Inbound
from plantline.connectors.session import Outgoing


@dataclass
class Sent:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    on_delivery: Any


class Report:
    """What librdkafka hands a delivery callback as the message."""

    def __init__(self, sent: Sent) -> None:
        self._sent = sent

    def topic(self) -> str:
        return self._sent.topic

    def key(self) -> bytes:
        return self._sent.key

    def value(self) -> bytes:
        return self._sent.value

    def latency(self) -> float:
        return 0.004


@dataclass
class RecordingKafka:
    fatal: str | None = None
    up: bool = True
    batches: BatchStats = field(default_factory=BatchStats)
    sent: list[Sent] = field(default_factory=list)
    undelivered: list[Sent] = field(default_factory=list)

    def produce(self, topic: str, key: bytes, value: bytes, headers: Any, on_delivery: Any) -> None:
        sent = Sent(topic, key, value, headers, on_delivery)
        self.sent.append(sent)
        self.undelivered.append(sent)

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def deliver(self, count: int | None = None, error: KafkaError | None = None) -> None:
        batch = self.undelivered[: len(self.undelivered) if count is None else count]
        del self.undelivered[: len(batch)]
        for sent in batch:
            sent.on_delivery(error, Report(sent))


@dataclass
class RecordingLink:
    inbox: Any
    acked: list[int] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)

    def ack(self, token: AckToken) -> bool:
        self.acked.append(token.mid)
        return True

    def publish(self, command: Any) -> None:
        self.published.append(command.topic)


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Bridge:
    config = bridge_config(kafka={"bootstrap_servers": "127.0.0.1:1", "security_protocol": "PLAINTEXT"},
                           max_pending_messages=3)  # fmt: skip
    made = Bridge(config)
    monkeypatch.setattr(made, "kafka", RecordingKafka())
    monkeypatch.setattr(made, "link", RecordingLink(made.link.inbox))
    return made


def _stand_ins(bridge: Bridge) -> tuple[RecordingKafka, RecordingLink]:
    kafka, link = bridge.kafka, bridge.link
    assert isinstance(kafka, RecordingKafka)
    assert isinstance(link, RecordingLink)
    return kafka, link


def _feed(bridge: Bridge, messages: list[Outgoing], first_mid: int = 1) -> None:
    for mid, message in enumerate(messages, first_mid):
        bridge.receive(Inbound(AckToken(1, mid, 1), message.topic, message.payload))


def _line(tmp_path: Path) -> tuple[list[Outgoing], list[Outgoing]]:
    session = edge(tmp_path)
    session.remember(samples("filler", T0 - 1, {"state.run": False}))
    born = session.on_connected(T0)  # NBIRTH; the filler's DBIRTH with one value; the capper's without
    values = {"state.run": True, "counter.good": 7, "process.temperature": 20.5}
    return born, session.data(samples("filler", T0 + 1, values), T0 + 1, historical=False).messages


def test_a_message_is_acknowledged_only_after_kafka_acknowledged_every_record_of_it(
    bridge: Bridge, tmp_path: Path
) -> None:
    kafka, link = _stand_ins(bridge)
    born, data = _line(tmp_path)
    _feed(bridge, born)
    assert link.acked == [1, 3], "births without values make no record: acknowledged at once"
    kafka.deliver()
    assert link.acked == [1, 3, 2]
    _feed(bridge, data, first_mid=4)
    assert [s.topic for s in kafka.undelivered] == ["plantline.filler"] * 3
    kafka.deliver(2)
    assert link.acked == [1, 3, 2], "two of three records acknowledged: the message waits"
    assert bridge.lag_s() > 0
    kafka.deliver(1)
    assert link.acked == [1, 3, 2, 4]
    assert (bridge.counters.records, bridge.lag_s()) == (4, 0)
    assert (
        bridge.metrics.registry.get_sample_value("plantline_bridge_records_total", {"topic": "plantline.filler"}) == 4
    )


def test_a_record_kafka_refuses_as_too_large_becomes_a_dead_letter_then_the_message_is_acknowledged(
    bridge: Bridge, tmp_path: Path
) -> None:
    kafka, link = _stand_ins(bridge)
    born, data = _line(tmp_path)
    _feed(bridge, born + data)
    kafka.deliver(len(kafka.undelivered) - 1)
    kafka.deliver(1, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    (dead,) = kafka.undelivered
    assert dead.topic == "plantline.deadletter"
    assert dead.value == data[0].payload, "the original MQTT payload"
    assert dict(dead.headers)["reason"] == TOO_LARGE.encode()
    assert 4 not in link.acked
    kafka.deliver()
    assert link.acked[-1] == 4
    assert bridge.kafka.fatal is None
    assert bridge.metrics.registry.get_sample_value("plantline_bridge_dead_letters_total", {"reason": TOO_LARGE}) == 1


def test_a_refusal_retrying_cannot_cure_stops_the_bridge_without_acknowledging(bridge: Bridge, tmp_path: Path) -> None:
    kafka, link = _stand_ins(bridge)
    born, data = _line(tmp_path)
    _feed(bridge, born + data)
    kafka.deliver(1, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    kafka.deliver()
    assert link.acked == [1, 3], "nothing is acknowledged after the refusal"
    assert kafka.fatal is not None
    assert "127.0.0.1:1 refused a record to plantline.filler" in kafka.fatal
    assert "TOPIC_AUTHORIZATION_FAILED" in kafka.fatal


def test_garbage_goes_to_the_dead_letters_and_the_bridge_carries_on(bridge: Bridge, tmp_path: Path) -> None:
    kafka, link = _stand_ins(bridge)
    bridge.receive(Inbound(AckToken(1, 9, 1), "spBv1.0/site1/DDATA/line1/filler", b"\xff\x00garbage"))
    (dead,) = kafka.undelivered
    assert (dead.topic, dead.value, dict(dead.headers)["reason"]) == (
        "plantline.deadletter",
        b"\xff\x00garbage",
        UNDECODABLE.encode(),
    )
    kafka.deliver()
    assert link.acked == [9]
    born, data = _line(tmp_path)
    _feed(bridge, born + data, first_mid=10)
    kafka.deliver()
    assert sorted(link.acked) == [9, 10, 11, 12, 13]


def test_back_pressure_takes_no_more_than_max_pending_messages(bridge: Bridge, tmp_path: Path) -> None:
    kafka, link = _stand_ins(bridge)
    session = edge(tmp_path)
    session.remember(samples("filler", T0 - 1, {"state.run": False}))
    dbirth = session.on_connected(T0)[1]  # the filler's: one record
    for mid, message in enumerate([dbirth] * 6, 1):
        link.inbox.put(Inbound(AckToken(1, mid, 1), message.topic, message.payload))
    bridge.step()
    assert link.inbox.qsize() == 3, "three messages wait for Kafka: the rest stays at the broker's side"
    kafka.deliver()
    bridge.step()
    assert link.inbox.qsize() == 0


def test_a_dead_letter_above_the_limit_keeps_the_first_bytes_and_names_the_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = bridge_config(kafka={"bootstrap_servers": "127.0.0.1:1", "security_protocol": "PLAINTEXT",
                                  "producer": {"max_record_bytes": 4096}})  # fmt: skip
    bridge = Bridge(config)
    monkeypatch.setattr(bridge, "kafka", RecordingKafka())
    monkeypatch.setattr(bridge, "link", RecordingLink(bridge.link.inbox))
    kafka, _ = _stand_ins(bridge)
    garbage = bytes(range(256)) * 40  # 10 kB, not Sparkplug
    bridge.receive(Inbound(AckToken(1, 1, 1), "spBv1.0/site1/DDATA/line1/filler", garbage))
    (dead,) = kafka.undelivered
    headers = dict(dead.headers)
    assert dead.value == garbage[: 4096 - 2048]
    assert headers["original-bytes"] == b"10240"
    assert headers["original-sha256"] == hashlib.sha256(garbage).hexdigest().encode()


def test_the_ready_gauge_says_what_readyz_says(bridge: Bridge) -> None:
    kafka, link = _stand_ins(bridge)
    states: list[tuple[float | None, bool]] = []
    for mqtt, reachable, fatal in ((True, True, None), (False, True, None), (True, False, None), (True, True, "no")):
        if mqtt:
            link.connected.set()
        else:
            link.connected.clear()
        kafka.up, kafka.fatal = reachable, fatal
        bridge._observe()
        states.append((bridge.metrics.registry.get_sample_value("plantline_bridge_ready"), bridge.ready()))
    assert states == [(1, True), (0, False), (0, False), (0, False)]
