"""Every Prometheus metric PlantLine exposes, described once: name, type, help text and labels.

Pure data without prometheus_client, so that whatever reads a connector's /metrics imports its
names from here: the connector's own registry (`plantline.connectors.metrics`), `plantline
status`, dashboards and alert rules. The certificate facts (`PKI_METRICS`, served by the operator
and by `plantline up --monitoring`) and the operator's own metrics (`OPERATOR_METRICS`) and the
historian's KPI API's (`API_METRICS`) are described here too, below the connector's: the
dashboards import no operator module, and this module is the one place every PlantLine metric
name is spelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """One metric of a connector: the name to query, its type, what it means and its labels."""

    name: str  # as queried: a counter's ends in `_total`; a histogram's gets `_bucket`, `_sum`, `_count`
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # a histogram's upper bounds (+Inf implied)

    @property
    def family(self) -> str:
        """Return the metric family's name, which prometheus_client takes and its parser reports.

        It is `name` but for a counter, whose family name has no `_total` (the samples keep it).
        """
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


_DEVICE = ("device",)

SOURCE_CONNECTED: Final = MetricDefinition(
    "plantline_source_connected", "gauge", "1 while the device's PLC connection is up (0 from the start)", _DEVICE
)
SOURCE_REFUSED: Final = MetricDefinition(
    "plantline_source_refused",
    "gauge",
    "1 while the device and the connector refuse each other (by: who refused, code: why); waiting will not help",
    ("device", "by", "code"),
)
SOURCE_RECONNECTS: Final = MetricDefinition(
    "plantline_source_reconnects_total", "counter", "PLC reconnections", _DEVICE
)
SOURCE_READ_ERRORS: Final = MetricDefinition(
    "plantline_source_read_errors_total", "counter", "PLC read errors", _DEVICE
)
SOURCE_LAST_SAMPLE: Final = MetricDefinition(
    "plantline_source_last_sample_timestamp_seconds",
    "gauge",
    "Unix time the device's latest samples were stored",
    _DEVICE,
)
SAMPLES: Final = MetricDefinition("plantline_samples_total", "counter", "Samples accepted from sources", _DEVICE)
SAMPLES_BAD_QUALITY: Final = MetricDefinition(
    "plantline_samples_bad_quality_total", "counter", "Samples of bad or uncertain quality", ("device", "quality")
)
MQTT_CONNECTED: Final = MetricDefinition(
    "plantline_mqtt_connected", "gauge", "1 while an MQTT session is open", ("broker",)
)
MQTT_REFUSED: Final = MetricDefinition(
    "plantline_mqtt_refused", "gauge", "1 while the brokers refuse this identity (certificate revoked or not trusted)"
)
SPARKPLUG_MESSAGES: Final = MetricDefinition(
    "plantline_sparkplug_messages_total", "counter", "Sparkplug messages published", ("type",)
)
SPARKPLUG_BDSEQ: Final = MetricDefinition(
    "plantline_sparkplug_bdseq", "gauge", "bdSeq of the latest MQTT session (its NBIRTH and its Will's NDEATH carry it)"
)
SPARKPLUG_REBIRTHS: Final = MetricDefinition(
    "plantline_sparkplug_rebirths_total",
    "counter",
    "Births published again within one bdSeq session (a host's rebirth request, or the host back online)",
)
OUTBOX_BATCHES: Final = MetricDefinition("plantline_outbox_batches", "gauge", "Batches waiting in the outbox")
OUTBOX_SAMPLES: Final = MetricDefinition("plantline_outbox_samples", "gauge", "Samples waiting in the outbox")
OUTBOX_BYTES: Final = MetricDefinition("plantline_outbox_bytes", "gauge", "Bytes the outbox holds")
OUTBOX_OLDEST_AGE: Final = MetricDefinition(
    "plantline_outbox_oldest_age_seconds", "gauge", "Age of the oldest waiting sample"
)
OUTBOX_DROPPED: Final = MetricDefinition(
    "plantline_outbox_dropped_samples_total", "counter", "Samples dropped by the outbox's bounds", ("reason",)
)
OUTBOX_CORRUPT: Final = MetricDefinition(
    "plantline_outbox_corrupt_batches_total", "counter", "Damaged outbox batches set aside"
)
OUTBOX_QUARANTINED: Final = MetricDefinition(
    "plantline_outbox_quarantined_samples_total",
    "counter",
    "Samples set aside unpublished: damaged (corrupt), or no longer fitting the configuration",
    ("reason",),
)
INGEST_LAG: Final = MetricDefinition(
    "plantline_ingest_lag_seconds",
    "histogram",
    "Source timestamp to broker acknowledgement",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600),
)
SAMPLING_SLOWDOWN: Final = MetricDefinition(
    "plantline_sampling_slowdown_factor", "gauge", "Factor sampling intervals are stretched by (1 = full rate)", _DEVICE
)

# Edge KPIs (plantline.connectors.kpi), per device; `scope` is `window` (rolling) or `shift` (current).
KPI_LABELS: Final = ("device", "scope")


def _kpi(name: str, help_text: str) -> MetricDefinition:
    return MetricDefinition(name, "gauge", help_text, KPI_LABELS)


KPI_OEE: Final = _kpi(
    "plantline_kpi_oee_ratio", "Overall equipment effectiveness (availability x performance x quality)"
)
KPI_AVAILABILITY: Final = _kpi("plantline_kpi_availability_ratio", "Run time / planned production time")
KPI_PERFORMANCE: Final = _kpi("plantline_kpi_performance_ratio", "Ideal cycle time x total count / run time")
KPI_QUALITY: Final = _kpi("plantline_kpi_quality_ratio", "Good count / total count")
KPI_RUN: Final = _kpi("plantline_kpi_run_seconds", "Run time")
KPI_PLANNED: Final = _kpi("plantline_kpi_planned_production_seconds", "Planned production time")
KPI_GOOD: Final = _kpi("plantline_kpi_good_parts", "Good parts counted")
KPI_REJECT: Final = _kpi("plantline_kpi_reject_parts", "Rejected parts counted")
KPI_TOTAL: Final = _kpi("plantline_kpi_total_parts", "Parts counted")
KPI_MTTR: Final = _kpi("plantline_kpi_mttr_seconds", "Mean time to repair")
KPI_MTBF: Final = _kpi("plantline_kpi_mtbf_seconds", "Mean time between failures")
KPI_FAULTS: Final = _kpi("plantline_kpi_faults", "Faults that started")
KPI_FAULT_ACTIVE_CODE: Final = _kpi("plantline_kpi_fault_active_code", "Code of the active fault, 0 when none")
# The machine's state now, as `plantline_kpi_state`'s value: the index in this tuple. Dashboards map
# the values back to these names, so a state is only ever appended.
MACHINE_STATES: Final = ("unknown", "run", "idle", "blocked", "starved", "fault", "planned_stop", "off_shift")
KPI_STATE: Final = _kpi(
    "plantline_kpi_state",
    "Machine state now, by value: " + ", ".join(f"{code} {state}" for code, state in enumerate(MACHINE_STATES)),
)

KPI_GAUGES: Final = (
    KPI_OEE,
    KPI_AVAILABILITY,
    KPI_PERFORMANCE,
    KPI_QUALITY,
    KPI_RUN,
    KPI_PLANNED,
    KPI_GOOD,
    KPI_REJECT,
    KPI_TOTAL,
    KPI_MTTR,
    KPI_MTBF,
    KPI_FAULTS,
    KPI_FAULT_ACTIVE_CODE,
    KPI_STATE,
)

CONNECTOR_METRICS: Final = (
    SOURCE_CONNECTED,
    SOURCE_REFUSED,
    SOURCE_RECONNECTS,
    SOURCE_READ_ERRORS,
    SOURCE_LAST_SAMPLE,
    SAMPLES,
    SAMPLES_BAD_QUALITY,
    MQTT_CONNECTED,
    MQTT_REFUSED,
    SPARKPLUG_MESSAGES,
    SPARKPLUG_BDSEQ,
    SPARKPLUG_REBIRTHS,
    OUTBOX_BATCHES,
    OUTBOX_SAMPLES,
    OUTBOX_BYTES,
    OUTBOX_OLDEST_AGE,
    OUTBOX_DROPPED,
    OUTBOX_CORRUPT,
    OUTBOX_QUARANTINED,
    INGEST_LAG,
    SAMPLING_SLOWDOWN,
    *KPI_GAUGES,
)
"""Every metric a connector's /metrics exposes, in a stable order."""


