"""Prometheus rules of one line: SLO recording rules, burn-rate alerts and the alerts an SRE is paged for.

SLOs follow the SRE workbook's multi-window, multi-burn-rate alerts: an error ratio is recorded
over 5m, 30m, 1h, 2h, 6h, 1d and 3d; the fast burn pages (1h and 5m above 14.4x the budget, or 6h
and 30m above 6x), the slow burn makes a ticket (1d and 2h above 3x, or 3d and 6h above 1x).
Every alert carries `severity`, a `summary`, a `description` that names the line and the
machine(s), and `runbook_url`, which points at `runbooks/<AlertName>.md`.

Each rule also keeps its `probe`: the part of its expression that selects the series it watches
(without the threshold), which a live scrape must answer with at least one series.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from plantline.connectors import metric_names as m
from plantline.dashboards import broker
from plantline.dashboards.line import (
    API,
    BROKER,
    CLOUD_BRIDGE,
    CONNECTOR,
    CONNECTOR_LABEL,
    LINE_LABEL,
    OPERATOR,
    PKI,
    SITE_LABEL,
    ConnectorView,
    LineView,
)
from plantline.dashboards.promql import Scope, rule_scope

Severity = Literal["critical", "warning"]

SLO_WINDOWS: Final = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# (long window, short window, burn-rate factor) per alert, as the SRE workbook's table 5-8 gives them.
FAST_BURN: Final = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
SLOW_BURN: Final = (("1d", "2h", 3.0), ("3d", "6h", 1.0))
Burn = tuple[str, tuple[tuple[str, str, float], ...], Severity, str]  # speed, windows, severity, for
BURNS: Final[tuple[Burn, ...]] = (("fast", FAST_BURN, "critical", "2m"), ("slow", SLOW_BURN, "warning", "15m"))

MQTT_DROPPED_OBJECTIVE: Final = 0.001  # fewer than 0.1 % of the broker's messages dropped
INGEST_LAG_TARGET_S: Final = 0.5  # p95 ingest lag below 500 ms: 95 % of samples within 0.5 s
INGEST_LAG_OBJECTIVE: Final = 0.05
API_LATENCY_TARGET_S: Final = 0.25  # KPI API p95 below 250 ms: 95 % of requests answered within 0.25 s
API_LATENCY_OBJECTIVE: Final = 0.05
API_UNTIMED_ROUTES: Final = ("/metrics",)  # scrapes are no user's request
OUTBOX_MAX_AGE_S: Final = 600.0  # older than this: the broker or WAN has been away for 10 minutes
OUTBOX_FULL_RATIO: Final = 0.5  # above this share of its byte bound, the outbox is a worry
CRL_MIN_LEFT_S: Final = 3600.0  # a CRL that expires within the hour makes brokers refuse everyone
# Cloud bridge p99 below 1 s: Kafka acknowledges the records of 99 % of MQTT messages within 1 s of their produce.
BRIDGE_LATENCY_TARGET_S: Final = 1.0
BRIDGE_LATENCY_OBJECTIVE: Final = 0.01
BRIDGE_MQTT_LAG_MAX_S: Final = 60.0  # an MQTT message unacknowledged for a minute: Kafka is not keeping up
BRIDGE_STALL_WINDOW: Final = "5m"  # no MQTT message acknowledged for this long while some wait: produce stalled
BRIDGE_DEAD_LETTER_WINDOW: Final = "10m"

_BY_LINE = f"{SITE_LABEL}, {LINE_LABEL}"


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """One recording rule: `expr` recorded as `record`; `source` is the component whose metrics it reads."""

    record: str
    expr: str
    source: str

    def to_rule(self) -> dict[str, Any]:
        return {"record": self.record, "expr": self.expr}


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alerting rule; `probe` selects the series `expr` compares with its threshold."""

    name: str
    expr: str
    probe: str
    source: str
    severity: Severity
    summary: str
    description: str
    for_: str = "2m"
    labels: dict[str, str] = field(default_factory=dict)

    def to_rule(self, runbook_base: str) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": runbook_url(runbook_base, self.name),
            },
        }


