"""The line's Grafana dashboards: Line / OEE, Edge / connectors, Broker, Operator / core, Cloud bridge.

The Cloud bridge dashboard is made only for a line that runs the cloud bridge (`view.cloud_bridge`).

Every query selects the `site`, `line` and (where the metric has one) `machine` variables, whose
defaults are the line's own; the OEE dashboard also has a period selector (the rolling window or
the current shift, the KPI engine's `scope`). Panels link to the other dashboards of the machine
they show.
"""

from __future__ import annotations

from typing import Any, Final

from plantline.connectors import metric_names as m
from plantline.dashboards import broker
from plantline.dashboards.grafana import (
    ONE_IS_GOOD,
    RATIO_STEPS,
    ZERO_IS_GOOD,
    Layout,
    Panel,
    Query,
    boolean_mappings,
    constant_variable,
    custom_variable,
    dashboard,
    dashboard_link,
    datasource_variable,
    query_variable,
    uid,
    value_mappings,
)
from plantline.dashboards.line import BROKER, CLOUD_BRIDGE, COMPONENT_LABEL, CONNECTOR, LineView
from plantline.dashboards.promql import DASHBOARD_SCOPE as S
from plantline.dashboards.rules import (
    API_LATENCY_RECORD,
    API_LATENCY_TARGET_S,
    BRIDGE_LATENCY_RECORD,
    BRIDGE_LATENCY_TARGET_S,
    BRIDGE_MQTT_LAG_MAX_S,
    CERTIFICATE_DAYS_RECORD,
    INGEST_LAG_RECORD,
    MQTT_DROPPED_RECORD,
    api_selector,
    pki_selector,
)

KINDS: Final = ("oee", "edge", "broker", "core", "cloud")  # "cloud" only for a line with the cloud bridge
TAG: Final = "plantline"
RATE: Final = "$__rate_interval"
PERIOD = {"scope": "$scope"}
BY_DEVICE = "{{device}}"
STATE_COLORS: Final = {
    "unknown": "#808080",
    "run": "green",
    "idle": "yellow",
    "blocked": "orange",
    "starved": "purple",
    "fault": "red",
    "planned_stop": "blue",
    "off_shift": "#404040",
}


def _variables(view: LineView, *, machine: bool = True) -> list[dict[str, Any]]:
    found = [
        datasource_variable(),
        query_variable("site", "Site", f'label_values(up{{{COMPONENT_LABEL}="{CONNECTOR}"}}, site)', current=view.site),
        query_variable("line", "Line", 'label_values(up{site=~"$site"}, line)', current=view.line),
    ]
    if machine:
        query = f'label_values({m.SOURCE_CONNECTED.name}{{site=~"$site", line=~"$line"}}, device)'
        found.append(query_variable("machine", "Machine", query, current="All", multi=True))
    return found


def _board(
    view: LineView, kind: str, name: str, description: str, *, variables: list[dict[str, Any]], layout: Layout
) -> dict[str, Any]:
    """Return the line's dashboard of `kind`: its uid, title and tags made alike for every kind."""
    return dashboard(
        uid_=uid(kind, view.namespace, view.name),
        title=f"PlantLine {view.title}: {name}",
        description=description,
        tags=[TAG, kind, view.site, view.line],
        variables=variables,
        layout=layout,
    )


def _ratio(title: str, metric: m.MetricDefinition, description: str, links: list[dict[str, Any]]) -> Panel:
    return Panel(
        "stat", title, [Query(S.of(metric, **PERIOD), BY_DEVICE)], description=description, unit="percentunit",
        thresholds=RATIO_STEPS, minimum=0, maximum=1, width=6, height=5, links=links,
    )  # fmt: skip


