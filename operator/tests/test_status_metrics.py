"""`plantline status` reads a connector's /metrics by the names the connectors define."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plantline.connectors.health import HealthServer
from plantline.connectors.metric_names import KPI_OEE
from plantline.connectors.metrics import ConnectorMetrics
from plantline.connectors.sources import Refusal
from plantline.operator.local import HEADERS, MachineMetrics, format_status, refusal_problem, scrape, status_rows
from plantline_testing import free_port


@contextmanager
def _served(metrics: ConnectorMetrics) -> Iterator[int]:
    server = HealthServer(address="127.0.0.1", port=0, registry=metrics.registry, ready=lambda: True)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def test_a_machine_row_reads_the_connectors_own_metrics() -> None:
    metrics = ConnectorMetrics.create()
    metrics.source_connected.labels("filler").set(1)
    metrics.source_connected.labels("capper").set(0)
    metrics.source_last_sample.labels("filler").set(1_700_000_000.5)
    metrics.samples.labels("filler").inc(42)
    metrics.kpi[KPI_OEE.name].labels("filler", "window").set(0.75)
    metrics.kpi[KPI_OEE.name].labels("filler", "shift").set(0.5)
    metrics.outbox_samples.set(7)
    metrics.outbox_quarantined.labels("corrupt").inc(2)
    metrics.outbox_quarantined.labels("unfit").inc(3)
    metrics.mqtt_connected.labels("127.0.0.1:8883").set(1)
    with _served(metrics) as port:
        scraped = scrape(port)

    # samples_total, not the counter's _created timestamp; the window's OEE, not the shift's
    assert MachineMetrics.of(scraped, "filler") == MachineMetrics(
        plc_connected=True,
        plc_refused=None,
        mqtt="connected",
        last_sample_at=1_700_000_000.5,
        samples_total=42.0,
        outbox_samples=7,
        oee=0.75,
        outbox_set_aside=5,
    )
    assert MachineMetrics.of(scraped, "capper") == MachineMetrics(
        plc_connected=False,
        plc_refused=None,
        mqtt="connected",
        last_sample_at=None,
        samples_total=None,
        outbox_samples=7,
        oee=None,
        outbox_set_aside=5,
    )


def test_a_refused_identity_shows_as_refused() -> None:
    metrics = ConnectorMetrics.create()
    metrics.mqtt_connected.labels("127.0.0.1:8883").set(0)
    metrics.mqtt_refused.set(1)
    with _served(metrics) as port:
        assert MachineMetrics.of(scrape(port), "filler").mqtt == "refused"
    metrics.mqtt_refused.set(0)
    with _served(metrics) as port:
        assert MachineMetrics.of(scrape(port), "filler").mqtt == "down"


def test_a_plc_refusal_shows_as_refused_with_who_and_why() -> None:
    metrics = ConnectorMetrics.create()
    refusals: dict[str, Refusal | None] = {
        "filler": Refusal("device", "BadSecurityChecksFailed", "..."),
        "capper": None,
    }
    metrics.follow_sources(["filler", "capper", "labeler"], lambda: refusals)
    with _served(metrics) as port:
        scraped = scrape(port)
    filler, capper = MachineMetrics.of(scraped, "filler"), MachineMetrics.of(scraped, "capper")
    assert (filler.plc_connected, filler.plc_refused) == (False, ("device", "BadSecurityChecksFailed"))
    assert (capper.plc_connected, capper.plc_refused) == (False, None)
    assert MachineMetrics.of(scraped, "labeler").plc_connected is False  # 0 from the start, not "no data"
    problem = refusal_problem("filler", ("device", "BadSecurityChecksFailed"), Path("/logs/connector-line1.log"))
    assert problem == (
        "filler: the PLC refused the connector's certificate; put the line's OPC UA CA and its CRL in the PLC's"
        " trust list (BadSecurityChecksFailed); the connector's log says why: /logs/connector-line1.log"
    )


def test_a_connector_that_does_not_answer_says_nothing() -> None:
    assert scrape(free_port()) == {}
    assert MachineMetrics.of({}, "filler") == MachineMetrics(None, None, None, None, None, None, None)


def test_the_plain_status_shows_a_refused_plc_and_the_problem() -> None:
    row = {
        "machine": "filler",
        "protocol": "opcua",
        "connector_state": "running",
        "plc": "refused",
        "plc_connected": False,
        "mqtt": "connected",
        "last_value_age_s": None,
        "samples_per_s": None,
        "outbox_samples": 0,
        "oee": None,
    }
    snapshot = {
        "line": "site1/packaging/line1",
        "broker": {"url": "mqtts://127.0.0.1:8883", "state": "running"},
        "machines": [row],
        "problems": ["filler: the connector refuses the PLC (BadCertificateUntrusted); ..."],
    }
    lines = format_status(snapshot).splitlines()
    assert lines[2].split()[:4] == ["filler", "opcua", "running", "refused"]
    assert lines[3] == "problem: filler: the connector refuses the PLC (BadCertificateUntrusted); ..."


def test_the_outbox_column_says_what_was_set_aside() -> None:
    machine = {
        "machine": "filler", "protocol": "opcua", "connector_state": "running", "plc_connected": True,
        "mqtt": "connected", "last_value_age_s": 0.5, "samples_per_s": 10.0, "outbox_samples": 7, "oee": None,
    }  # fmt: skip
    outbox = HEADERS.index("outbox")
    assert status_rows({"machines": [machine | {"outbox_set_aside": 0}]})[0][outbox] == "7"
    assert status_rows({"machines": [machine | {"outbox_set_aside": 5}]})[0][outbox] == "7 (5 set aside)"
    assert status_rows({"machines": [machine]})[0][outbox] == "7"  # a status.json written by an older up


def test_the_plain_status_has_a_line_for_the_cloud_bridge() -> None:
    machine = {
        "machine": "filler", "protocol": "opcua", "connector_state": "running", "plc_connected": True,
        "mqtt": "connected", "last_value_age_s": 0.5, "samples_per_s": 10.0, "outbox_samples": 0, "oee": None,
    }  # fmt: skip
    bridge = {"mqtt": "connected", "kafka": "127.0.0.1:9093", "kafka_up": True, "records": 120, "dead_letters": 2,
              "lag_s": 0.04, "fatal": None}  # fmt: skip
    snapshot = {"line": "site1/packaging/line1", "broker": {"url": "mqtts://127.0.0.1:8883", "state": "running"},
                "machines": [machine], "bridge": bridge}  # fmt: skip
    (line,) = [line for line in format_status(snapshot).splitlines() if line.startswith("bridge:")]
    assert line == "bridge: mqtt connected, kafka 127.0.0.1:9093 up, 120 records, 2 dead letters, lag 0.0s"
    bridge |= {"kafka_up": False, "fatal": "Kafka at 127.0.0.1:9093 refused the bridge: SASL"}
    (line,) = [line for line in format_status(snapshot).splitlines() if line.startswith("bridge:")]
    assert "kafka 127.0.0.1:9093 down, 120 records" in line
    assert line.endswith("; stopped: Kafka at 127.0.0.1:9093 refused the bridge: SASL")