def runbook_url(base: str, alert: str) -> str:
    """Return where an alert's runbook is: `<base>/<AlertName>.md`."""
    return f"{base.rstrip('/')}/{alert}.md"


def _where(view: LineView) -> str:
    return f"line {view.site}/{view.area}/{view.line}"


# -- SLO recording rules ------------------------------------------------------------------------------


def _dropped_ratio(scope: Scope, window: str) -> str:
    dropped = f"sum by ({_BY_LINE}) (rate({broker.PUBLISH_DROPPED.selector(scope.matchers())}[{window}]))"
    sent = f"sum by ({_BY_LINE}) (rate({broker.PUBLISH_SENT.selector(scope.matchers())}[{window}]))"
    return f"{dropped} / ({sent} + {dropped})"


def _slow_ratio(scope: Scope, metric: m.MetricDefinition, target_s: float, window: str) -> str:
    """Return the share of a histogram's observations above `target_s` (a bucket's bound) over `window`."""
    fast = f"sum by ({_BY_LINE}) (rate({scope.of(metric, '_bucket', le=bucket_label(target_s))}[{window}]))"
    total = f"sum by ({_BY_LINE}) (rate({scope.of(metric, '_count')}[{window}]))"
    return f"1 - ({fast} / {total})"


def api_selector(scope: Scope, suffix: str, **more: str) -> str:
    """Return the selector of the KPI API's request-duration series (`_bucket`, `_count`) users asked for."""
    untimed = "|".join(API_UNTIMED_ROUTES)
    extra = "".join(f', {label}="{value}"' for label, value in more.items())
    return f'{m.API_REQUEST_DURATION.name}{suffix}{{{scope.matchers()}, route!~"{untimed}"{extra}}}'


def _api_slow_ratio(scope: Scope, window: str) -> str:
    fast = (
        f"sum by ({_BY_LINE}) (rate({api_selector(scope, '_bucket', le=bucket_label(API_LATENCY_TARGET_S))}[{window}]))"
    )
    total = f"sum by ({_BY_LINE}) (rate({api_selector(scope, '_count')}[{window}]))"
    return f"1 - ({fast} / {total})"


def bucket_label(bound: float) -> str:
    """Return a histogram bucket's `le` label as prometheus_client writes it: `1.0`, `0.25`.

    Prometheus 2 matches `le` as text: `le="1"` finds no bucket written `1.0`.
    """
    return repr(float(bound))


def _has_bucket(metric: m.MetricDefinition, bound: float) -> None:
    if float(bound) not in {float(b) for b in metric.buckets}:
        raise ValueError(f"{metric.name} has no bucket at {bound:g} s")


def pki_selector(metric: m.MetricDefinition, namespace: str, plantline: str) -> str:
    """Return the selector of a certificate fact of one PlantLine (its namespace and name)."""
    values = (namespace, plantline)
    matchers = ", ".join(f'{label}="{value}"' for label, value in zip(m.PKI_LINE_LABELS, values, strict=True))
    return f"{metric.name}{{{matchers}}}"


MQTT_DROPPED_RECORD: Final = "plantline:mqtt_dropped:ratio_rate"
API_LATENCY_RECORD: Final = "plantline:api_slow:ratio_rate"
INGEST_LAG_RECORD: Final = "plantline:ingest_lag_slow:ratio_rate"
BRIDGE_LATENCY_RECORD: Final = "plantline:bridge_produce_slow:ratio_rate"
CERTIFICATE_DAYS_RECORD: Final = "plantline:certificate_days_left"


