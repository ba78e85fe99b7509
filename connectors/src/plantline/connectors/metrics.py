"""The Prometheus collectors of one connector process, made from `plantline.connectors.metric_names`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from plantline.connectors import metric_names as names
from plantline.connectors.metric_names import MetricDefinition


def _gauge(metric: MetricDefinition, registry: CollectorRegistry) -> Gauge:
    return Gauge(metric.family, metric.help, metric.labels, registry=registry)


def _counter(metric: MetricDefinition, registry: CollectorRegistry) -> Counter:
    return Counter(metric.family, metric.help, metric.labels, registry=registry)


def _histogram(metric: MetricDefinition, registry: CollectorRegistry) -> Histogram:
    return Histogram(metric.family, metric.help, metric.labels, buckets=metric.buckets, registry=registry)


class RefusalFacts(Protocol):
    """What the refusals gauge reads of a source's refusal (`plantline.connectors.sources.Refusal`)."""

    @property
    def by(self) -> str: ...

    @property
    def code(self) -> str: ...


class SourceRefusals(Collector):
    """`plantline_source_refused{device, by, code}`, read from the sources at every scrape.

    A refused device has one sample, 1, labelled with who refused and the protocol's code; any
    other device one sample, 0, with both labels empty. Read at scrape time, the gauge never
    lags behind the sources, and a reason that went away leaves no series behind.
    """

    def __init__(self, refusals: Callable[[], Mapping[str, RefusalFacts | None]]) -> None:
        self._refusals = refusals

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for device, refusal in sorted(self._refusals().items()):
            if refusal is None:
                family.add_metric([device, "", ""], 0.0)
            else:
                family.add_metric([device, refusal.by, refusal.code], 1.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        metric = names.SOURCE_REFUSED
        return GaugeMetricFamily(metric.family, metric.help, labels=metric.labels)


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
    sparkplug_bdseq: Gauge
    sparkplug_rebirths: Counter
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
            sparkplug_bdseq=_gauge(names.SPARKPLUG_BDSEQ, r),
            sparkplug_rebirths=_counter(names.SPARKPLUG_REBIRTHS, r),
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

    def follow_sources(self, devices: Iterable[str], refusals: Callable[[], Mapping[str, RefusalFacts | None]]) -> None:
        """Publish each device's connection as 0 from the start, and its refusals as they are at each scrape.

        An alert on `plantline_source_connected == 0` thus also sees a device that never connected.
        """
        for device in devices:
            self.source_connected.labels(device).set(0)
        self.registry.register(SourceRefusals(refusals))