def line_oee(view: LineView) -> dict[str, Any]:
    """Return the Line / OEE dashboard: A, P, Q and OEE per machine, parts, faults, MTTR and MTBF."""
    edge = [dashboard_link("Edge / connectors of ${__field.labels.device}", uid("edge", view.namespace, view.name))]
    layout = Layout()
    layout.row("OEE (Availability x Performance x Quality)")
    layout.add(_ratio("OEE", m.KPI_OEE, m.KPI_OEE.help, edge))
    layout.add(_ratio("Availability", m.KPI_AVAILABILITY, m.KPI_AVAILABILITY.help, edge))
    layout.add(_ratio("Performance", m.KPI_PERFORMANCE, m.KPI_PERFORMANCE.help, edge))
    layout.add(_ratio("Quality", m.KPI_QUALITY, m.KPI_QUALITY.help, edge))
    layout.add(
        Panel("timeseries", "OEE over time", [Query(S.of(m.KPI_OEE, **PERIOD), BY_DEVICE)], unit="percentunit",
              thresholds=RATIO_STEPS, minimum=0, maximum=1, width=24, links=edge)
    )  # fmt: skip
    layout.row("Parts")
    parts = [
        Query(S.of(m.KPI_GOOD, **PERIOD), "{{device}} good"),
        Query(S.of(m.KPI_REJECT, **PERIOD), "{{device}} reject"),
    ]
    layout.add(Panel("timeseries", "Good and reject parts in the period", parts, width=16))
    table = [Query(S.of(g, **PERIOD), BY_DEVICE, instant=True) for g in (m.KPI_GOOD, m.KPI_REJECT, m.KPI_TOTAL)]
    layout.add(Panel("table", "Parts per machine", table, width=8))
    layout.row("State and faults")
    state = [Query(S.of(m.KPI_STATE), BY_DEVICE)]
    layout.add(
        Panel("state-timeline", "Machine state", state, description=m.KPI_STATE.help, width=24, height=6,
              mappings=value_mappings([(name.replace("_", " "), STATE_COLORS[name]) for name in m.MACHINE_STATES]),
              links=edge)
    )  # fmt: skip
    layout.add(
        Panel("stat", "Active fault code", [Query(S.of(m.KPI_FAULT_ACTIVE_CODE), BY_DEVICE)],
              description=m.KPI_FAULT_ACTIVE_CODE.help, thresholds=ZERO_IS_GOOD, width=6, height=6)
    )  # fmt: skip
    layout.add(
        Panel("timeseries", "Fault history (active code)", [Query(S.of(m.KPI_FAULT_ACTIVE_CODE), BY_DEVICE)],
              width=10, height=6)
    )  # fmt: skip
    layout.add(
        Panel("stat", "Faults in the period", [Query(S.of(m.KPI_FAULTS, **PERIOD), BY_DEVICE)], width=8, height=6)
    )  # fmt: skip
    layout.row("Maintenance")
    for metric in (m.KPI_MTTR, m.KPI_MTBF):
        layout.add(Panel("stat", metric.help, [Query(S.of(metric, **PERIOD), BY_DEVICE)], unit="s", width=12, height=5))
    periods = custom_variable("scope", "Period", (("Rolling window", "window"), ("Current shift", "shift")))
    about = f"OEE, parts, state and faults of the machines of {view.title}, as the edge computes them."
    return _board(view, "oee", "Line / OEE", about, variables=[*_variables(view), periods], layout=layout)