def recording_rules(view: LineView) -> list[RecordingRule]:
    """Return the line's recording rules: each SLO's error ratio per window, and certificate days left.

    The SLOs: broker drops, ingest lag and the KPI API's latency (its slow share of requests), and
    with the cloud bridge its produce latency (the share of MQTT messages whose records Kafka
    acknowledged after 1 s).
    """
    scope = rule_scope(view)
    _has_bucket(m.INGEST_LAG, INGEST_LAG_TARGET_S)
    _has_bucket(m.API_REQUEST_DURATION, API_LATENCY_TARGET_S)
    rules = [RecordingRule(f"{MQTT_DROPPED_RECORD}{w}", _dropped_ratio(scope, w), BROKER) for w in SLO_WINDOWS]
    rules += [
        RecordingRule(f"{INGEST_LAG_RECORD}{w}", _slow_ratio(scope, m.INGEST_LAG, INGEST_LAG_TARGET_S, w), CONNECTOR)
        for w in SLO_WINDOWS
    ]
    rules += [RecordingRule(f"{API_LATENCY_RECORD}{w}", _api_slow_ratio(scope, w), API) for w in SLO_WINDOWS]
    if view.cloud_bridge:
        _has_bucket(m.BRIDGE_PRODUCE_LATENCY, BRIDGE_LATENCY_TARGET_S)
        slow = [_slow_ratio(scope, m.BRIDGE_PRODUCE_LATENCY, BRIDGE_LATENCY_TARGET_S, w) for w in SLO_WINDOWS]
        rules += [
            RecordingRule(f"{BRIDGE_LATENCY_RECORD}{w}", e, CLOUD_BRIDGE)
            for w, e in zip(SLO_WINDOWS, slow, strict=True)
        ]
    # The facts name their PlantLine, whoever serves them; the record adds the line's site and line
    # (which an operator's scrape lacks), so the dashboards select it as any other series.
    days = f"({pki_selector(m.PKI_CERTIFICATE_NOT_AFTER, view.namespace, view.name)} - time()) / 86400"
    for label, value in ((SITE_LABEL, view.site), (LINE_LABEL, view.line)):
        days = f'label_replace({days}, "{label}", "{value}", "", "")'
    rules.append(RecordingRule(CERTIFICATE_DAYS_RECORD, days, PKI))
    return rules


# -- alerts -------------------------------------------------------------------------------------------


def _burn(record: str, scope: Scope, objective: float, windows: tuple[tuple[str, str, float], ...]) -> str:
    def ratio(window: str) -> str:
        return f"{record}{window}{{{scope.matchers()}}}"

    return " or ".join(
        f"({ratio(long)} > {factor:g} * {objective:g} and {ratio(short)} > {factor:g} * {objective:g})"
        for long, short, factor in windows
    )


def _slo_alerts(view: LineView, scope: Scope) -> Iterator[AlertRule]:
    slos: list[tuple[str, str, float, str, str, str]] = [
        (
            "PlantLineMessagesDroppedBudgetBurn",
            MQTT_DROPPED_RECORD,
            MQTT_DROPPED_OBJECTIVE,
            BROKER,
            "the broker drops messages",
            "of the broker's PUBLISH messages were dropped (objective: under 0.1 %)",
        ),
        (
            "PlantLineIngestLagBudgetBurn",
            INGEST_LAG_RECORD,
            INGEST_LAG_OBJECTIVE,
            CONNECTOR,
            "samples reach the broker late",
            f"of the samples took longer than {INGEST_LAG_TARGET_S:g} s from the PLC to the broker's "
            "acknowledgement (objective: p95 under 500 ms)",
        ),
        (
            "PlantLineApiLatencyBudgetBurn",
            API_LATENCY_RECORD,
            API_LATENCY_OBJECTIVE,
            API,
            "the KPI API answers slowly",
            f"of the KPI API's requests took longer than {API_LATENCY_TARGET_S * 1000:g} ms "
            "to answer (objective: p95 under 250 ms)",
        ),
    ]
    if view.cloud_bridge:
        slos.append(
            (
                "PlantLineCloudBridgeLatencyBudgetBurn",
                BRIDGE_LATENCY_RECORD,
                BRIDGE_LATENCY_OBJECTIVE,
                CLOUD_BRIDGE,
                "Kafka acknowledges the cloud bridge's records late",
                f"of the cloud bridge's MQTT messages waited longer than {BRIDGE_LATENCY_TARGET_S:g} s from "
                "the Kafka client to Kafka's acknowledgement of their records (objective: p99 under 1 s)",
            )
        )
    machines = ", ".join(view.machine_ids)
    for name, record, objective, source, what, ratio_text in slos:
        for speed, windows, severity, for_ in BURNS:
            yield AlertRule(
                name=name,
                expr=_burn(record, scope, objective, windows),
                probe=f"{record}{windows[0][1]}{{{scope.matchers()}}}",
                source=source,
                severity=severity,
                summary=f"{_where(view)}: {what} ({speed} error-budget burn)",
                description=(
                    f"On {_where(view)} (machines {machines}), {{{{ $value | humanizePercentage }}}} "
                    f"{ratio_text}; at this {speed} burn the month's error budget is gone early."
                ),
                for_=for_,
                labels={"burn": speed},
            )


