"""The dashboards step: ConfigMaps for Grafana's sidecar, the rules as PrometheusRule or ConfigMap, DashboardsReady."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml

from plantline.dashboards.rules import rule_file
from plantline.operator.model import ConnectorSettings
from plantline.operator.reconcile import Context, Outcome, parse, reconcile
from plantline.operator.render import line_view

from .recording import MemoryAuthority, RecordingCluster, demo_body

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
SETTINGS = ConnectorSettings(image="registry.example/plantline/connector:0.1.0")
BOARDS = tuple(f"site1-line1-dashboard-{kind}" for kind in ("oee", "edge", "broker", "core"))


def _run(body: dict[str, Any], cluster: RecordingCluster, authority: MemoryAuthority) -> Outcome:
    outcome = reconcile(body, Context(cluster, authority, SETTINGS, NOW))
    body["status"] = outcome.status
    return outcome


def _condition(outcome: Outcome, type_: str) -> tuple[str, str]:
    found = next(c for c in outcome.status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"]


def test_dashboards_become_sidecar_config_maps_and_rules_a_config_map_without_the_crd(
    ca_pems: tuple[bytes, bytes],
) -> None:
    cluster, authority, body = RecordingCluster(), MemoryAuthority(*ca_pems), demo_body()
    outcome = _run(body, cluster, authority)
    maps = cluster.stored("ConfigMap")
    for name in BOARDS:
        board = maps[name]
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert board["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboards"
        assert board["metadata"]["annotations"] == {"grafana_folder": "PlantLine site1/line1"}
        assert board["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]  # removed with the line
        (text,) = board["data"].values()
        assert json.loads(text)["schemaVersion"] == 41
    rules = yaml.safe_load(maps["site1-line1-rules"]["data"]["plantline-site1-line1.rules.yml"])
    assert rules == rule_file(line_view(parse(body)))
    assert cluster.stored("PrometheusRule") == {}
    assert _condition(outcome, "DashboardsReady") == ("True", "RulesInConfigMap")


def test_with_the_prometheus_operator_the_rules_are_a_prometheus_rule(ca_pems: tuple[bytes, bytes]) -> None:
    cluster, authority, body = RecordingCluster(), MemoryAuthority(*ca_pems), demo_body()
    _run(body, cluster, authority)
    assert "site1-line1-rules" in cluster.stored("ConfigMap")

    cluster.served.add("PrometheusRule")  # the CRD is installed after the line
    outcome = _run(body, cluster, authority)
    rule = cluster.stored("PrometheusRule")["site1-line1-rules"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == rule_file(line_view(parse(body)))
    assert rule["metadata"]["labels"]["plantline.dev/line"] == "site1-line1"
    assert "site1-line1-rules" not in cluster.stored("ConfigMap")  # the ConfigMap it replaces is pruned
    assert _condition(outcome, "DashboardsReady") == ("True", "PrometheusRuleApplied")
    assert _condition(outcome, "Ready")[0] == "False"  # the connectors are not available yet, dashboards aside


def test_disabling_dashboards_removes_them_and_enabling_brings_them_back(ca_pems: tuple[bytes, bytes]) -> None:
    cluster = RecordingCluster(served=("PrometheusRule",))
    authority, body = MemoryAuthority(*ca_pems), demo_body()
    _run(body, cluster, authority)
    cluster.make_available()
    body["spec"]["dashboards"]["enabled"] = False
    body["metadata"]["generation"] += 1
    outcome = _run(body, cluster, authority)
    assert not set(BOARDS) & set(cluster.stored("ConfigMap"))
    assert cluster.stored("PrometheusRule") == {}
    assert {("PrometheusRule", "site1-line1-rules"), *(("ConfigMap", b) for b in BOARDS)} <= set(cluster.deleted())
    assert _condition(outcome, "DashboardsReady") == ("True", "DashboardsDisabled")
    assert _condition(outcome, "Ready") == ("True", "Reconciled")

    body["spec"]["dashboards"]["enabled"] = True
    _run(body, cluster, authority)
    assert set(BOARDS) <= set(cluster.stored("ConfigMap"))
    assert "site1-line1-rules" in cluster.stored("PrometheusRule")


def test_with_the_pod_monitor_crd_the_connectors_are_scraped_with_the_dashboards_target_labels(
    ca_pems: tuple[bytes, bytes],
) -> None:
    cluster, authority, body = RecordingCluster(), MemoryAuthority(*ca_pems), demo_body()
    _run(body, cluster, authority)
    assert cluster.stored("PodMonitor") == {}  # no CRD, no PodMonitor (and no failed apply)

    cluster.served.add("PodMonitor")
    outcome = _run(body, cluster, authority)
    monitor = cluster.stored("PodMonitor")["site1-line1-connectors"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    # it selects exactly the line's connector pods, by the labels their Deployments give them
    (deployment, *_) = cluster.stored("Deployment").values()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert endpoint["port"] in {p["name"] for p in ports}
    static = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"] if "replacement" in r}
    assert static == {"site": "site1", "line": "line1", "component": "connector"}
    (group,) = (r for r in endpoint["relabelings"] if "sourceLabels" in r)
    assert group["sourceLabels"] == ["__meta_kubernetes_pod_label_plantline_dev_connector"]
    assert group["targetLabel"] == "connector"
    assert "plantline.dev/connector" in pod_labels  # the label that meta label is made from
    assert "PodMonitor" in next(c["message"] for c in outcome.status["conditions"] if c["type"] == "DashboardsReady")

    body["spec"]["dashboards"]["enabled"] = False
    body["metadata"]["generation"] += 1
    _run(body, cluster, authority)
    assert cluster.stored("PodMonitor") == {}  # removed with the dashboards and rules
    assert ("PodMonitor", "site1-line1-connectors") in set(cluster.deleted())
