"""The Prometheus collectors of one connector process, made from `plantline.connectors.metric_names`."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from plantline.connectors import metric_names as names
from plantline.connectors.metric_names import MetricDefinition


def _gauge(metric: MetricDefinition, registry: CollectorRegistry) -> Gauge:
    return Gauge(metric.family, metric.help, metric.labels, registry=registry)


def _counter(metric: MetricDefinition, registry: CollectorRegistry) -> Counter:
    return Counter(metric.family, metric.help, metric.labels, registry=registry)


def _histogram(metric: MetricDefinition, registry: CollectorRegistry) -> Histogram:
    return Histogram(metric.family, metric.help, metric.labels, buckets=metric.buckets, registry=registry)


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
    kpi: dict[str, Gauge]  # plantline_kpi_* by name, labelled by device and scope

    @classmethod
    def create(cls) -> ConnectorMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            source_connected=_gauge(names.SOURCE_CONNECTED, r),
            source_reconnects=_counter(names.SOURCE_RECONNECTS, r),
            source_read_errors=_counter(names.SOURCE_READ_ERRORS, r),
            source_last_sample=_gauge(names.SOURCE_LAST_SAMPLE, r),
            samples=_counter(names.SAMPLES, r),
            samples_bad_quality=_counter(names.SAMPLES_BAD_QUALITY, r),
            mqtt_connected=_gauge(names.MQTT_CONNECTED, r),
            mqtt_refused=_gauge(names.MQTT_REFUSED, r),
            sparkplug_messages=_counter(names.SPARKPLUG_MESSAGES, r),
            outbox_batches=_gauge(names.OUTBOX_BATCHES, r),
            outbox_samples=_gauge(names.OUTBOX_SAMPLES, r),
            outbox_bytes=_gauge(names.OUTBOX_BYTES, r),
            outbox_oldest_age=_gauge(names.OUTBOX_OLDEST_AGE, r),
            outbox_dropped=_counter(names.OUTBOX_DROPPED, r),
            outbox_corrupt=_counter(names.OUTBOX_CORRUPT, r),
            outbox_quarantined=_counter(names.OUTBOX_QUARANTINED, r),
            ingest_lag=_histogram(names.INGEST_LAG, r),
            sampling_slowdown=_gauge(names.SAMPLING_SLOWDOWN, r),
            kpi={metric.name: _gauge(metric, r) for metric in names.KPI_GAUGES},
        )