def edge_connectors(view: LineView) -> dict[str, Any]:
    """Return the Edge / connectors dashboard: PLC links, sampling, outbox, MQTT, Sparkplug, certificates."""
    oee = [dashboard_link("Line / OEE of ${__field.labels.device}", uid("oee", view.namespace, view.name))]
    layout = Layout()
    layout.row("PLCs")
    layout.add(
        Panel("state-timeline", "PLC connected", [Query(S.of(m.SOURCE_CONNECTED), BY_DEVICE)], width=16, height=5,
              mappings=boolean_mappings("disconnected", "connected"), links=oee)
    )  # fmt: skip
    # One row per device: 1 with who refused and the protocol's code, 0 with both labels empty.
    refused = [Query(S.of(m.SOURCE_REFUSED), "{{device}} {{by}} {{code}}", instant=True)]
    layout.add(
        Panel("table", "PLC refusals (certificates)", refused, description=m.SOURCE_REFUSED.help,
              thresholds=ZERO_IS_GOOD, width=8, height=5)
    )  # fmt: skip
    samples = [Query(f"rate({S.of(m.SAMPLES)}[{RATE}])", BY_DEVICE)]
    layout.add(Panel("timeseries", "Samples/s", samples, unit="reqps", width=8, links=oee))
    age = [Query(f"time() - {S.of(m.SOURCE_LAST_SAMPLE)}", BY_DEVICE)]
    layout.add(
        Panel(
            "stat", "Last sample age", age, unit="s", thresholds=(("green", None), ("orange", 10), ("red", 60)), width=8
        )
    )
    errors = [
        Query(f"rate({S.of(m.SOURCE_READ_ERRORS)}[{RATE}])", "{{device}} read errors"),
        Query(f"sum by (device, quality) (rate({S.of(m.SAMPLES_BAD_QUALITY)}[{RATE}]))", "{{device}} {{quality}}"),
    ]
    layout.add(Panel("timeseries", "Read errors and bad-quality samples", errors, unit="reqps", width=8))
    reconnects = [Query(f"increase({S.of(m.SOURCE_RECONNECTS)}[{RATE}])", BY_DEVICE)]
    layout.add(Panel("timeseries", "PLC reconnects", reconnects, width=12))
    slowdown = [Query(S.of(m.SAMPLING_SLOWDOWN), BY_DEVICE)]
    layout.add(
        Panel("timeseries", "Adaptive sampling factor", slowdown, description=m.SAMPLING_SLOWDOWN.help,
              thresholds=(("green", None), ("orange", 1.01)), minimum=1, width=12)
    )  # fmt: skip
    layout.row("Outbox")
    bound = view.outbox_max_bytes
    layout.add(
        Panel("timeseries", "Outbox bytes", [Query(S.of(m.OUTBOX_BYTES), "{{connector}}")], unit="bytes",
              thresholds=(("green", None), ("red", bound)), maximum=bound)
    )  # fmt: skip
    layout.add(Panel("stat", "Oldest waiting sample", [Query(S.of(m.OUTBOX_OLDEST_AGE), "{{connector}}")], unit="s",
                     thresholds=(("green", None), ("orange", 60), ("red", 600))))  # fmt: skip
    drops = [
        Query(f"sum by (connector, reason) (increase({S.of(m.OUTBOX_DROPPED)}[{RATE}]))", "{{connector}} {{reason}}"),
        Query(S.of(m.OUTBOX_CORRUPT), "{{connector}} quarantined batches"),
        Query(
            f"sum by (connector, reason) (increase({S.of(m.OUTBOX_QUARANTINED)}[{RATE}]))",
            "{{connector}} set aside: {{reason}}",
        ),
    ]
    layout.add(Panel("timeseries", "Outbox drops and quarantine", drops, thresholds=ZERO_IS_GOOD))
    waiting = [
        Query(S.of(m.OUTBOX_SAMPLES), "{{connector}} samples"),
        Query(S.of(m.OUTBOX_BATCHES), "{{connector}} batches"),
    ]
    layout.add(Panel("timeseries", "Samples and batches waiting in the outbox", waiting, width=24, height=6))
    layout.row("MQTT and Sparkplug")
    mqtt = [
        Query(S.of(m.MQTT_CONNECTED), "{{connector}} {{broker}}"),
        Query(S.of(m.MQTT_REFUSED), "{{connector}} refused"),
    ]
    layout.add(Panel("state-timeline", "MQTT session", mqtt, width=12, height=6))
    lag = f"histogram_quantile(0.95, sum by (le, connector) (rate({S.of(m.INGEST_LAG, '_bucket')}[{RATE}])))"
    layout.add(
        Panel("timeseries", "Ingest lag p95 (PLC to broker acknowledgement)", [Query(lag, "{{connector}}")],
              unit="s", thresholds=(("green", None), ("red", 0.5)), width=12, height=6)
    )  # fmt: skip
    messages = [
        Query(f"sum by (connector, type) (rate({S.of(m.SPARKPLUG_MESSAGES)}[{RATE}]))", "{{connector}} {{type}}")
    ]
    layout.add(Panel("timeseries", "Sparkplug messages/s by type", messages, unit="reqps", width=12))
    bdseq = [Query(S.of(m.SPARKPLUG_BDSEQ), "{{connector}}")]
    layout.add(
        Panel("timeseries", "Sparkplug bdSeq (a step is a new MQTT session)", bdseq, description=m.SPARKPLUG_BDSEQ.help,
              minimum=0, maximum=255, width=6)
    )  # fmt: skip
    rebirths = [Query(f"sum by (connector) (increase({S.of(m.SPARKPLUG_REBIRTHS)}[1h]))", "{{connector}}")]
    layout.add(
        Panel("stat", "Rebirths in the last hour", rebirths, description=m.SPARKPLUG_REBIRTHS.help,
              thresholds=(("green", None), ("orange", 3)), width=6)
    )  # fmt: skip
    layout.row("Connectors and certificates")
    layout.add(
        Panel("state-timeline", "Connector scraped", [Query(S.up(CONNECTOR), "{{connector}}")], width=12, height=6,
              mappings=boolean_mappings("down", "up"))
    )  # fmt: skip
    days = f"{CERTIFICATE_DAYS_RECORD}{{{S.matchers()}}}"
    layout.add(
        Panel("stat", "Certificate days left", [Query(days, "{{identity}}")], unit="d", width=12, height=6,
              thresholds=(("red", None), ("orange", view.renew_before_days / 2), ("green", view.renew_before_days)))
    )  # fmt: skip
    about = f"The connectors of {view.title}: PLC links, sampling, outbox, MQTT, Sparkplug and certificates."
    return _board(view, "edge", "Edge / connectors", about, variables=_variables(view), layout=layout)