def _connector_alerts(view: LineView, scope: Scope, connector: ConnectorView) -> Iterator[AlertRule]:
    group = {CONNECTOR_LABEL: connector.group}
    who = f"connector {connector.group} of {_where(view)} (machines {', '.join(connector.machines)})"
    yield AlertRule(
        "PlantLineConnectorDown", f"{scope.up(CONNECTOR, **group)} == 0", scope.up(CONNECTOR, **group),
        CONNECTOR, "critical", f"{_where(view)}: connector {connector.group} is down",
        f"Prometheus cannot scrape {who}: no sample of these machines is read or published.",
    )  # fmt: skip
    session = f"max without (broker) ({scope.of(m.MQTT_CONNECTED, **group)})"
    yield AlertRule(
        "PlantLineBrokerUnreachable", f"{session} == 0", session, CONNECTOR, "critical",
        f"{_where(view)}: connector {connector.group} has no MQTT session",
        f"{who} has no MQTT session with any broker: its samples wait in its outbox.", for_="1m",
    )  # fmt: skip
    refused = scope.of(m.MQTT_REFUSED, **group)
    yield AlertRule(
        "PlantLineBrokerRefusesIdentity", f"{refused} == 1", refused, CONNECTOR, "critical",
        f"{_where(view)}: the broker refuses connector {connector.group}",
        f"The brokers refuse the certificate of {who} (revoked, expired or not trusted).", for_="1m",
    )  # fmt: skip
    age = scope.of(m.OUTBOX_OLDEST_AGE, **group)
    yield AlertRule(
        "PlantLineOutboxOld", f"{age} > {OUTBOX_MAX_AGE_S:g}", age, CONNECTOR, "warning",
        f"{_where(view)}: connector {connector.group} holds samples older than {OUTBOX_MAX_AGE_S / 60:g} minutes",
        f"The outbox of {who} holds a sample {{{{ $value | humanizeDuration }}}} old: the broker has not "
        "acknowledged it for that long.", for_="5m",
    )  # fmt: skip
    full = f"{scope.of(m.OUTBOX_BYTES, **group)} / {view.outbox_max_bytes}"
    yield AlertRule(
        "PlantLineOutboxFilling", f"{full} > {OUTBOX_FULL_RATIO:g}", full, CONNECTOR, "warning",
        f"{_where(view)}: the outbox of connector {connector.group} is over {OUTBOX_FULL_RATIO:.0%} full",
        f"The outbox of {who} holds {{{{ $value | humanizePercentage }}}} of its {view.outbox_max_bytes} bytes; "
        "at its high watermark sampling slows down, at the bound the oldest samples are dropped.", for_="5m",
    )  # fmt: skip
    corrupt = scope.of(m.OUTBOX_CORRUPT, **group)
    yield AlertRule(
        "PlantLineOutboxQuarantine", f"{corrupt} > 0", corrupt, CONNECTOR, "warning",
        f"{_where(view)}: connector {connector.group} set damaged outbox batches aside",
        f"The outbox of {who} found {{{{ $value }}}} damaged batches and set them aside (quarantine); "
        "their samples were not published.", for_="0m",
    )  # fmt: skip


