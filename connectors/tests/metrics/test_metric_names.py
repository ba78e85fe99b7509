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
    SOURCE_CONNECTED,
    SOURCE_REFUSED,
    MetricDefinition,
)
from plantline.connectors.metrics import ConnectorMetrics, SourceRefusals
from plantline.connectors.sources import Refusal


def _collectors(metrics: ConnectorMetrics) -> dict[str, Gauge | Counter | Histogram | SourceRefusals]:
    found = [getattr(metrics, f.name) for f in dataclasses.fields(metrics) if f.name not in ("registry", "kpi")]
    found += metrics.kpi.values()
    found.append(SourceRefusals(dict))  # follow_sources registers one like it
    return {collector.describe()[0].name: collector for collector in found}


def _touch(collector: Gauge | Counter | Histogram | SourceRefusals, metric: MetricDefinition) -> None:
    """Give the metric one sample, so that the exposition shows its labels."""
    if isinstance(collector, SourceRefusals):
        return  # it has a sample per followed source already
    child = collector.labels(**dict.fromkeys(metric.labels, "x")) if metric.labels else collector
    if isinstance(child, Counter):
        child.inc()
    elif isinstance(child, Gauge):
        child.set(1)
    else:
        child.observe(0.1)


def test_the_registry_exposes_exactly_the_described_metrics_with_their_types_help_and_labels() -> None:
    metrics = ConnectorMetrics.create()
    metrics.follow_sources(["x"], lambda: {"x": None})
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


def _samples(metrics: ConnectorMetrics, metric: MetricDefinition) -> list[tuple[dict[str, str], float]]:
    text = generate_latest(metrics.registry).decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == metric.family)
    return [(s.labels, s.value) for s in family.samples]


def test_followed_sources_are_published_disconnected_from_the_start_and_refusals_as_they_are() -> None:
    metrics = ConnectorMetrics.create()
    refusals: dict[str, Refusal | None] = {}
    metrics.follow_sources(["filler", "capper"], lambda: refusals)
    assert sorted(_samples(metrics, SOURCE_CONNECTED), key=str) == [
        ({"device": "capper"}, 0.0),
        ({"device": "filler"}, 0.0),
    ]
    assert _samples(metrics, SOURCE_REFUSED) == []  # the connector has not entered its sources yet

    refusals.update(filler=Refusal("device", "BadSecurityChecksFailed", "refused"), capper=None)
    assert _samples(metrics, SOURCE_REFUSED) == [
        ({"device": "capper", "by": "", "code": ""}, 0.0),
        ({"device": "filler", "by": "device", "code": "BadSecurityChecksFailed"}, 1.0),
    ]
    refusals["filler"] = None  # it connected
    assert _samples(metrics, SOURCE_REFUSED)[1] == ({"device": "filler", "by": "", "code": ""}, 0.0)