def broker_dashboard(view: LineView) -> dict[str, Any]:
    """Return the Broker dashboard: clients, messages, drops, store (queue) and the bridge, from `$SYS`."""
    scope = S.matchers()
    layout = Layout()
    layout.row(f"Broker of {view.title} (Mosquitto $SYS)")
    layout.add(
        Panel("stat", "Clients connected", [Query(broker.CLIENTS_CONNECTED.selector(scope), "clients")], width=6)
    )
    layout.add(
        Panel("state-timeline", "Broker exporter scraped", [Query(S.up(BROKER), "exporter")], width=6,
              mappings=boolean_mappings("down", "up"))
    )  # fmt: skip
    flows = [
        Query(f"rate({broker.PUBLISH_RECEIVED.selector(scope)}[{RATE}])", "PUBLISH in"),
        Query(f"rate({broker.PUBLISH_SENT.selector(scope)}[{RATE}])", "PUBLISH out"),
        Query(f"rate({broker.MESSAGES_RECEIVED.selector(scope)}[{RATE}])", "all in"),
        Query(f"rate({broker.MESSAGES_SENT.selector(scope)}[{RATE}])", "all out"),
    ]
    layout.add(Panel("timeseries", "Messages/s in and out", flows, unit="reqps", width=12))
    dropped = [Query(f"rate({broker.PUBLISH_DROPPED.selector(scope)}[{RATE}])", "dropped")]
    layout.add(Panel("timeseries", "PUBLISH dropped/s", dropped, unit="reqps", thresholds=ZERO_IS_GOOD, width=8))
    ratio = [Query(f"{MQTT_DROPPED_RECORD}{w}{{{scope}}}", f"dropped ratio {w}") for w in ("5m", "1h")]
    layout.add(
        Panel("timeseries", "Dropped ratio (objective under 0.1 %)", ratio, unit="percentunit",
              thresholds=(("green", None), ("red", 0.001)), width=8)
    )  # fmt: skip
    store = [
        Query(broker.STORE_MESSAGES.selector(scope), "messages"),
        Query(broker.STORE_BYTES.selector(scope), "bytes"),
    ]
    layout.add(Panel("timeseries", "Queue depth (messages and bytes held)", store, width=8))
    if view.bridge is not None:
        state = [Query(broker.bridge_state(view.bridge).selector(scope), view.bridge)]
        layout.add(
            Panel("state-timeline", "Bridge to the core broker", state, width=24, height=5,
                  mappings=boolean_mappings("down", "connected"), thresholds=ONE_IS_GOOD)
        )  # fmt: skip
    lag = [Query(f"{INGEST_LAG_RECORD}{w}{{{scope}}}", f"late samples {w}") for w in ("5m", "1h")]
    layout.add(
        Panel("timeseries", "Samples over 500 ms to the broker (objective under 5 %)", lag, unit="percentunit",
              thresholds=(("green", None), ("red", 0.05)), width=24)
    )  # fmt: skip
    about = f"The broker of {view.title} from its own $SYS counters, and the line's two SLOs."
    return _board(view, "broker", "Broker", about, variables=_variables(view, machine=False), layout=layout)