def _pki_alerts(view: LineView, scope: Scope) -> Iterator[AlertRule]:
    # With a maintenance window a renewal may wait up to a week for it; without one, a day.
    grace = 7.0 if view.maintenance_window else 1.0
    threshold = max(1.0, view.renew_before_days - grace)
    line = dict(zip(m.PKI_LINE_LABELS, (view.namespace, view.name), strict=True))
    days = f"{CERTIFICATE_DAYS_RECORD}{{{scope.matchers(line)}}}"
    yield AlertRule(
        "PlantLineCertificateRenewalOverdue", f"{days} < {threshold:g}", days, PKI, "warning",
        f"{_where(view)}: the certificate of {{{{ $labels.identity }}}} was not renewed",
        f"On {_where(view)} (PlantLine {view.namespace}/{view.name}), the certificate of "
        "{{ $labels.identity }} (the {{ $labels.role }} of machines {{ $labels.machines }}) expires in "
        f"{{{{ $value | humanize }}}} days: renewal is due {view.renew_before_days:g} days before expiry and "
        "has not happened.", for_="1h",
    )  # fmt: skip
    left = f"{pki_selector(m.PKI_CRL_NEXT_UPDATE, view.namespace, view.name)} - time()"
    yield AlertRule(
        "PlantLineCrlStale", f"{left} < {CRL_MIN_LEFT_S:g}", left, PKI, "critical",
        f"{_where(view)}: the CA's CRL is about to expire",
        f"The CRL of {_where(view)} (PlantLine {view.namespace}/{view.name}, machines "
        f"{', '.join(view.machine_ids)}) expires in "
        "{{ $value | humanizeDuration }}; once it has, the broker refuses every client.", for_="5m",
    )  # fmt: skip


def _broker_alerts(view: LineView, scope: Scope) -> Iterator[AlertRule]:
    if view.bridge is None:
        return
    state = broker.bridge_state(view.bridge).selector(scope.matchers())
    yield AlertRule(
        "PlantLineBridgeDown", f"{state} == 0", state, BROKER, "critical",
        f"{_where(view)}: the bridge to the core broker is down",
        f"The broker of {_where(view)} lost its bridge {view.bridge} to the core broker: the samples of "
        f"{', '.join(view.machine_ids)} queue in the site broker.", for_="5m",
    )  # fmt: skip


def _cloud_bridge_alerts(view: LineView, scope: Scope) -> Iterator[AlertRule]:
    if not view.cloud_bridge:
        return
    up, ready, kafka_up = scope.up(CLOUD_BRIDGE), scope.of(m.BRIDGE_READY), scope.of(m.BRIDGE_KAFKA_UP)
    samples = f"the samples of machines {', '.join(view.machine_ids)}"
    # Not ready while Kafka answers: its MQTT session is down. Not ready for Kafka is Kafka's alert.
    yield AlertRule(
        "PlantLineCloudBridgeDown", f"{up} == 0 or ({ready} == 0 unless {kafka_up} == 0)", up, CLOUD_BRIDGE,
        "critical", f"{_where(view)}: the cloud bridge is down",
        f"The cloud bridge of {_where(view)} cannot be scraped, or is not ready with Kafka reachable (no MQTT "
        f"session): {samples} do not reach Kafka; they wait in the broker's session of the bridge.",
    )  # fmt: skip
    yield AlertRule(
        "PlantLineCloudBridgeKafkaUnreachable", f"{kafka_up} == 0", kafka_up, CLOUD_BRIDGE, "critical",
        f"{_where(view)}: the cloud bridge cannot reach Kafka",
        f"The cloud bridge of {_where(view)} reaches no Kafka broker: {samples} wait unacknowledged at the "
        "MQTT broker (up to its queue limit).",
    )  # fmt: skip
    waiting = scope.of(m.BRIDGE_PENDING)
    acked = f"rate({scope.of(m.BRIDGE_MESSAGES)}[{BRIDGE_STALL_WINDOW}])"
    yield AlertRule(
        "PlantLineCloudBridgeProduceStalled", f"{waiting} > 0 and {acked} == 0 and {kafka_up} == 1", waiting,
        CLOUD_BRIDGE, "critical", f"{_where(view)}: Kafka acknowledges none of the cloud bridge's records",
        f"The cloud bridge of {_where(view)} reaches Kafka, yet for {BRIDGE_STALL_WINDOW} no MQTT message was "
        f"acknowledged while {{{{ $value }}}} wait: {samples} stop at the bridge.",
    )  # fmt: skip
    dead = f"sum by ({_BY_LINE}, reason) (increase({scope.of(m.BRIDGE_DEAD_LETTERS)}[{BRIDGE_DEAD_LETTER_WINDOW}]))"
    yield AlertRule(
        "PlantLineCloudBridgeDeadLetters", f"{dead} > 0", dead, CLOUD_BRIDGE, "warning",
        f"{_where(view)}: the cloud bridge writes dead letters ({{{{ $labels.reason }}}})",
        f"The cloud bridge of {_where(view)} (machines {', '.join(view.machine_ids)}) sent {{{{ $value }}}} "
        f"MQTT messages to the dead-letter topic in {BRIDGE_DEAD_LETTER_WINDOW} ({{{{ $labels.reason }}}}): "
        "their samples are not on the sample topics.", for_="0m",
    )  # fmt: skip
    lag = scope.of(m.BRIDGE_MQTT_LAG)
    yield AlertRule(
        "PlantLineCloudBridgeMqttLag", f"{lag} > {BRIDGE_MQTT_LAG_MAX_S:g}", lag, CLOUD_BRIDGE, "warning",
        f"{_where(view)}: the cloud bridge lags over {BRIDGE_MQTT_LAG_MAX_S:g} s behind MQTT",
        f"The oldest MQTT message the cloud bridge of {_where(view)} holds unacknowledged is "
        f"{{{{ $value | humanizeDuration }}}} old: {samples} reach Kafka that late.", for_="5m",
    )  # fmt: skip


