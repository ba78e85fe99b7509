"""The operator's metrics: what a reconcile counts, time to Ready, the CRL's times, all as described."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from plantline.connectors.metric_names import OPERATOR_METRICS, PKI_METRICS
from plantline.operator.model import CertificateFact, ConnectorSettings
from plantline.operator.reconcile import Context, Outcome, reconcile
from plantline.operator.telemetry import OperatorMetrics, PkiMetrics, crl_times

from .recording import MemoryAuthority, RecordingCluster, demo_body

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
DUE = NOW + timedelta(days=61)  # the demo's mqtt-client certificates: 90 days, renewed 30 before
SETTINGS = ConnectorSettings(image="registry.example/plantline/connector:0.1.0")
LINE = ("plantline", "line1")


def _run(body: dict[str, Any], cluster: RecordingCluster, authority: MemoryAuthority, now: datetime = NOW) -> Outcome:
    outcome = reconcile(body, Context(cluster, authority, SETTINGS, now))
    body["status"] = outcome.status
    return outcome


def _samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_reconcile_reports_its_outcome_and_the_certificates_it_issued_renewed_and_revoked(
    ca_pems: tuple[bytes, bytes],
) -> None:
    cluster, authority = RecordingCluster(), MemoryAuthority(*ca_pems)
    body = demo_body()
    del body["spec"]["pki"]["maintenanceWindow"]
    first = _run(body, cluster, authority)
    assert (first.result, first.ready) == ("progressing", False)
    assert first.certificates == {"issued": 3, "renewed": 0, "revoked": 0}  # connector, broker, reader
    assert first.crl_pem == authority.ca.crl_pem
    cluster.make_available()
    assert _run(body, cluster, authority).result == "ready"
    renewed = _run(body, cluster, authority, DUE)
    assert renewed.certificates == {"issued": 0, "renewed": 2, "revoked": 2}  # the 90-day ones, superseded


def test_invalid_and_paused_lines_have_their_own_outcome(ca_pems: tuple[bytes, bytes]) -> None:
    cluster, authority = RecordingCluster(), MemoryAuthority(*ca_pems)
    bad = demo_body()
    bad["spec"]["machines"][0]["endpoint"] = "http://nowhere"
    assert _run(bad, cluster, authority).result == "invalid"
    paused = demo_body()
    paused["metadata"]["annotations"]["plantline.dev/pause-reconciliation"] = "true"
    assert _run(paused, cluster, authority).result == "paused"


def test_the_registry_exposes_the_described_operator_and_pki_metrics() -> None:
    metrics = OperatorMetrics.create()
    metrics.reconciled(
        namespace="plantline", name="line1", result="failed", seconds=0.2, failed_step="config",
        certificates={"issued": 3, "renewed": 1, "revoked": 2},
    )  # fmt: skip
    metrics.pki.set_certificates(LINE, {"site1-line1-line1": CertificateFact(NOW, "connector", ("filler", "capper"))})
    samples = _samples(metrics)
    line = (("namespace", "plantline"), ("plantline", "line1"))
    assert samples[("plantline_operator_reconciles_total", (*line, ("result", "failed")))] == 1
    assert samples[("plantline_operator_reconcile_errors_total", (*line, ("step", "config")))] == 1
    assert samples[("plantline_operator_certificates_issued_total", line)] == 3
    assert samples[("plantline_operator_certificates_renewed_total", line)] == 1
    assert samples[("plantline_operator_certificates_revoked_total", line)] == 2
    assert samples[("plantline_operator_reconcile_duration_seconds_count", ())] == 1
    identity = (("identity", "site1-line1-line1"), ("machines", "filler,capper"))
    labels = (*identity, ("namespace", "plantline"), ("plantline", "line1"), ("role", "connector"))
    assert samples[(PKI_METRICS[0].name, labels)] == NOW.timestamp()
    text = generate_latest(metrics.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for metric in (*OPERATOR_METRICS, *PKI_METRICS):
        assert families[metric.family].documentation == metric.help
        assert families[metric.family].type == metric.type


def test_time_to_ready_is_observed_once_per_generation_from_its_first_reconcile() -> None:
    metrics = OperatorMetrics.create()
    metrics.generation_seen("uid-1", 1, now=100.0, ready=False)
    metrics.generation_seen("uid-1", 1, now=104.0, ready=False)
    metrics.generation_seen("uid-1", 1, now=107.5, ready=True)
    metrics.generation_seen("uid-1", 1, now=200.0, ready=True)  # still Ready: not a second observation
    metrics.generation_seen("uid-1", 2, now=300.0, ready=True)  # a spec change that is Ready at once
    samples = _samples(metrics)
    assert samples[("plantline_operator_time_to_ready_seconds_count", ())] == 2
    assert samples[("plantline_operator_time_to_ready_seconds_sum", ())] == 7.5


def test_the_crl_gauges_follow_the_ca(ca_pems: tuple[bytes, bytes]) -> None:
    authority = MemoryAuthority(*ca_pems)
    crl = authority.load(NOW).crl_pem
    last, next_ = crl_times(crl)
    assert next_ is not None
    assert last < next_
    pki = PkiMetrics.create()
    pki.set_crl(LINE, crl)
    line = {"namespace": "plantline", "plantline": "line1"}
    assert pki.registry.get_sample_value(PKI_METRICS[1].name, line) == last.timestamp()
    assert math.isclose(pki.registry.get_sample_value(PKI_METRICS[2].name, line) or 0, next_.timestamp())
    pki.forget(LINE)
    assert pki.registry.get_sample_value(PKI_METRICS[1].name, line) is None


def test_certificate_facts_are_kept_per_line_and_an_identity_gone_leaves_no_series() -> None:
    pki = PkiMetrics.create()
    other = ("plantline", "line2")
    pki.set_certificates(
        LINE, {"a": CertificateFact(NOW, "connector", ("m1",)), "b": CertificateFact(NOW, "broker", ())}
    )
    pki.set_certificates(other, {"a": CertificateFact(DUE, "connector", ("m9",))})
    pki.set_certificates(LINE, {"b": CertificateFact(DUE, "broker", ())})  # a was removed from the line
    text = generate_latest(pki.registry).decode()
    (family,) = (f for f in text_string_to_metric_families(text) if f.name == PKI_METRICS[0].family)
    assert sorted((s.labels["plantline"], s.labels["identity"], s.value) for s in family.samples) == [
        ("line1", "b", DUE.timestamp()),
        ("line2", "a", DUE.timestamp()),
    ]


def test_a_reconcile_gives_each_certificates_expiry_role_and_machines(ca_pems: tuple[bytes, bytes]) -> None:
    cluster, authority = RecordingCluster(), MemoryAuthority(*ca_pems)
    body = demo_body()
    facts = _run(body, cluster, authority).certificate_facts
    assert facts is not None
    machines = tuple(m["id"] for m in body["spec"]["machines"])
    by_role = {fact.role: (identity, fact) for identity, fact in facts.items()}
    assert set(by_role) == {"connector", "broker", "reader"}
    identity, connector = by_role["connector"]
    assert connector.machines == machines  # the demo's one connector reads every machine
    assert NOW + timedelta(days=89) < connector.not_after <= NOW + timedelta(days=91)  # mqtt-client: 90 days
    assert by_role["broker"][1].machines == machines  # the broker's certificate: the whole line depends on it
    assert identity.endswith("-line1")
