"""The bridge process: MQTT in, the Sparkplug host session, records to Kafka, PUBACKs after Kafka's.

One thread (the caller's) takes inbound messages in arrival order, lets the host session resolve
them, turns what it releases into records and hands them to the Kafka client; the client's delivery
reports come back on the same thread (`poll`). An MQTT message is acknowledged once Kafka has
acknowledged every record made from it (samples and dead letters alike): until then the broker
keeps it in the bridge's persistent session and delivers it again after a crash or a reconnect.
At most `max_pending_messages` messages wait for Kafka; beyond that the bridge stops reading and
the broker queues for it.

A record Kafka refuses as too large becomes a dead letter. Any other refusal that retrying cannot
cure (credentials, authorisation, a fatal producer error) stops the bridge with the reason, its
messages unacknowledged: the process exits 1 and its supervisor starts it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plantline.bridge.config import BridgeConfig
from plantline.bridge.kafka import TOO_LARGE_ERRORS, KafkaLink, describe
from plantline.bridge.metrics import BridgeMetrics
from plantline.bridge.records import SAMPLE_HEADERS, TOO_LARGE, DeadLetter, Router
from plantline.connectors.health import HealthServer
from plantline.connectors.hostlink import HostLink, Inbound, host_session
from plantline.connectors.sparkplug.host import HostSession, Outcome

log = logging.getLogger(__name__)

TAKE_AT_ONCE = 500  # messages taken from the inbox between two polls of the Kafka client
CHECK_TIMEOUT_S = 15.0
DEAD_LETTER_HEADROOM = 2048  # bytes of a dead letter's record kept for its headers


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Counters:
    """What the bridge did since it started, as its status file says it."""

    messages: int = 0  # MQTT messages acknowledged
    records: int = 0  # sample records Kafka acknowledged
    dead_letters: int = 0
    acks_lost: int = 0  # acknowledgements whose connection was gone: the broker delivers those again
    first_record_at: float | None = None  # wall-clock times of the first and the latest record acknowledged
    last_record_at: float | None = None


class Pending:
    """One MQTT message from its arrival to its acknowledgement: the host session's token."""

    __slots__ = ("bridge", "inbound", "kafka_topic", "outstanding", "received", "records", "released")

    def __init__(self, bridge: Bridge, inbound: Inbound) -> None:
        self.bridge, self.inbound = bridge, inbound
        self.received = time.monotonic()
        self.outstanding = 0  # records handed to Kafka and not yet acknowledged
        self.records = 0
        self.kafka_topic = ""
        self.released = False  # the host session is done with it (a parked message is not yet)

    def delivered(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report of one record of this message (on the bridge's thread)."""
        self.outstanding -= 1
        if error is not None:
            self.bridge.refused(self, error, message)
        if self.outstanding == 0 and self.released:
            self.bridge.finish(self, message.latency())


class Bridge:
    """One bridge process for a configuration; `run` until `stop` is set or Kafka refuses it."""

    def __init__(self, config: BridgeConfig, *, metrics: BridgeMetrics | None = None) -> None:
        self.config = config
        self.host: HostSession[Pending] = host_session(config.mqtt, config.group_ids)
        self.link = HostLink.of(config.mqtt, self.host)
        self.router = Router(config)
        self.kafka = KafkaLink(config.kafka)
        self.metrics = metrics if metrics is not None else BridgeMetrics()
        self.counters = Counters()
        self._waiting: dict[int, Pending] = {}  # by id(), in arrival order: the oldest is the MQTT lag
        self._tick_at = 0.0
        self.health: HealthServer | None = None

    # -- the process ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> str | None:
        """Bridge until `stop` is set; return None, or why Kafka made the bridge stop."""
        self.kafka.check(sorted(set(self.config.topics.values()) | {self.config.kafka.dlq_topic}), CHECK_TIMEOUT_S,
                         create_partitions=self.config.kafka.create_topics_partitions)  # fmt: skip
        log.info("Kafka at %s accepted the bridge", self.config.kafka.endpoint)
        health = self.config.health
        self.health = HealthServer(address=health.address, port=health.port, registry=self.metrics.registry,
                                   ready=self.ready)  # fmt: skip
        self.health.start()
        self.link.open(self.host, _now_ms())
        try:
            while not stop.is_set() and self.kafka.fatal is None:
                self.step()
        finally:
            self._shutdown()
        if self.kafka.fatal is not None:
            log.error("%s; stopping, its messages unacknowledged", self.kafka.fatal)
        return self.kafka.fatal

    def _shutdown(self) -> None:
        if self.kafka.fatal is None:
            left = self.kafka.flush(10.0)  # reports of records handed over acknowledge their messages
            if left:
                log.warning("%d records still unacknowledged by Kafka: their messages come again", left)
        self.link.stop(self.host.shutdown())
        if self.health is not None:
            self.health.stop()
        self._write_status()

    def ready(self) -> bool:
        """Return whether the bridge moves data: MQTT connected, Kafka reachable, nothing fatal."""
        return self.link.connected.is_set() and self.kafka.up and self.kafka.fatal is None

    def step(self) -> None:
        """Take what the inbox holds (as far as back-pressure allows), then serve Kafka's reports."""
        inbox = self.link.inbox
        taken = 0
        while taken < TAKE_AT_ONCE and len(self._waiting) < self.config.max_pending_messages:
            try:
                inbound = inbox.get(timeout=0.01) if taken == 0 else inbox.get_nowait()
            except queue.Empty:
                break
            taken += 1
            self.receive(inbound)
        self.kafka.poll(0.0 if taken else 0.005)
        now = time.monotonic()
        if now >= self._tick_at:
            self._tick_at = now + 1.0
            self.absorb(self.host.tick(_now_ms()))
            self._observe()
            self._write_status()

    # -- messages ---------------------------------------------------------------------------------

    def receive(self, inbound: Inbound) -> None:
        """Feed one inbound message to the host session and produce what it releases."""
        pending = Pending(self, inbound)
        self._waiting[id(pending)] = pending
        self.absorb(self.host.receive(pending, inbound.topic, inbound.payload, _now_ms()))

    def absorb(self, outcome: Outcome[Pending]) -> None:
        for release in outcome.released:
            pending = release.token
            made = self.router.make(release, pending.inbound.topic, pending.inbound.payload)
            delivered = pending.delivered
            produce = self.kafka.produce
            for record in made.records:
                pending.outstanding += 1
                produce(record.topic, record.key, record.value, SAMPLE_HEADERS, delivered)
            pending.records += len(made.records)
            if made.records:
                pending.kafka_topic = made.records[0].topic
            for dead in made.dead:
                self.dead_letter(pending, dead)
            pending.released = True
            if pending.outstanding == 0:
                self.finish(pending, None)
        for command in outcome.commands:
            self.link.publish(command)

    def dead_letter(self, pending: Pending, dead: DeadLetter) -> None:
        """Produce a dead letter of `pending`'s message: its original bytes, the reason in headers."""
        if dead.reason != TOO_LARGE:
            log.warning("dead letter (%s) from %s: %s", dead.reason, dead.mqtt_topic, dead.detail)
        value, headers = dead.payload, dead.headers()
        limit = self.config.kafka.producer.max_record_bytes - DEAD_LETTER_HEADROOM
        if len(value) > limit:
            headers += [("original-bytes", str(len(value)).encode()),
                        ("original-sha256", hashlib.sha256(value).hexdigest().encode())]  # fmt: skip
            value = value[:limit]
        pending.outstanding += 1
        self.metrics.dead_letters.labels(dead.reason).inc()
        self.counters.dead_letters += 1
        self.kafka.produce(self.config.kafka.dlq_topic, dead.key, value, headers, pending.delivered)

    def refused(self, pending: Pending, error: Any, message: Any) -> None:
        """Handle a record Kafka refused: too large goes to the dead letters, anything else is fatal."""
        if error.code() in TOO_LARGE_ERRORS and message.topic() != self.config.kafka.dlq_topic:
            pending.records -= 1
            why = (
                f"Kafka refused a record of {len(message.value() or b'')} bytes to {message.topic()}: {describe(error)}"
            )
            self.dead_letter(pending, DeadLetter(TOO_LARGE, why, pending.inbound.topic, pending.inbound.payload,
                                                 message.key() or b""))  # fmt: skip
            return
        if self.kafka.fatal is None:
            self.kafka.fatal = f"Kafka at {self.config.kafka.endpoint} refused a record to {message.topic()}: " + (
                describe(error)
            )

    def finish(self, pending: Pending, latency_s: float | None) -> None:
        """Acknowledge a message whose records Kafka has all acknowledged."""
        if self.kafka.fatal is not None:
            return  # stopping: leave it unacknowledged
        self._waiting.pop(id(pending), None)
        if not self.link.ack(pending.inbound.token):
            self.counters.acks_lost += 1
        c = self.counters
        c.messages += 1
        if pending.records:
            c.records += pending.records
            c.last_record_at = time.time()
            if c.first_record_at is None:
                c.first_record_at = c.last_record_at
        self.metrics.messages.inc()
        if pending.records:
            self.metrics.records.labels(pending.kafka_topic).inc(pending.records)
        if latency_s is not None:
            self.metrics.produce_latency.observe(latency_s)

    # -- status -----------------------------------------------------------------------------------

    def lag_s(self) -> float:
        """Return the age of the oldest message received and not yet acknowledged (0 when none)."""
        oldest = next(iter(self._waiting.values()), None)
        return 0.0 if oldest is None else time.monotonic() - oldest.received

    def _observe(self) -> None:
        m, batches = self.metrics, self.kafka.batches
        m.mqtt_lag.set(self.lag_s())
        m.inbox.set(self.link.inbox.qsize())
        m.pending.set(len(self._waiting))
        m.mqtt_connected.set(1 if self.link.connected.is_set() else 0)
        m.kafka_up.set(1 if self.kafka.up else 0)
        m.ready.set(1 if self.ready() else 0)
        for quantile, value in (("avg", batches.avg), ("0.5", batches.p50), ("0.99", batches.p99),
                                ("max", batches.max)):  # fmt: skip
            m.batch_records.labels(quantile).set(value)

    def status(self) -> dict[str, Any]:
        return {
            "updated": time.time(),
            "pid": os.getpid(),
            "mqtt": "connected" if self.link.connected.is_set() else "down",
            "kafka": self.config.kafka.endpoint,
            "kafka_up": self.kafka.up,
            "fatal": self.kafka.fatal,
            **asdict(self.counters),
            "pending": len(self._waiting),
            "lag_s": round(self.lag_s(), 3),
            "batch_records": asdict(self.kafka.batches),
            "host": asdict(self.host.stats),
        }

    def _write_status(self) -> None:
        path = self.config.status_file
        if path is not None:
            _write_json(path, self.status())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    with contextlib.suppress(OSError):
        os.replace(tmp, path)
