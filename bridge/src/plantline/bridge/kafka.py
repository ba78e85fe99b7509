"""The bridge's Kafka producer: confluent-kafka (librdkafka), idempotent, acks=all, batched, compressed.

librdkafka batches, compresses and retries in its own threads; Python hands it records and polls
for their delivery reports. The producer is idempotent (`enable.idempotence`: acks=all, retries
without duplicates or reordering within a partition, at most 5 requests in flight), so a record
Kafka acknowledged is written once and a machine's records keep their order.

Errors are sorted into three kinds: a record too large (its message goes to the dead-letter topic),
an authentication or authorisation failure (fatal at once, naming the endpoint: retrying with the
same credentials only fills the broker's log), and anything else librdkafka retries by itself.
Credentials are read from their files when the producer is made and go to librdkafka only: this
module never logs them, and the configuration it logs has no secret in it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from plantline.bridge.config import KafkaSettings
from plantline.bridge.records import Headers

log = logging.getLogger(__name__)

# Broker error codes that more attempts with the same settings will not cure.
_AUTH_ERRORS = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}
TOO_LARGE_ERRORS = {KafkaError.MSG_SIZE_TOO_LARGE}  # the broker's limit (message.max.bytes of a topic)
# librdkafka's own request envelope around a record: the client's message.max.bytes leaves room for it.
_ENVELOPE_BYTES = 64 * 1024


class KafkaUnavailable(Exception):
    """The bridge cannot produce to Kafka: credentials refused, topics missing, no broker reachable."""


def _secret(path: Any, what: str) -> str:
    try:
        return str(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise KafkaUnavailable(f"cannot read the {what} file {path}: {exc.strerror}") from None


def client_settings(kafka: KafkaSettings) -> dict[str, Any]:
    """Return librdkafka's connection settings (bootstrap, TLS, SASL), secrets read from their files."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol,
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 10_000,
    }
    if kafka.ca_file is not None:
        conf["ssl.ca.location"] = str(kafka.ca_file)
    sasl = kafka.sasl
    if sasl is None:
        return conf
    conf["sasl.mechanism"] = sasl.mechanism
    if sasl.mechanism == "OAUTHBEARER":
        conf["sasl.oauthbearer.method"] = "oidc"
        conf["sasl.oauthbearer.token.endpoint.url"] = sasl.token_endpoint
        conf["sasl.oauthbearer.client.id"] = sasl.client_id
        conf["sasl.oauthbearer.client.secret"] = _secret(sasl.client_secret_file, "OAuth client secret")
        if sasl.scope is not None:
            conf["sasl.oauthbearer.scope"] = sasl.scope
    else:
        conf["sasl.username"] = sasl.username
        conf["sasl.password"] = _secret(sasl.password_file, "SASL password")
    return conf