# Certificate facts, served by whatever holds the line's CA: the operator (for every line it
# reconciles), and `plantline up --monitoring` for its local CA. Each series names its PlantLine
# (`namespace`, `plantline`), so an alert names the line whoever serves it; a certificate's also its
# role in the line and the machines that depend on it. Alert rules compare them with time().
PKI_LINE_LABELS: Final = ("namespace", "plantline")
PKI_CERTIFICATE_NOT_AFTER: Final = MetricDefinition(
    "plantline_certificate_not_after_timestamp_seconds",
    "gauge",
    "Unix time the identity's current certificate expires (machines: those that depend on it, comma-separated)",
    (*PKI_LINE_LABELS, "identity", "role", "machines"),
)
PKI_CRL_LAST_UPDATE: Final = MetricDefinition(
    "plantline_crl_last_update_timestamp_seconds",
    "gauge",
    "Unix time the CA's current CRL was issued, as the line's brokers have it",
    PKI_LINE_LABELS,
)
PKI_CRL_NEXT_UPDATE: Final = MetricDefinition(
    "plantline_crl_next_update_timestamp_seconds",
    "gauge",
    "Unix time the CA's current CRL stops being valid, as the line's brokers have it",
    PKI_LINE_LABELS,
)
PKI_METRICS: Final = (PKI_CERTIFICATE_NOT_AFTER, PKI_CRL_LAST_UPDATE, PKI_CRL_NEXT_UPDATE)
"""The certificate facts of one line (identity) and its CA."""