def _operator_alerts(view: LineView) -> Iterator[AlertRule]:
    errors = (
        f"sum by (namespace, plantline) (increase({m.OPERATOR_RECONCILE_ERRORS.name}"
        f'{{namespace="{view.namespace}", plantline="{view.name}"}}[15m]))'
    )
    yield AlertRule(
        "PlantLineReconcileFailing", f"{errors} > 0", errors, OPERATOR, "warning",
        f"{_where(view)}: the operator fails to reconcile PlantLine {view.namespace}/{view.name}",
        f"Reconciling {view.namespace}/{view.name} ({_where(view)}, machines {', '.join(view.machine_ids)}) "
        "failed {{ $value }} times in 15 minutes; its children may be out of date.", for_="15m",
    )  # fmt: skip


def alert_rules(view: LineView) -> list[AlertRule]:
    """Return every alerting rule of the line, in a stable order."""
    scope = rule_scope(view)
    rules = [
        AlertRule(
            "PlantLinePlcDisconnected",
            f"{scope.of(m.SOURCE_CONNECTED)} == 0",
            scope.of(m.SOURCE_CONNECTED),
            CONNECTOR,
            "warning",
            f"{_where(view)}: the PLC of {{{{ $labels.device }}}} is disconnected",
            f"On {_where(view)}, the connector has no connection to the PLC of machine {{{{ $labels.device }}}}: "
            "its values are not read.",
        )
    ]
    for connector in view.connectors:
        rules += _connector_alerts(view, scope, connector)
    rules += _pki_alerts(view, scope)
    rules += _broker_alerts(view, scope)
    rules += _cloud_bridge_alerts(view, scope)
    rules += _slo_alerts(view, scope)
    rules += _operator_alerts(view)
    return rules


def alert_names(view: LineView) -> list[str]:
    """Return the distinct alert names of the line, in order."""
    return list(dict.fromkeys(rule.name for rule in alert_rules(view)))


def rule_file(view: LineView) -> dict[str, Any]:
    """Return the line's Prometheus rule file (its `groups`), as `promtool check rules` reads it."""
    base = f"plantline-{view.namespace}-{view.name}"
    return {
        "groups": [
            {"name": f"{base}-slo", "interval": "30s", "rules": [r.to_rule() for r in recording_rules(view)]},
            {"name": f"{base}-alerts", "rules": [r.to_rule(view.runbook_base) for r in alert_rules(view)]},
        ]
    }
