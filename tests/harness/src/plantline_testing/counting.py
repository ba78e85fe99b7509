"""Counting samples for zero-loss proofs: what a connector accepted against what a reader received.

A connector counts each sample it accepts from its sources in `plantline_samples_total{device}`
on its /metrics; a reader counts unique (metric, timestamp) values per device, so a sample
replayed from the outbox after a restart (a duplicate on the wire) counts once. With the PLC
simulators stopped (SIGSTOP), report by exception yields no new sample, so both counts settle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.request
from collections.abc import Iterable, Iterator

from prometheus_client.parser import text_string_to_metric_families

from plantline.connectors.kpi import SPARKPLUG_METRICS as KPI_METRICS
from plantline.connectors.metric_names import SAMPLES
from plantline_testing.sparkplug_reader import Value

SETTLE_INTERVAL_S = 1.5


def samples_total(metrics_url: str) -> dict[str, int]:
    """Return a connector's accepted-sample count per device, read from its /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310 - a test's own http URL
        text = response.read().decode()
    totals: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SAMPLES.name:
                totals[sample.labels["device"]] = int(sample.value)
    return totals


def settled_samples_total(metrics_url: str, timeout: float = 45.0) -> dict[str, int]:
    """Return the counts once two reads in a row agree (the sources must be frozen)."""
    previous = samples_total(metrics_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL_S)
        current = samples_total(metrics_url)
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"the sample counts at {metrics_url} kept changing: {previous}")


def unique_samples(values: Iterable[Value], device: str) -> set[tuple[str, int]]:
    """Return the distinct (metric, timestamp) pairs a reader got from `device`: its PLC samples, not its KPIs."""
    return {(v.name, v.timestamp) for v in values if v.device_id == device and v.name not in KPI_METRICS}


@contextlib.contextmanager
def frozen(process_groups: Iterable[int]) -> Iterator[None]:
    """Stop the given process groups (SIGSTOP) for the block's duration."""
    groups = list(process_groups)
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        for group in groups:
            os.killpg(group, signal.SIGCONT)


__all__ = ["frozen", "samples_total", "settled_samples_total", "unique_samples"]
