"""Counting samples for zero-loss proofs: what a connector accepted against what a reader received.

A connector counts each sample it accepts from its sources in `plantline_samples_total{device}`
on its /metrics; a reader counts unique (metric, timestamp) values per device, so a sample
replayed from the outbox after a restart (a duplicate on the wire) counts once. With the PLC
simulators stopped (SIGSTOP), report by exception yields no new sample, so both counts settle.

One duplicate is not a replay: a new OPC UA subscription's initial values carry the source
timestamp of each value's last change, so a connector that starts again accepts, for a tag whose
value has not changed, the very sample its predecessor accepted, and the reader counts it once.
`rereads` bounds that shortfall: one sample per OPC UA tag and restart. Polled protocols (S7, CIP)
stamp each read, so their counts must match exactly.

Freeze the PLCs only once the connector has caught up (`wait_caught_up`): a frozen PLC ends its
device's session after the protocol's timeout (a DDEATH; S7 after 3 s), and the data of a device
that is not born waits in the outbox for its next DBIRTH, which a frozen PLC never brings. A
connector still replaying its outbox then holds that device's part of the backlog for as long as
the count lasts: not lost, but not at the reader either.
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
from plantline.connectors.metric_names import OUTBOX_OLDEST_AGE, OUTBOX_SAMPLES, SAMPLES
from plantline.operator.api import PlantLine
from plantline_testing.sparkplug_reader import Value

SETTLE_INTERVAL_S = 1.5


def _scrape(metrics_url: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310 - a test's own http URL
        text = response.read().decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _samples(metrics_url: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, value) for sample, labels, value in _scrape(metrics_url) if sample == name]


def samples_total(metrics_url: str) -> dict[str, int]:
    """Return a connector's accepted-sample count per device, read from its /metrics."""
    return {labels["device"]: int(value) for labels, value in _samples(metrics_url, SAMPLES.name)}


def outbox_samples(metrics_url: str) -> int:
    """Return how many samples wait in a connector's outbox."""
    return int(sum(value for _labels, value in _samples(metrics_url, OUTBOX_SAMPLES.name)))


def wait_caught_up(metrics_url: str, timeout: float = 120.0) -> None:
    """Return once a connector's outbox holds nothing from before: empty, or its oldest sample under a second old.

    A live connector's outbox holds the batches on their way (stored, not yet acknowledged), so an
    outbox that never reads empty has still caught up when what it holds is that young.
    """
    deadline = time.monotonic() + timeout
    while True:
        scraped = _scrape(metrics_url)
        outbox = sum(value for name, _labels, value in scraped if name == OUTBOX_SAMPLES.name)
        oldest = max((value for name, _labels, value in scraped if name == OUTBOX_OLDEST_AGE.name), default=0.0)
        if outbox == 0 or oldest < 1.0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the outbox at {metrics_url} still holds {outbox:.0f} samples, the oldest {oldest:.1f} s old"
            )
        time.sleep(0.5)


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


def rereads(line: PlantLine, restarts: int = 1) -> dict[str, int]:
    """Return, per machine, how many accepted samples may arrive as duplicates after `restarts` restarts."""
    return {m.id: restarts * len(m.tags) if m.protocol == "opcua" else 0 for m in line.spec.machines}


def assert_none_lost(produced: dict[str, int], received: dict[str, int], allowance: dict[str, int]) -> None:
    """Assert that the reader got every sample the connectors accepted, but for the allowed re-reads."""
    short = {m: produced[m] - received.get(m, 0) for m in produced}
    wrong = {m: gap for m, gap in short.items() if not 0 <= gap <= allowance.get(m, 0)}
    assert not wrong, f"accepted {produced}, received {received}; allowed re-reads {allowance}"


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


__all__ = [
    "assert_none_lost",
    "frozen",
    "outbox_samples",
    "rereads",
    "samples_total",
    "settled_samples_total",
    "unique_samples",
    "wait_caught_up",
]