# The operator's own metrics (plantline.operator.telemetry), per PlantLine where a line is meant.
_LINE = ("namespace", "plantline")

OPERATOR_RECONCILES: Final = MetricDefinition(
    "plantline_operator_reconciles_total",
    "counter",
    "Reconciles of a PlantLine, by outcome (ready, progressing, failed, invalid, paused)",
    (*_LINE, "result"),
)
OPERATOR_RECONCILE_ERRORS: Final = MetricDefinition(
    "plantline_operator_reconcile_errors_total", "counter", "Reconcile steps that failed, by step", (*_LINE, "step")
)
OPERATOR_RECONCILE_DURATION: Final = MetricDefinition(
    "plantline_operator_reconcile_duration_seconds",
    "histogram",
    "Time one reconcile of a PlantLine took",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OPERATOR_TIME_TO_READY: Final = MetricDefinition(
    "plantline_operator_time_to_ready_seconds",
    "histogram",
    "Time from the operator first seeing a PlantLine generation to its Ready condition",
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
OPERATOR_CERTIFICATES_ISSUED: Final = MetricDefinition(
    "plantline_operator_certificates_issued_total", "counter", "Certificates issued for a new identity", _LINE
)
OPERATOR_CERTIFICATES_RENEWED: Final = MetricDefinition(
    "plantline_operator_certificates_renewed_total", "counter", "Certificates renewed or re-keyed", _LINE
)
OPERATOR_CERTIFICATES_REVOKED: Final = MetricDefinition(
    "plantline_operator_certificates_revoked_total", "counter", "Certificate serials revoked", _LINE
)
OPERATOR_METRICS: Final = (
    OPERATOR_RECONCILES,
    OPERATOR_RECONCILE_ERRORS,
    OPERATOR_RECONCILE_DURATION,
    OPERATOR_TIME_TO_READY,
    OPERATOR_CERTIFICATES_ISSUED,
    OPERATOR_CERTIFICATES_RENEWED,
    OPERATOR_CERTIFICATES_REVOKED,
)
"""Every metric the operator's /metrics exposes besides `PKI_METRICS`, in a stable order."""

# The historian's KPI API (plantline.historian.api.telemetry), on its own /metrics.
API_REQUEST_DURATION: Final = MetricDefinition(
    "plantline_api_request_duration_seconds",
    "histogram",
    "Time the KPI API took to start answering a request, by route template and status code",
    ("route", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_METRICS: Final = (API_REQUEST_DURATION,)
"""Every metric the KPI API's /metrics exposes."""
# The cloud bridge's metrics (plantline.bridge): one bridge process, MQTT in, Kafka out.
BRIDGE_RECORDS: Final = MetricDefinition(
    "plantline_bridge_records_total", "counter", "Sample records Kafka acknowledged, by topic", ("topic",)
)
BRIDGE_MESSAGES: Final = MetricDefinition(
    "plantline_bridge_messages_total", "counter", "MQTT messages acknowledged after Kafka took all their records"
)
BRIDGE_DEAD_LETTERS: Final = MetricDefinition(
    "plantline_bridge_dead_letters_total", "counter", "Dead letters Kafka acknowledged, by reason", ("reason",)
)
BRIDGE_PRODUCE_LATENCY: Final = MetricDefinition(
    "plantline_bridge_produce_latency_seconds",
    "histogram",
    "Time from handing a record to the Kafka client to its acknowledgement",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BRIDGE_BATCH_RECORDS: Final = MetricDefinition(
    "plantline_bridge_batch_records",
    "gauge",
    "Records per Kafka batch over the client's last 5 s statistics window that sent batches, by quantile "
    "(avg, 0.5, 0.99, max)",
    ("quantile",),
)
BRIDGE_MQTT_LAG: Final = MetricDefinition(
    "plantline_bridge_mqtt_lag_seconds",
    "gauge",
    "Age of the oldest MQTT message received and not yet acknowledged (0: none waiting)",
)
BRIDGE_INBOX: Final = MetricDefinition(
    "plantline_bridge_inbox_messages", "gauge", "MQTT messages received and not yet turned into records"
)
BRIDGE_PENDING: Final = MetricDefinition(
    "plantline_bridge_pending_messages", "gauge", "MQTT messages whose records Kafka has not acknowledged yet"
)
BRIDGE_MQTT_CONNECTED: Final = MetricDefinition(
    "plantline_bridge_mqtt_connected", "gauge", "1 while the bridge's MQTT session is up"
)
BRIDGE_KAFKA_UP: Final = MetricDefinition(
    "plantline_bridge_kafka_up", "gauge", "1 while the Kafka client reaches a broker (per its last report)"
)
BRIDGE_READY: Final = MetricDefinition(
    "plantline_bridge_ready",
    "gauge",
    "1 while the bridge moves data (its /readyz): MQTT session up, Kafka reachable, no fatal refusal",
)
BRIDGE_METRICS: Final = (
    BRIDGE_RECORDS,
    BRIDGE_MESSAGES,
    BRIDGE_DEAD_LETTERS,
    BRIDGE_PRODUCE_LATENCY,
    BRIDGE_BATCH_RECORDS,
    BRIDGE_MQTT_LAG,
    BRIDGE_INBOX,
    BRIDGE_PENDING,
    BRIDGE_MQTT_CONNECTED,
    BRIDGE_KAFKA_UP,
    BRIDGE_READY,
)
"""Every metric the bridge's /metrics exposes, in a stable order."""
