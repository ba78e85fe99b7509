"""Prometheus metrics of a connector, defined once: dashboards and alert rules import these names."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from plantline.connectors.kpi import KPI_GAUGES, KPI_LABELS

SOURCE_CONNECTED = "plantline_source_connected"
SOURCE_RECONNECTS = "plantline_source_reconnects_total"
SOURCE_READ_ERRORS = "plantline_source_read_errors_total"
SOURCE_LAST_SAMPLE = "plantline_source_last_sample_timestamp_seconds"
SAMPLES = "plantline_samples_total"
SAMPLES_BAD_QUALITY = "plantline_samples_bad_quality_total"
MQTT_CONNECTED = "plantline_mqtt_connected"
MQTT_REFUSED = "plantline_mqtt_refused"
SPARKPLUG_MESSAGES = "plantline_sparkplug_messages_total"
OUTBOX_BATCHES = "plantline_outbox_batches"
OUTBOX_SAMPLES = "plantline_outbox_samples"
OUTBOX_BYTES = "plantline_outbox_bytes"
OUTBOX_OLDEST_AGE = "plantline_outbox_oldest_age_seconds"
OUTBOX_DROPPED = "plantline_outbox_dropped_samples_total"
OUTBOX_CORRUPT = "plantline_outbox_corrupt_batches_total"
OUTBOX_QUARANTINED = "plantline_outbox_quarantined_samples_total"
INGEST_LAG = "plantline_ingest_lag_seconds"
SAMPLING_SLOWDOWN = "plantline_sampling_slowdown_factor"

# prometheus_client adds `_total` to counters itself; these are the names it is given.
_base = str.removesuffix


@dataclass(frozen=True)
class ConnectorMetrics:
    """The metric objects of one connector process, in their own registry."""

    registry: CollectorRegistry
    source_connected: Gauge
    source_reconnects: Counter
    source_read_errors: Counter
    source_last_sample: Gauge
    samples: Counter
    samples_bad_quality: Counter
    mqtt_connected: Gauge
    mqtt_refused: Gauge
    sparkplug_messages: Counter
    outbox_batches: Gauge
    outbox_samples: Gauge
    outbox_bytes: Gauge
    outbox_oldest_age: Gauge
    outbox_dropped: Counter
    outbox_corrupt: Counter
    outbox_quarantined: Counter
    ingest_lag: Histogram
    sampling_slowdown: Gauge
    kpi: dict[str, Gauge]  # plantline_kpi_* (names in plantline.connectors.kpi), by device and scope

    @classmethod
    def create(cls) -> ConnectorMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            source_connected=Gauge(
                SOURCE_CONNECTED, "1 while the device's PLC connection is up", ["device"], registry=r
            ),
            source_reconnects=Counter(_base(SOURCE_RECONNECTS, "_total"), "PLC reconnections", ["device"], registry=r),
            source_read_errors=Counter(_base(SOURCE_READ_ERRORS, "_total"), "PLC read errors", ["device"], registry=r),
            source_last_sample=Gauge(
                SOURCE_LAST_SAMPLE, "Unix time the device's latest samples were stored", ["device"], registry=r
            ),
            samples=Counter(_base(SAMPLES, "_total"), "Samples accepted from sources", ["device"], registry=r),
            samples_bad_quality=Counter(
                _base(SAMPLES_BAD_QUALITY, "_total"),
                "Samples of bad or uncertain quality",
                ["device", "quality"],
                registry=r,
            ),
            mqtt_connected=Gauge(MQTT_CONNECTED, "1 while an MQTT session is open", ["broker"], registry=r),
            mqtt_refused=Gauge(
                MQTT_REFUSED,
                "1 while the brokers refuse this identity (certificate revoked or not trusted)",
                registry=r,
            ),
            sparkplug_messages=Counter(
                _base(SPARKPLUG_MESSAGES, "_total"), "Sparkplug messages published", ["type"], registry=r
            ),
            outbox_batches=Gauge(OUTBOX_BATCHES, "Batches waiting in the outbox", registry=r),
            outbox_samples=Gauge(OUTBOX_SAMPLES, "Samples waiting in the outbox", registry=r),
            outbox_bytes=Gauge(OUTBOX_BYTES, "Bytes the outbox holds", registry=r),
            outbox_oldest_age=Gauge(OUTBOX_OLDEST_AGE, "Age of the oldest waiting sample", registry=r),
            outbox_dropped=Counter(
                _base(OUTBOX_DROPPED, "_total"), "Samples dropped by the outbox's bounds", ["reason"], registry=r
            ),
            outbox_corrupt=Counter(_base(OUTBOX_CORRUPT, "_total"), "Damaged outbox batches set aside", registry=r),
            outbox_quarantined=Counter(
                _base(OUTBOX_QUARANTINED, "_total"),
                "Samples set aside unpublished: damaged (corrupt), or no longer fitting the configuration",
                ["reason"],
                registry=r,
            ),
            ingest_lag=Histogram(
                INGEST_LAG,
                "Source timestamp to broker acknowledgement",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600),
                registry=r,
            ),
            sampling_slowdown=Gauge(
                SAMPLING_SLOWDOWN, "Factor sampling intervals are stretched by (1 = full rate)", ["device"], registry=r
            ),
            kpi={name: Gauge(name, text, list(KPI_LABELS), registry=r) for name, text in KPI_GAUGES.items()},
        )
