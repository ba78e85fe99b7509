"""The Prometheus collectors of one bridge process, made from `plantline.connectors.metric_names`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from plantline.bridge.records import REASONS
from plantline.connectors import metric_names as names


class BridgeMetrics:
    """The bridge's metrics in their own registry (served on /metrics by the health endpoint)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records = Counter(names.BRIDGE_RECORDS.family, names.BRIDGE_RECORDS.help, names.BRIDGE_RECORDS.labels,
                               registry=r)  # fmt: skip
        self.messages = Counter(names.BRIDGE_MESSAGES.family, names.BRIDGE_MESSAGES.help, registry=r)
        dead = names.BRIDGE_DEAD_LETTERS
        self.dead_letters = Counter(dead.family, dead.help, dead.labels, registry=r)
        for reason in REASONS:  # every reason has a series from the start, so rates and alerts see 0
            self.dead_letters.labels(reason)
        latency = names.BRIDGE_PRODUCE_LATENCY
        self.produce_latency = Histogram(latency.family, latency.help, buckets=latency.buckets, registry=r)
        batch = names.BRIDGE_BATCH_RECORDS
        self.batch_records = Gauge(batch.family, batch.help, batch.labels, registry=r)
        self.mqtt_lag = Gauge(names.BRIDGE_MQTT_LAG.family, names.BRIDGE_MQTT_LAG.help, registry=r)
        self.inbox = Gauge(names.BRIDGE_INBOX.family, names.BRIDGE_INBOX.help, registry=r)
        self.pending = Gauge(names.BRIDGE_PENDING.family, names.BRIDGE_PENDING.help, registry=r)
        self.mqtt_connected = Gauge(names.BRIDGE_MQTT_CONNECTED.family, names.BRIDGE_MQTT_CONNECTED.help, registry=r)
        self.kafka_up = Gauge(names.BRIDGE_KAFKA_UP.family, names.BRIDGE_KAFKA_UP.help, registry=r)
        self.ready = Gauge(names.BRIDGE_READY.family, names.BRIDGE_READY.help, registry=r)