def producer_settings(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the producer's settings: idempotent, acks=all, the batching and compression configured."""
    p = kafka.producer
    return {
        **client_settings(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "compression.type": p.compression,
        "linger.ms": p.linger_ms,
        "batch.num.messages": p.batch_records,
        "batch.size": p.batch_bytes,
        "message.timeout.ms": p.message_timeout_ms,
        "queue.buffering.max.messages": p.queue_records,
        "queue.buffering.max.kbytes": 1024 * 1024,
        "message.max.bytes": max(p.max_record_bytes, p.batch_bytes) + _ENVELOPE_BYTES,
        "statistics.interval.ms": 5000,
    }


def describe(error: KafkaError) -> str:
    return f"{error.name()}: {error.str()}"


@dataclass
class BatchStats:
    """Records per batch over librdkafka's last statistics window (all topics together)."""

    avg: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    batches: int = 0


def batch_stats(statistics: dict[str, Any]) -> BatchStats:
    """Return the batch-size distribution from one librdkafka statistics report (its `batchcnt` windows)."""
    stats = BatchStats()
    weighted = 0.0
    for topic in statistics.get("topics", {}).values():
        window = topic.get("batchcnt", {})
        count = int(window.get("cnt", 0))
        if count == 0:
            continue
        stats.batches += count
        weighted += float(window.get("avg", 0)) * count
        stats.p50 = max(stats.p50, float(window.get("p50", 0)))
        stats.p99 = max(stats.p99, float(window.get("p99", 0)))
        stats.max = max(stats.max, float(window.get("max", 0)))
    stats.avg = weighted / stats.batches if stats.batches else 0.0
    return stats


DeliveryCallback = Callable[[KafkaError | None, Any], None]


@dataclass
class KafkaLink:
    """The producer and what its callbacks report: the last error, a fatal one, batch statistics."""

    settings: KafkaSettings
    fatal: str | None = None  # why the bridge must stop (credentials refused, a fatal producer error)
    up: bool = False
    batches: BatchStats = field(default_factory=BatchStats)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        conf = producer_settings(self.settings)
        conf["error_cb"] = self._on_error
        conf["stats_cb"] = self._on_stats
        conf["logger"] = logging.getLogger("plantline.bridge.librdkafka")  # not librdkafka's own stderr lines
        self.producer = Producer(conf)

    def _on_error(self, error: KafkaError) -> None:
        where = self.settings.endpoint
        if error.code() in _AUTH_ERRORS or error.fatal():
            with self._lock:
                if self.fatal is None:
                    self.fatal = f"Kafka at {where} refused the bridge: {describe(error)}"
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.up = False
        log.warning("Kafka at %s: %s", where, describe(error))

    def _on_stats(self, report: str) -> None:
        statistics = json.loads(report)
        batches = batch_stats(statistics)
        if batches.batches:  # an idle window says nothing of batch sizes: keep the last one that sent
            self.batches = batches
        brokers = statistics.get("brokers", {}).values()
        self.up = any(b.get("state") == "UP" for b in brokers if b.get("nodeid", -1) >= 0)

    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers,
                on_delivery: DeliveryCallback) -> None:  # fmt: skip
        """Hand one record to the client, waiting (serving delivery reports) while its queue is full."""
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)  # back-pressure: Kafka is slow or away; reports free the queue

    def poll(self, timeout: float = 0.0) -> int:
        return int(self.producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` s for every record handed over; return how many are still waiting."""
        return int(self.producer.flush(timeout))

    def _topics(self, timeout: float) -> set[str]:
        """Return the cluster's topics, stopping at the first refusal of the credentials (error_cb runs in poll)."""
        deadline = time.monotonic() + timeout
        while True:
            self.producer.poll(0.1)
            if self.fatal is not None:
                raise KafkaUnavailable(self.fatal)
            try:
                metadata = self.producer.list_topics(timeout=0.5)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(f"Kafka at {self.settings.endpoint} did not answer: {exc}") from None
                continue
            self.producer.poll(0)
            if self.fatal is not None:
                raise KafkaUnavailable(self.fatal)
            return {str(name) for name in metadata.topics}

    def check(self, topics: list[str], timeout: float, *, create_partitions: int | None = None) -> None:
        """Raise KafkaUnavailable unless Kafka answers, accepts the credentials and has every topic.

        With `create_partitions`, missing topics are created first (a plain Kafka for a local line;
        Event Hubs are made by the cloud stack).
        """
        existing = self._topics(timeout)
        missing = sorted(set(topics) - existing)
        if missing and create_partitions is not None:
            create_topics(self.settings, missing, create_partitions, timeout)
            missing = []
        if missing:
            raise KafkaUnavailable(f"Kafka at {self.settings.endpoint} has no topic {', '.join(missing)}")
        self.up = True


def create_topics(settings: KafkaSettings, names: list[str], partitions: int, timeout: float) -> None:
    """Create topics with the cluster's default replication factor (-1: Kafka's own default.replication.factor)."""
    admin = AdminClient(client_settings(settings))
    futures = admin.create_topics([NewTopic(n, partitions, -1) for n in names], request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailable(f"creating topic {name} at {settings.endpoint}: {exc}") from None
        log.info("created topic %s (%d partitions) at %s", name, partitions, settings.endpoint)