def operator_core(view: LineView) -> dict[str, Any]:
    """Return the Operator / core dashboard: reconciles, errors, time to Ready, certificates, the CRL."""
    line = '{namespace="$namespace", plantline="$plantline"}'
    layout = Layout()
    layout.row(f"Operator: PlantLine {view.namespace}/{view.name}")
    reconciles = [Query(f"sum by (result) (rate({m.OPERATOR_RECONCILES.name}{line}[{RATE}]))", "{{result}}")]
    layout.add(Panel("timeseries", "Reconciles/s by outcome", reconciles, unit="reqps"))
    errors = [Query(f"sum by (step) (increase({m.OPERATOR_RECONCILE_ERRORS.name}{line}[{RATE}]))", "{{step}}")]
    layout.add(Panel("timeseries", "Failed reconcile steps", errors, thresholds=ZERO_IS_GOOD))
    quantiles = [
        Query(f"histogram_quantile({q}, sum by (le) (rate({metric.name}_bucket[{RATE}])))", f"{label} p{q * 100:g}")
        for metric, label in ((m.OPERATOR_RECONCILE_DURATION, "reconcile"), (m.OPERATOR_TIME_TO_READY, "to Ready"))
        for q in (0.5, 0.95)
    ]
    layout.add(Panel("timeseries", "Reconcile duration and time to Ready", quantiles, unit="s"))
    layout.row("Certificates and CRL")
    certificates = [
        Query(f"sum(increase({metric.name}{line}[1h]))", label, instant=True)
        for metric, label in (
            (m.OPERATOR_CERTIFICATES_ISSUED, "issued"),
            (m.OPERATOR_CERTIFICATES_RENEWED, "renewed"),
            (m.OPERATOR_CERTIFICATES_REVOKED, "revoked"),
        )
    ]
    layout.add(Panel("stat", "Certificates in the last hour", certificates, width=8))
    crl = [
        Query(f"time() - {pki_selector(m.PKI_CRL_LAST_UPDATE, '$namespace', '$plantline')}", "CRL age"),
        Query(f"{pki_selector(m.PKI_CRL_NEXT_UPDATE, '$namespace', '$plantline')} - time()", "CRL valid for"),
    ]
    layout.add(Panel("stat", "CRL age and validity left", crl, unit="s", width=8))
    days = f"{CERTIFICATE_DAYS_RECORD}{{{S.matchers()}}}"
    layout.add(Panel("table", "Certificate days left", [Query(days, "{{identity}}", instant=True)], unit="d", width=8))
    _kpi_api(layout)
    variables = [
        *_variables(view, machine=False),
        constant_variable("namespace", view.namespace),
        constant_variable("plantline", view.name),
    ]
    about = f"The operator reconciling {view.namespace}/{view.name}, and the line's certificates and CRL."
    return _board(view, "core", "Operator / core", about, variables=variables, layout=layout)


def _kpi_api(layout: Layout) -> None:
    """Add the KPI API's row: p95 latency by route against its objective, requests by status, the slow share."""
    layout.row("KPI API (historian)")
    p95 = f"histogram_quantile(0.95, sum by (le, route) (rate({api_selector(S, '_bucket')}[{RATE}])))"
    layout.add(
        Panel("timeseries", "KPI API p95 latency by route (objective under 250 ms)", [Query(p95, "{{route}}")],
              unit="s", thresholds=(("green", None), ("red", API_LATENCY_TARGET_S)), width=8)
    )  # fmt: skip
    requests = [Query(f"sum by (status) (rate({api_selector(S, '_count')}[{RATE}]))", "{{status}}")]
    layout.add(Panel("timeseries", "KPI API requests/s by status", requests, unit="reqps", width=8))
    slow = [Query(f"{API_LATENCY_RECORD}{w}{{{S.matchers()}}}", f"slow requests {w}") for w in ("5m", "1h")]
    layout.add(
        Panel("timeseries", "KPI API requests over 250 ms (objective under 5 %)", slow, unit="percentunit",
              thresholds=(("green", None), ("red", 0.05)), width=8)
    )  # fmt: skip


