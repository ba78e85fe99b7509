"""The metric descriptions are the registry's truth: every described metric is exposed as described."""

from __future__ import annotations

import dataclasses
import math

from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from plantline.connectors.metric_names import (
    CONNECTOR_METRICS,
    KPI_GAUGES,
    OPERATOR_METRICS,
    PKI_METRICS,
    SAMPLES,
    MetricDefinition,
)
from plantline.connectors.metrics import ConnectorMetrics


def _collectors(metrics: ConnectorMetrics) -> dict[str, Gauge | Counter | Histogram]:
    found = [getattr(metrics, f.name) for f in dataclasses.fields(metrics) if f.name not in ("registry", "kpi")]
    found += metrics.kpi.values()
    return {collector.describe()[0].name: collector for collector in found}


def _touch(collector: Gauge | Counter | Histogram, metric: MetricDefinition) -> None:
    """Give the metric one sample, so that the exposition shows its labels."""
    child = collector.labels(**dict.fromkeys(metric.labels, "x")) if metric.labels else collector
    if isinstance(child, Counter):
        child.inc()
    elif isinstance(child, Gauge):
        child.set(1)
    else:
        child.observe(0.1)


def test_the_registry_exposes_exactly_the_described_metrics_with_their_types_help_and_labels() -> None:
    metrics = ConnectorMetrics.create()
    collectors = _collectors(metrics)
    assert sorted(collectors) == sorted(m.family for m in CONNECTOR_METRICS)
    for metric in CONNECTOR_METRICS:
        _touch(collectors[metric.family], metric)

    # The text format gives the creation times of counters and histograms families of their own.
    created = {f"{m.family}_created" for m in CONNECTOR_METRICS if m.type != "gauge"}
    text = generate_latest(metrics.registry).decode()
    exposed = {f.name: f for f in text_string_to_metric_families(text) if f.name not in created}
    assert sorted(exposed) == sorted(m.family for m in CONNECTOR_METRICS)
    for metric in CONNECTOR_METRICS:
        family = exposed[metric.family]
        assert (family.type, family.documentation) == (metric.type, metric.help), metric.name
        queried = metric.name + ("_count" if metric.type == "histogram" else "")
        assert queried in {s.name for s in family.samples}, metric.name
        assert {tuple(sorted(set(s.labels) - {"le"})) for s in family.samples} == {tuple(sorted(metric.labels))}


def test_the_histogram_buckets_are_the_described_ones() -> None:
    metrics = ConnectorMetrics.create()
    (family,) = metrics.ingest_lag.collect()
    bounds = [float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")]
    (histogram,) = (m for m in CONNECTOR_METRICS if m.type == "histogram")
    assert bounds == [*map(float, histogram.buckets), math.inf]


def test_names_follow_the_prometheus_conventions() -> None:
    every = (*CONNECTOR_METRICS, *PKI_METRICS, *OPERATOR_METRICS)
    names = [m.name for m in every]
    assert len(set(names)) == len(names)
    assert all(name.startswith("plantline_") for name in names)
    assert all(m.name.endswith("_total") == (m.type == "counter") for m in every)
    assert all(m.buckets == () for m in every if m.type != "histogram")
    assert all(m.buckets for m in every if m.type == "histogram")
    assert all(m.type == "gauge" and m.labels == ("device", "scope") for m in KPI_GAUGES)


def test_a_counter_family_drops_total_and_others_keep_their_name() -> None:
    assert SAMPLES.family == "plantline_samples"
    assert all(m.family == m.name for m in CONNECTOR_METRICS if m.type != "counter")
