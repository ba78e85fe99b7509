"""The generated dashboards and rules, as data: names from the one registry, labels, links, SLO windows."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from plantline.connectors import metric_names as m
from plantline.dashboards import ConnectorView, LineView, MachineView, Targets, prometheus_config, render_files
from plantline.dashboards import broker as b
from plantline.dashboards.boards import dashboards
from plantline.dashboards.rules import FAST_BURN, SLOW_BURN, alert_rules, recording_rules, rule_file, runbook_url

VIEW = LineView(
    name="site1-line1",
    namespace="plantline",
    site="site1",
    area="packaging",
    line="line1",
    machines=(
        MachineView("filler", "opcua", ("state.run", "counter.good")),
        MachineView("capper", "s7", ("state.run",)),
        MachineView("labeler", "cip", ("process.temperature",)),
    ),
    connectors=(ConnectorView("opcua", ("filler",)), ConnectorView("s7", ("capper", "labeler"))),
    bridge="site1-line1-bridge",
    cloud_bridge=True,
    renew_before_days=30,
    maintenance_window=True,
)

_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*\{)")
_METRIC = re.compile(r"\bplantline_[a-z0-9_]+")


def _exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def _known_names() -> set[str]:
    defined = (*m.CONNECTOR_METRICS, *m.PKI_METRICS, *m.OPERATOR_METRICS, *m.API_METRICS, *m.BRIDGE_METRICS)
    names = {d.name for d in defined}
    names |= {d.name + suffix for d in defined if d.type == "histogram" for suffix in ("_bucket", "_count", "_sum")}
    names |= {metric.name for metric in b.BROKER_METRICS} | {"up", "mosquitto_state"}
    names |= {rule.record for rule in recording_rules(VIEW)}
    return names


def test_every_series_a_dashboard_or_rule_reads_is_defined_once_in_the_registries() -> None:
    exprs = [e for board in dashboards(VIEW).values() for e in _exprs(board)]
    exprs += [r.expr for r in recording_rules(VIEW)] + [r.expr for r in alert_rules(VIEW)]
    used = {name for expr in exprs for name in _IDENTIFIER.findall(expr)}
    assert used - _known_names() == set()


def test_every_metric_plantline_exposes_is_on_a_board() -> None:
    # on a panel, or read by a recording rule a panel shows (the KPIs' run and planned time feed A, not a panel)
    on_boards = " ".join(e for board in dashboards(VIEW).values() for e in _exprs(board))
    shown_records = " ".join(r.expr for r in recording_rules(VIEW) if r.record in on_boards)
    shown = {n.removesuffix("_bucket") for n in _METRIC.findall(f"{on_boards} {shown_records}")}
    every = (*m.CONNECTOR_METRICS, *m.PKI_METRICS, *m.OPERATOR_METRICS, *m.API_METRICS, *m.BRIDGE_METRICS)
    assert {d.name for d in every} - shown == {m.KPI_RUN.name, m.KPI_PLANNED.name}


def test_every_alert_has_severity_summary_description_naming_line_and_machine_and_runbook() -> None:
    for group in rule_file(VIEW)["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            notes = rule["annotations"]
            assert "line site1/packaging/line1" in notes["summary"], rule["alert"]
            assert "line site1/packaging/line1" in notes["description"], rule["alert"]
            names_machine = "$labels.device" in notes["description"] or "$labels.identity" in notes["description"]
            assert names_machine or any(mid in notes["description"] for mid in VIEW.machine_ids), rule["alert"]
            assert notes["runbook_url"] == f"{VIEW.runbook_base}/{rule['alert']}.md"


def test_connector_alerts_are_per_connector_and_name_its_machines() -> None:
    down = [r for r in alert_rules(VIEW) if r.name == "PlantLineConnectorDown"]
    assert [('connector="opcua"' in r.expr, 'connector="s7"' in r.expr) for r in down] == [(True, False), (False, True)]
    assert "machines capper, labeler" in down[1].description


def test_slo_alerts_use_the_workbooks_windows_and_factors() -> None:
    burns = [r for r in alert_rules(VIEW) if r.name == "PlantLineIngestLagBudgetBurn"]
    assert [(r.severity, r.labels["burn"]) for r in burns] == [("critical", "fast"), ("warning", "slow")]
    assert FAST_BURN == (("1h", "5m", 14.4), ("6h", "30m", 6.0))
    assert SLOW_BURN == (("1d", "2h", 3.0), ("3d", "6h", 1.0))
    assert "ratio_rate1h" in burns[0].expr
    assert "14.4 * 0.05" in burns[0].expr
    assert "ratio_rate3d" in burns[1].expr
    assert "1 * 0.05" in burns[1].expr
    api = [r for r in alert_rules(VIEW) if r.name == "PlantLineApiLatencyBudgetBurn"]
    assert [(r.severity, r.labels["burn"]) for r in api] == [("critical", "fast"), ("warning", "slow")]
    assert "plantline:api_slow:ratio_rate1h" in api[0].expr
    slow = next(r for r in recording_rules(VIEW) if r.record == "plantline:api_slow:ratio_rate5m")
    assert 'le="0.25"' in slow.expr
    assert 'route!~"/metrics"' in slow.expr  # scrapes are not requests of the objective
    records = {r.record for r in recording_rules(VIEW)}
    assert {f"plantline:ingest_lag_slow:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")} <= records
    lag = next(r for r in recording_rules(VIEW) if r.record == "plantline:ingest_lag_slow:ratio_rate5m")
    assert 'le="0.5"' in lag.expr


@pytest.mark.parametrize(
    ("record", "metric"),
    [
        ("plantline:ingest_lag_slow:ratio_rate5m", m.INGEST_LAG),
        ("plantline:api_slow:ratio_rate5m", m.API_REQUEST_DURATION),
        ("plantline:bridge_produce_slow:ratio_rate5m", m.BRIDGE_PRODUCE_LATENCY),
    ],
)
def test_each_slo_selects_a_bucket_as_prometheus_client_writes_its_le(record: str, metric: m.MetricDefinition) -> None:
    registry = CollectorRegistry()
    histogram = Histogram(metric.family, metric.help, metric.labels, buckets=metric.buckets, registry=registry)
    if metric.labels:  # a labelled histogram writes its buckets once it has a child
        histogram.labels(*("x" for _ in metric.labels)).observe(0)
    exposed = generate_latest(registry).decode()
    (rule,) = [r for r in recording_rules(VIEW) if r.record == record]
    (le,) = re.findall(r'le="([^"]+)"', rule.expr)
    assert f'le="{le}"' in exposed, f"{record} selects le={le!r}, which {metric.name} does not write"

    plain = dataclasses.replace(VIEW, bridge=None)
    assert "PlantLineBridgeDown" not in {r.name for r in alert_rules(plain)}
    assert "PlantLineBridgeDown" in {r.name for r in alert_rules(VIEW)}
    titles = [p["title"] for p in dashboards(plain)["broker"]["panels"]]
    assert "Bridge to the core broker" not in titles


def test_only_a_line_with_the_cloud_bridge_gets_its_board_rules_and_slo() -> None:
    plain = dataclasses.replace(VIEW, cloud_bridge=False)
    assert "cloud" not in dashboards(plain)
    assert [r for r in recording_rules(plain) if r.source == "bridge"] == []
    assert [r for r in alert_rules(plain) if r.source == "bridge"] == []
    assert not any("plantline_bridge_" in text for text in render_files(plain).values())
    names = {r.name for r in alert_rules(VIEW) if r.source == "bridge"}
    assert names == {
        "PlantLineCloudBridgeDown", "PlantLineCloudBridgeKafkaUnreachable", "PlantLineCloudBridgeProduceStalled",
        "PlantLineCloudBridgeDeadLetters", "PlantLineCloudBridgeMqttLag", "PlantLineCloudBridgeLatencyBudgetBurn",
    }  # fmt: skip
    burns = [r for r in alert_rules(VIEW) if r.name == "PlantLineCloudBridgeLatencyBudgetBurn"]
    assert [(r.severity, r.labels["burn"]) for r in burns] == [("critical", "fast"), ("warning", "slow")]
    assert "14.4 * 0.01" in burns[0].expr
    slow = next(r for r in recording_rules(VIEW) if r.record == "plantline:bridge_produce_slow:ratio_rate5m")
    assert f'{m.BRIDGE_PRODUCE_LATENCY.name}_bucket{{site="site1", line="line1", le="1.0"}}' in slow.expr


def test_the_cloud_bridge_alerts_tell_kafka_away_from_a_stalled_produce_and_a_lost_mqtt_session() -> None:
    by_name = {r.name: r for r in alert_rules(VIEW) if r.source == "bridge"}
    kafka_up = f'{m.BRIDGE_KAFKA_UP.name}{{site="site1", line="line1"}}'
    assert by_name["PlantLineCloudBridgeKafkaUnreachable"].expr == f"{kafka_up} == 0"
    assert by_name["PlantLineCloudBridgeProduceStalled"].expr.endswith(f"and {kafka_up} == 1")
    assert by_name["PlantLineCloudBridgeDown"].expr.endswith(f"unless {kafka_up} == 0)")
    assert by_name["PlantLineCloudBridgeDown"].probe == 'up{site="site1", line="line1", component="bridge"}'


def test_certificate_renewal_alert_leaves_the_maintenance_window_a_week() -> None:
    (overdue,) = (r for r in alert_rules(VIEW) if r.name == "PlantLineCertificateRenewalOverdue")
    assert overdue.expr.endswith("< 23")


@pytest.mark.parametrize("kind", ["oee", "edge", "broker", "core", "cloud"])
def test_dashboards_have_variables_units_thresholds_and_links(kind: str) -> None:
    board = dashboards(VIEW)[kind]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "site", "line"} <= set(variables)
    assert variables["site"]["current"]["value"] == "site1"
    assert variables["line"]["current"]["value"] == "line1"
    if kind in ("oee", "edge"):
        assert variables["machine"]["multi"]
        assert variables["machine"]["allValue"] == ".*"
        assert all('device=~"$machine"' in e for e in _exprs(board) if "plantline_kpi_" in e)
    assert len(board["uid"]) <= 40
    assert board["links"]
    assert board["links"][0]["includeVars"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert all(p["fieldConfig"]["defaults"]["unit"] for p in panels)
    assert all(p["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["value"] is None for p in panels)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_oee_links_to_the_machines_edge_dashboard_and_has_a_period_selector() -> None:
    boards = dashboards(VIEW)
    oee = boards["oee"]
    links = [link for p in oee["panels"] if p["type"] != "row" for link in p["fieldConfig"]["defaults"]["links"]]
    assert any(link["url"].startswith(f"/d/{boards['edge']['uid']}?") for link in links)
    scope = next(v for v in oee["templating"]["list"] if v["name"] == "scope")
    assert [o["value"] for o in scope["options"]] == ["window", "shift"]
    assert all('scope="$scope"' in e for e in _exprs(oee) if m.KPI_OEE.name in e)


def test_uids_are_stable_and_distinct_per_line() -> None:
    again = {k: b["uid"] for k, b in dashboards(VIEW).items()}
    other = dataclasses.replace(VIEW, name="site1-line2")
    assert again == {k: b["uid"] for k, b in dashboards(VIEW).items()}
    assert set(again.values()).isdisjoint(b["uid"] for b in dashboards(other).values())


def test_render_files_gives_four_dashboards_a_fifth_with_the_cloud_bridge_and_a_rule_file() -> None:
    files = render_files(VIEW)
    assert sorted(files) == [
        "grafana/plantline-site1-line1-broker.json",
        "grafana/plantline-site1-line1-cloud.json",
        "grafana/plantline-site1-line1-core.json",
        "grafana/plantline-site1-line1-edge.json",
        "grafana/plantline-site1-line1-oee.json",
        "prometheus/plantline-site1-line1.rules.yml",
    ]
    assert len(render_files(dataclasses.replace(VIEW, cloud_bridge=False))) == 5
    assert json.loads(files["grafana/plantline-site1-line1-oee.json"])["schemaVersion"] == 41
    assert yaml.safe_load(files["prometheus/plantline-site1-line1.rules.yml"]) == rule_file(VIEW)


def test_the_scrape_configuration_labels_every_target_with_site_line_and_component() -> None:
    config = prometheus_config(
        VIEW, Targets({"opcua": "127.0.0.1:9400", "s7": "127.0.0.1:9401"}, broker_exporter="127.0.0.1:9500"),
        rule_files=["rules.yml"],
    )  # fmt: skip
    labels = {job["job_name"]: job["static_configs"][0]["labels"] for job in config["scrape_configs"]}
    assert labels["plantline-plantline-site1-line1-connector-s7"] == {
        "site": "site1", "line": "line1", "component": "connector", "connector": "s7",
    }  # fmt: skip
    assert labels["plantline-plantline-site1-line1-broker"]["component"] == "broker"
    assert config["rule_files"] == ["rules.yml"]
    assert "plantline-plantline-site1-line1-api" not in labels  # no KPI API given, no job
    assert "plantline-plantline-site1-line1-bridge" not in labels  # no cloud bridge given, no job


def test_the_cloud_bridges_scrape_is_labelled_as_its_rules_select_it() -> None:
    (job,) = prometheus_config(VIEW, Targets({}, cloud_bridge="127.0.0.1:9410"), rule_files=[])["scrape_configs"]
    assert job["job_name"] == "plantline-plantline-site1-line1-bridge"
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9410"], "labels": {"site": "site1", "line": "line1", "component": "bridge"}}
    ]


def test_the_kpi_apis_scrape_brings_its_bearer_token() -> None:
    targets = Targets({}, api="127.0.0.1:8480", api_token_file="/state/historian/api-token")
    (job,) = prometheus_config(VIEW, targets, rule_files=[])["scrape_configs"]
    assert job["static_configs"][0]["labels"] == {"site": "site1", "line": "line1", "component": "api"}
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/state/historian/api-token"}


def test_broker_metric_names_follow_the_exporters_mapping() -> None:
    assert b.CLIENTS_CONNECTED.name == "mosquitto_connected"
    assert b.CLIENTS_CONNECTED.topic == "$sys_broker_clients"
    assert b.bridge_state("site1-line1-bridge").selector() == (
        'mosquitto_state{topic="$sys_broker_connection_site1-line1-bridge"}'
    )
    assert runbook_url("https://x/runbooks/", "A") == "https://x/runbooks/A.md"


def test_the_oee_state_timeline_names_every_machine_state_by_its_value() -> None:
    oee = dashboards(VIEW)["oee"]
    (panel,) = (p for p in oee["panels"] if p["title"] == "Machine state")
    assert panel["type"] == "state-timeline"
    assert panel["targets"][0]["expr"].startswith(f"{m.KPI_STATE.name}{{")
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    shown = {int(value): option["text"] for value, option in mapping["options"].items()}
    assert shown == {code: state.replace("_", " ") for code, state in enumerate(m.MACHINE_STATES)}
    assert (shown[1], shown[5]) == ("run", "fault")


def test_the_edge_board_shows_bdseq_and_rebirths_per_connector() -> None:
    edge = dashboards(VIEW)["edge"]
    exprs = {p["title"]: p["targets"][0]["expr"] for p in edge["panels"] if p["type"] != "row"}
    assert exprs["Sparkplug bdSeq (a step is a new MQTT session)"].startswith(f"{m.SPARKPLUG_BDSEQ.name}{{")
    assert f"increase({m.SPARKPLUG_REBIRTHS.name}{{" in exprs["Rebirths in the last hour"]