def cloud_bridge_dashboard(view: LineView) -> dict[str, Any]:
    """Return the Cloud bridge dashboard: state, records, dead letters, produce latency, batches, MQTT lag."""
    broker_board = [dashboard_link("Broker", uid("broker", view.namespace, view.name), machine="All")]
    layout = Layout()
    layout.row(f"Cloud bridge of {view.title}: MQTT to Kafka")
    scraped = [Query(S.up(CLOUD_BRIDGE), "scraped"), Query(S.of(m.BRIDGE_READY), "ready")]
    layout.add(
        Panel("state-timeline", "Bridge scraped and ready (/readyz)", scraped, description=m.BRIDGE_READY.help,
              mappings=boolean_mappings("down", "up"), thresholds=ONE_IS_GOOD, width=12, height=5)
    )  # fmt: skip
    links = [Query(S.of(m.BRIDGE_MQTT_CONNECTED), "MQTT"), Query(S.of(m.BRIDGE_KAFKA_UP), "Kafka")]
    layout.add(
        Panel("state-timeline", "MQTT session and Kafka reachable", links, mappings=boolean_mappings("down", "up"),
              thresholds=ONE_IS_GOOD, width=12, height=5, links=broker_board)
    )  # fmt: skip
    layout.row("Records")
    records = [
        Query(f"sum by (topic) (rate({S.of(m.BRIDGE_RECORDS)}[{RATE}]))", "{{topic}}"),
        Query(f"rate({S.of(m.BRIDGE_MESSAGES)}[{RATE}])", "MQTT messages acknowledged"),
    ]
    layout.add(Panel("timeseries", "Records/s by topic", records, unit="reqps", width=12))
    dead = [Query(f"sum by (reason) (increase({S.of(m.BRIDGE_DEAD_LETTERS)}[{RATE}]))", "{{reason}}")]
    layout.add(
        Panel("timeseries", "Dead letters by reason", dead, description=m.BRIDGE_DEAD_LETTERS.help,
              thresholds=ZERO_IS_GOOD, width=12)
    )  # fmt: skip
    _cloud_bridge_kafka(layout)
    about = f"The cloud bridge of {view.title}: Sparkplug samples from the broker to Kafka."
    return _board(view, "cloud", "Cloud bridge", about, variables=_variables(view, machine=False), layout=layout)


def _cloud_bridge_kafka(layout: Layout) -> None:
    """Add the cloud bridge's Kafka and MQTT rows: produce latency and its SLO, batches, MQTT lag and backlog."""
    layout.row("Kafka produce")
    target = BRIDGE_LATENCY_TARGET_S
    latency = [
        Query(f"histogram_quantile({q}, sum by (le) (rate({S.of(m.BRIDGE_PRODUCE_LATENCY, '_bucket')}[{RATE}])))",
              f"p{q * 100:g}")
        for q in (0.5, 0.99)
    ]  # fmt: skip
    layout.add(
        Panel("timeseries", f"Produce latency p50 and p99 (objective: p99 under {target:g} s)", latency, unit="s",
              description=m.BRIDGE_PRODUCE_LATENCY.help, thresholds=(("green", None), ("red", target)))
    )  # fmt: skip
    slow = [Query(f"{BRIDGE_LATENCY_RECORD}{w}{{{S.matchers()}}}", f"slow records {w}") for w in ("5m", "1h")]
    layout.add(
        Panel("timeseries", f"Messages over {target:g} s to Kafka's acknowledgement (objective under 1 %)", slow,
              unit="percentunit", thresholds=(("green", None), ("red", 0.01)))
    )  # fmt: skip
    batch = [Query(S.of(m.BRIDGE_BATCH_RECORDS), "{{quantile}}")]
    layout.add(Panel("timeseries", "Records per Kafka batch", batch, description=m.BRIDGE_BATCH_RECORDS.help))
    layout.row("MQTT")
    lag = [Query(S.of(m.BRIDGE_MQTT_LAG), "oldest unacknowledged")]
    layout.add(
        Panel("timeseries", "MQTT lag", lag, description=m.BRIDGE_MQTT_LAG.help, unit="s", width=12,
              thresholds=(("green", None), ("orange", BRIDGE_MQTT_LAG_MAX_S / 4), ("red", BRIDGE_MQTT_LAG_MAX_S)))
    )  # fmt: skip
    waiting = [Query(S.of(m.BRIDGE_INBOX), "received, not yet records"),
               Query(S.of(m.BRIDGE_PENDING), "waiting for Kafka")]  # fmt: skip
    layout.add(Panel("timeseries", "MQTT messages waiting", waiting, width=12))


def dashboards(view: LineView) -> dict[str, dict[str, Any]]:
    """Return the line's dashboards by kind: oee, edge, broker, core (and cloud, with the cloud bridge)."""
    boards = {
        "oee": line_oee(view),
        "edge": edge_connectors(view),
        "broker": broker_dashboard(view),
        "core": operator_core(view),
    }
    if view.cloud_bridge:
        boards["cloud"] = cloud_bridge_dashboard(view)
    return boards
