"""The operator end to end, on the real control plane, as its own ServiceAccount.

`operator/deploy` is applied with kubectl's kustomize; the operator then runs in-process under
`kopf.testing.KopfRunner` with a kubeconfig holding the token of the ServiceAccount those
manifests create, so every verb it uses must be granted there. kwok plays the kubelet: pods of
the connector Deployments become Running and the Deployments Available, which is what `Ready`
waits for. The lines' namespace enforces the restricted pod security standard, so the apiserver
itself admits or refuses the connector pods.

The tests run in file order on one operator and share two lines: the demo (`perLine`) and a
`perMachine` line that gains and loses machines.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from base64 import b64decode
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import kopf
import pytest
import yaml
from cryptography import x509
from kopf.testing import KopfRunner

from plantline.operator.handlers import Options, register
from plantline.operator.model import ConnectorSettings
from plantline.operator.resources import KubeCluster, SecretAuthority, connect
from plantline_testing.controlplane import BUILD_TIMEOUT_S, ControlPlane
from plantline_testing.kube import (
    OPERATOR_NAMESPACE,
    PLURAL_POD_MONITORS,
    POD_MONITOR_CRD,
    PROMETHEUS_RULE_CRD,
    apply,
    children,
    condition,
    demo_line,
    demo_machine,
    events,
    install_operator,
    items,
    line_config_maps,
    namespace,
    plantline,
    prometheus_rule_crd,
    prometheus_rules,
    ready,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 900)]

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "operator" / "tests" / "invalid"
NS = "lines"
RESYNC_S = 3.0
READY_S = 60.0
GC_S = 120.0  # the garbage collector discovers a new CRD's resources on its own schedule
T = TypeVar("T")
CA_TRUST = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/configmaps/plantline-ca-trust"


@pytest.fixture(scope="module")
def operator_kubeconfig(plane: ControlPlane) -> Path:
    kubeconfig = install_operator(plane)
    namespace(plane, NS)
    return kubeconfig


@pytest.fixture(scope="module")
def operator(plane: ControlPlane, operator_kubeconfig: Path) -> Iterator[KopfRunner]:
    registry = kopf.OperatorRegistry()
    register(registry, Options(connector=ConnectorSettings(image="plantline-connectors:e2e"), resync_seconds=RESYNC_S))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(operator_kubeconfig))
        with KopfRunner(["run", "--standalone", "--all-namespaces"], registry=registry, timeout=60) as runner:
            yield runner
    # KopfRunner re-raises the operator's own failure on exit (reraise=True).
    assert "PRIVATE KEY" not in runner.output  # key material never reaches the log


def _kubectl_as(plane: ControlPlane, kubeconfig: Path, *args: str) -> tuple[int, str]:
    result = subprocess.run(
        [str(plane.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def _secret_serials(plane: ControlPlane, line: str) -> dict[str, int]:
    found = {}
    for secret in items(plane, f"/api/v1/namespaces/{NS}/secrets", f"plantline.dev/line={line}"):
        if secret["type"] != "kubernetes.io/tls":
            continue
        certificate = x509.load_pem_x509_certificate(b64decode(secret["data"]["tls.crt"]))
        found[secret["metadata"]["name"]] = certificate.serial_number
    return found


def _crl_serials(plane: ControlPlane) -> set[int]:
    trust = plane.request("GET", CA_TRUST)
    crl = x509.load_pem_x509_crl(trust["data"]["crl.pem"].encode())
    return {entry.serial_number for entry in crl}


def _unless(value: T, bad: Callable[[T], bool]) -> T | None:
    """Return `value` unless `bad(value)` (a wait_for probe that also hands back what it saw)."""
    return None if bad(value) else value


def _with_reason(plane: ControlPlane, name: str, reason: str) -> dict[str, Any] | None:
    line = plantline(plane, NS, name)
    return line if condition(line, "Ready").get("reason") == reason else None


def _deployment(plane: ControlPlane, name: str) -> dict[str, Any]:
    return plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")


def _pods(plane: ControlPlane, deployment: str) -> list[str]:
    connector = deployment.rsplit("-", 1)[-1]
    selector = f"plantline.dev/connector={connector},plantline.dev/line={deployment.rsplit('-', 1)[0]}"
    return sorted(
        p["metadata"]["name"]
        for p in items(plane, f"/api/v1/namespaces/{NS}/pods", selector)
        if not p["metadata"].get("deletionTimestamp")
    )


# -- RBAC -----------------------------------------------------------------------------------------


def test_the_service_account_is_refused_what_the_operator_does_not_need(
    plane: ControlPlane, operator_kubeconfig: Path
) -> None:
    # A verb it needs is granted, so the refusals below are not a broken kubeconfig.
    code, out = _kubectl_as(plane, operator_kubeconfig, "auth", "can-i", "patch", "deployments", "-n", NS)
    assert (code, out) == (0, "yes")
    for args in (
        ("auth", "can-i", "create", "pods", "-n", NS),
        ("auth", "can-i", "delete", "plantlines.plantline.dev", "-n", NS),
        ("auth", "can-i", "update", "secrets", "-n", NS),
        ("auth", "can-i", "create", "clusterrolebindings"),
    ):
        code, out = _kubectl_as(plane, operator_kubeconfig, *args)
        assert out.splitlines()[0] == "no", (args, out)
    code, out = _kubectl_as(plane, operator_kubeconfig, "get", "nodes")
    assert code != 0
    assert "forbidden" in out.lower()


# -- the demo line --------------------------------------------------------------------------------


def test_demo_line_becomes_ready(plane: ControlPlane, operator: KopfRunner) -> None:
    apply(plane, demo_line("demo", NS, line="line1"))
    line = wait_for("the demo PlantLine Ready", lambda: ready(plane, NS, "demo"), READY_S)
    assert line["status"]["machineCount"] == 3
    assert condition(line, "CertificatesReady")["status"] == "True"
    assert condition(line, "ConnectorsReady")["reason"] == "DeploymentsAvailable"
    assert "plantline.dev/finalizer" in line["metadata"]["finalizers"]

    made = children(plane, NS, "demo")
    assert made["Secret"] == ["demo-broker-tls", "demo-line1-tls", "demo-reader-tls"]
    assert made["ConfigMap"] == line_config_maps("demo")  # dashboards and rules: no PrometheusRule CRD yet
    assert condition(line, "DashboardsReady")["reason"] == "RulesInConfigMap"
    board = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/demo-dashboard-oee")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert made["Deployment"] == ["demo-line1"]
    assert made["NetworkPolicy"] == ["demo-connectors"]
    assert made["ServiceAccount"] == ["demo-connector"]
    # The outbox's claim, bound by the cluster's default StorageClass (the hostPath provisioner here).
    assert made["PersistentVolumeClaim"] == ["demo-line1-data"]
    claim = plane.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/demo-line1-data")
    assert claim["status"]["phase"] == "Bound"

    # Every certificate was signed by the operator's CA, which is published beside it.
    ca = x509.load_pem_x509_certificate(plane.request("GET", CA_TRUST)["data"]["ca.crt"].encode())
    for secret in items(plane, f"/api/v1/namespaces/{NS}/secrets", "plantline.dev/line=demo"):
        if secret["type"] == "kubernetes.io/tls":
            leaf = x509.load_pem_x509_certificate(b64decode(secret["data"]["tls.crt"]))
            leaf.verify_directly_issued_by(ca)

    # The restricted namespace admitted the connector pod, and kwok runs it.
    assert _pods(plane, "demo-line1")
    printed = plane.kubectl("get", "pl", "-n", NS, "demo").stdout.split()
    assert printed[:4] == ["NAME", "READY", "MACHINES", "AGE"]
    assert printed[4:7] == ["demo", "True", "3"]
    reasons = {e["reason"] for e in events(plane, NS, "demo")}
    assert "CertificateIssued" in reasons


def _dashboards_reason(plane: ControlPlane, reason: str) -> dict[str, Any] | None:
    line = plantline(plane, NS, "demo")
    return line if condition(line, "DashboardsReady").get("reason") == reason else None


def test_the_rules_become_a_prometheus_rule_once_its_crd_is_installed(
    plane: ControlPlane, operator: KopfRunner, operator_kubeconfig: Path
) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(prometheus_rule_crd()))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{PROMETHEUS_RULE_CRD}", "--timeout=60s")
    wait_for("the demo's PrometheusRule", lambda: prometheus_rules(plane, NS, "demo") == ["demo-rules"], READY_S)
    rule = plane.request("GET", f"/apis/monitoring.coreos.com/v1/namespaces/{NS}/prometheusrules/demo-rules")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}
    assert {"PlantLinePlcDisconnected", "PlantLineConnectorDown", "PlantLineCrlStale"} <= alerts
    assert rule["metadata"]["ownerReferences"][0]["name"] == "demo"  # removed with the line
    wait_for(
        "the rules ConfigMap pruned", lambda: "demo-rules" not in children(plane, NS, "demo")["ConfigMap"], READY_S
    )
    wait_for(
        "DashboardsReady PrometheusRuleApplied", lambda: _dashboards_reason(plane, "PrometheusRuleApplied"), READY_S
    )
    code, out = _kubectl_as(plane, operator_kubeconfig, "auth", "can-i", "patch", PROMETHEUS_RULE_CRD, "-n", NS)
    assert (code, out) == (0, "yes")


def _pod_monitors(plane: ControlPlane, line: str) -> list[str]:
    return prometheus_rules(plane, NS, line, PLURAL_POD_MONITORS)


def test_the_connectors_get_a_pod_monitor_once_its_crd_is_installed(
    plane: ControlPlane, operator: KopfRunner, operator_kubeconfig: Path
) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(prometheus_rule_crd(PLURAL_POD_MONITORS)))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{POD_MONITOR_CRD}", "--timeout=60s")
    wait_for("the demo's PodMonitor", lambda: _pod_monitors(plane, "demo") == ["demo-connectors"], READY_S)
    monitor = plane.request("GET", f"/apis/monitoring.coreos.com/v1/namespaces/{NS}/podmonitors/demo-connectors")
    assert monitor["metadata"]["ownerReferences"][0]["name"] == "demo"  # removed with the line
    # The apiserver kept the spec as the CRD's schema reads it: the selector finds the connector pods.
    match = ",".join(f"{k}={v}" for k, v in sorted(monitor["spec"]["selector"]["matchLabels"].items()))
    pods = items(plane, f"/api/v1/namespaces/{NS}/pods", match)
    assert {p["metadata"]["labels"]["plantline.dev/connector"] for p in pods} == {"line1"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    static = {r["targetLabel"]: r.get("replacement") for r in endpoint["relabelings"]}
    assert static == {"site": "site1", "line": "line1", "component": "connector", "connector": None}
    wait_for(
        "DashboardsReady naming the PodMonitor",
        lambda: "PodMonitor" in condition(plantline(plane, NS, "demo"), "DashboardsReady").get("message", ""),
        READY_S,
    )
    code, out = _kubectl_as(plane, operator_kubeconfig, "auth", "can-i", "patch", POD_MONITOR_CRD, "-n", NS)
    assert (code, out) == (0, "yes")


def test_disabling_dashboards_removes_them_and_enabling_brings_them_back(
    plane: ControlPlane, operator: KopfRunner
) -> None:
    disabled = demo_line("demo", NS, line="line1")
    disabled["spec"]["dashboards"] = {"enabled": False}
    apply(plane, disabled)
    wait_for("DashboardsReady DashboardsDisabled", lambda: _dashboards_reason(plane, "DashboardsDisabled"), READY_S)
    wait_for(
        "the dashboards and rules removed",
        lambda: (
            children(plane, NS, "demo")["ConfigMap"] == ["demo-connectors", "demo-trust"]
            and prometheus_rules(plane, NS, "demo") == []
            and _pod_monitors(plane, "demo") == []
        ),
        READY_S,
    )
    assert wait_for("the demo Ready", lambda: ready(plane, NS, "demo"), READY_S)
    apply(plane, demo_line("demo", NS, line="line1"))
    wait_for("the demo's PrometheusRule back", lambda: prometheus_rules(plane, NS, "demo") == ["demo-rules"], READY_S)
    wait_for("the demo's PodMonitor back", lambda: _pod_monitors(plane, "demo") == ["demo-connectors"], READY_S)
    assert wait_for("the demo Ready again", lambda: ready(plane, NS, "demo"), READY_S)


def test_a_pod_breaking_the_restricted_standard_is_refused_in_the_lines_namespace(plane: ControlPlane) -> None:
    # The check the connector pods pass is a real one: the same namespace refuses a root pod.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rooted", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]},
    }
    result = plane.kubectl("apply", "-f", "-", stdin=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr


# -- a perMachine line: connectors come and go ---------------------------------------------------


def test_adding_a_machine_adds_a_connector(plane: ControlPlane, operator: KopfRunner) -> None:
    body = demo_line("pm", NS, line="line2", grouping="perMachine", machines=("filler", "capper"))
    apply(plane, body)
    wait_for("the perMachine line Ready", lambda: ready(plane, NS, "pm"), READY_S)
    assert children(plane, NS, "pm")["Deployment"] == ["pm-capper", "pm-filler"]

    body["spec"]["machines"].append(demo_machine("labeler"))
    apply(plane, body)
    line = wait_for("Ready with the labeler", lambda: ready(plane, NS, "pm"), READY_S)
    assert line["status"]["machineCount"] == 3
    made = children(plane, NS, "pm")
    assert made["Deployment"] == ["pm-capper", "pm-filler", "pm-labeler"]
    assert "pm-labeler-tls" in made["Secret"]
    config = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/pm-connectors")["data"]
    assert sorted(config) == ["capper.yaml", "filler.yaml", "labeler.yaml"]


def test_removing_a_machine_removes_its_objects_and_revokes_its_certificate(
    plane: ControlPlane, operator: KopfRunner
) -> None:
    capper_serial = _secret_serials(plane, "pm")["pm-capper-tls"]
    apply(plane, demo_line("pm", NS, line="line2", grouping="perMachine", machines=("filler", "labeler")))
    wait_for("Ready without the capper", lambda: ready(plane, NS, "pm"), READY_S)
    made = wait_for(
        "the capper's objects gone",
        lambda: _unless(children(plane, NS, "pm"), lambda c: "pm-capper" in c["Deployment"]),
        READY_S,
    )
    assert "pm-capper-tls" not in made["Secret"]
    config = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/pm-connectors")["data"]
    assert sorted(config) == ["filler.yaml", "labeler.yaml"]
    assert capper_serial in _crl_serials(plane)
    assert not set(_secret_serials(plane, "pm").values()) & _crl_serials(plane)


def test_a_tag_change_rewrites_the_config_and_rolls_only_that_connector(
    plane: ControlPlane, operator: KopfRunner
) -> None:
    filler_pods, labeler_pods = _pods(plane, "pm-filler"), _pods(plane, "pm-labeler")
    filler_hash = _deployment(plane, "pm-filler")["spec"]["template"]["metadata"]["annotations"]
    body = demo_line("pm", NS, line="line2", grouping="perMachine", machines=("filler", "labeler"))
    tag = next(t for t in body["spec"]["machines"][0]["tags"] if t["signal"] == "process.fill_level")
    tag["address"] = "ns=2;s=Filler.process.level_moved"
    apply(plane, body)
    wait_for("Ready after the tag change", lambda: ready(plane, NS, "pm"), READY_S)
    config = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/pm-connectors")["data"]
    assert "Filler.process.level_moved" in config["filler.yaml"]
    after = _deployment(plane, "pm-filler")["spec"]["template"]["metadata"]["annotations"]
    assert after["plantline.dev/config-hash"] != filler_hash["plantline.dev/config-hash"]
    assert after["plantline.dev/certificate-hash"] == filler_hash["plantline.dev/certificate-hash"]
    rolled = wait_for(
        "a new filler pod",
        lambda: _unless(_pods(plane, "pm-filler"), lambda p: not p or bool(set(p) & set(filler_pods))),
        READY_S,
    )
    assert len(rolled) == 1
    assert _pods(plane, "pm-labeler") == labeler_pods


def test_children_deleted_by_hand_are_recreated(plane: ControlPlane, operator: KopfRunner) -> None:
    lost = _secret_serials(plane, "pm")["pm-filler-tls"]
    for path in (
        f"/apis/apps/v1/namespaces/{NS}/deployments/pm-filler",
        f"/api/v1/namespaces/{NS}/configmaps/pm-connectors",
        f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/pm-connectors",
        f"/api/v1/namespaces/{NS}/secrets/pm-filler-tls",
    ):
        plane.request("DELETE", path)
    made = wait_for(
        "the deleted children back",
        lambda: _unless(
            children(plane, NS, "pm"),
            lambda c: (
                "pm-filler" not in c["Deployment"]
                or "pm-connectors" not in c["ConfigMap"]
                or not c["NetworkPolicy"]
                or "pm-filler-tls" not in c["Secret"]
            ),
        ),
        RESYNC_S * 10,
    )
    assert made["Deployment"] == ["pm-filler", "pm-labeler"]
    wait_for("Ready again", lambda: ready(plane, NS, "pm"), READY_S)
    # The lost Secret's certificate is revoked (its key may have left with it); the new one is not.
    assert _secret_serials(plane, "pm")["pm-filler-tls"] != lost
    wait_for("the lost certificate in the CRL", lambda: lost in _crl_serials(plane), READY_S)
    assert not set(_secret_serials(plane, "pm").values()) & _crl_serials(plane)


def test_pause_annotation_stops_changes_and_says_so(plane: ControlPlane, operator: KopfRunner) -> None:
    plane.kubectl("annotate", "pl", "-n", NS, "pm", "plantline.dev/pause-reconciliation=true")
    paused = wait_for(
        "Ready=False ReconciliationPaused",
        lambda: _with_reason(plane, "pm", "ReconciliationPaused"),
        READY_S,
    )
    assert condition(paused, "Ready")["status"] == "False"
    body = demo_line("pm", NS, line="line2", grouping="perMachine", machines=("filler", "labeler"))
    body["spec"]["machines"][1]["samplingInterval"] = 2.5
    apply(plane, body)
    before = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/pm-connectors")["data"]["labeler.yaml"]
    # Three resync periods and the update handler have passed without a change.
    time.sleep(RESYNC_S * 3)
    assert plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/pm-connectors")["data"]["labeler.yaml"] == before
    assert "2500" not in before

    plane.kubectl("annotate", "pl", "-n", NS, "pm", "plantline.dev/pause-reconciliation-")
    wait_for("Ready after the pause", lambda: ready(plane, NS, "pm"), READY_S)
    after = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/pm-connectors")["data"]["labeler.yaml"]
    assert "2500" in after


def test_a_spec_the_apiserver_accepts_but_the_api_refuses_is_reported_with_its_path(
    plane: ControlPlane, operator: KopfRunner
) -> None:
    body: dict[str, Any] = yaml.safe_load((INVALID / "bad-pki-and-names.yaml").read_text())
    body["metadata"] = {"name": "broken", "namespace": NS}
    apply(plane, body)
    line = wait_for(
        "Ready=False InvalidSpec",
        lambda: _with_reason(plane, "broken", "InvalidSpec"),
        READY_S,
    )
    message = condition(line, "Ready")["message"]
    assert "spec.pki.validityDays" in message or "spec.pki.maintenanceWindow" in message, message
    assert children(plane, NS, "broken")["Secret"] == []
    warnings = [e for e in events(plane, NS, "broken") if e["reason"] == "InvalidSpec"]
    assert warnings
    assert warnings[0]["type"] == "Warning"
    plane.kubectl("delete", "pl", "-n", NS, "broken", "--timeout=60s")


class _CountingAuthority(SecretAuthority):
    """The real SecretAuthority, counting the compare-and-swaps the apiserver refused (409)."""

    conflicts = 0

    def _swap(self, data: dict[str, bytes], version: str) -> bool:
        swapped = super()._swap(data, version)
        if not swapped:
            with _COUNT_LOCK:
                _CountingAuthority.conflicts += 1
        return swapped


_COUNT_LOCK = threading.Lock()


def test_concurrent_revocations_never_lose_a_serial(plane: ControlPlane, operator_kubeconfig: Path) -> None:
    # Six writers (as six operator threads or processes would be) revoke at once through the
    # apiserver's optimistic concurrency; every serial must end up in revoked.json and the CRL.
    writers, each = 6, 5
    serials = [[x509.random_serial_number() for _ in range(each)] for _ in range(writers)]
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def revoke(mine: list[int]) -> None:
        authority = _CountingAuthority(KubeCluster(connect(operator_kubeconfig)), OPERATOR_NAMESPACE, "plantline-ca")
        start.wait(timeout=30)
        try:
            for serial in mine:
                authority.revoke([(serial, "key-compromise")], datetime.now(UTC))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=revoke, args=(mine,)) for mine in serials]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    wanted = {serial for mine in serials for serial in mine}
    assert wanted <= _crl_serials(plane)
    secret = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets/plantline-ca")
    stored = json.loads(b64decode(secret["data"]["revoked.json"]))
    assert wanted <= {int(entry["serial"], 16) for entry in stored}
    assert len(stored) == len({entry["serial"] for entry in stored})  # no serial listed twice
    assert _CountingAuthority.conflicts > 0  # the writers really raced


CONNECTION_STRING = "Endpoint=sb://plant-1-ingest.servicebus.windows.net/;SharedAccessKeyName=bridge-send;SharedAccessKey=e2e-not-a-key="


def _bridge_gone(plane: ControlPlane) -> dict[str, Any] | None:
    line = ready(plane, NS, "cloud")
    made = children(plane, NS, "cloud")
    bridge = made["Deployment"] + made["ConfigMap"] + made["NetworkPolicy"]
    gone = "cloud-cloud-bridge" not in bridge and "cloud-host-tls" not in made["Secret"]
    return line if line is not None and gone and not condition(line, "CloudBridgeReady") else None


def test_a_cloud_target_runs_the_bridge_until_it_is_taken_out(plane: ControlPlane, operator: KopfRunner) -> None:
    credentials = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "eventhubs", "namespace": NS},
                   "stringData": {"connection-string": CONNECTION_STRING}}  # fmt: skip
    apply(plane, credentials)
    body = demo_line("cloud", NS, line="line3")
    body["spec"]["cloud"] = {"eventHubsNamespace": "plant-1-ingest",
                             "credentialsSecretRef": {"name": "eventhubs", "key": "connection-string"}}  # fmt: skip
    apply(plane, body)
    line = wait_for("the cloud line Ready with its bridge", lambda: ready(plane, NS, "cloud"), READY_S)
    bridge = condition(line, "CloudBridgeReady")
    assert (bridge["status"], bridge["reason"]) == ("True", "DeploymentAvailable")
    made = children(plane, NS, "cloud")
    assert made["Deployment"] == ["cloud-cloud-bridge", "cloud-line3"]
    assert made["NetworkPolicy"] == ["cloud-cloud-bridge", "cloud-connectors"]
    assert "cloud-host-tls" in made["Secret"]
    deployment = _deployment(plane, "cloud-cloud-bridge")
    available = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert available["Available"] == "True"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    # The restricted namespace admitted the bridge's pod, and kwok runs it.
    pods = items(plane, f"/api/v1/namespaces/{NS}/pods", "plantline.dev/line=cloud,app.kubernetes.io/component=bridge")
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    config = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/cloud-cloud-bridge")
    assert "plant-1-ingest.servicebus.windows.net:9093" in config["data"]["bridge.yaml"]
    told = [json.dumps(config), json.dumps(deployment), json.dumps(line["status"]),
            *(json.dumps(e) for e in events(plane, NS, "cloud"))]  # fmt: skip
    assert not [text for text in told if "SharedAccessKey=" in text], "the connection string stays in its Secret"

    del body["spec"]["cloud"]
    apply(plane, body)
    wait_for("the bridge, its certificate and its condition gone", lambda: _bridge_gone(plane), READY_S)
    assert plane.request("GET", f"/api/v1/namespaces/{NS}/secrets/eventhubs")["metadata"]["name"] == "eventhubs"
    plane.kubectl("delete", "pl", "-n", NS, "cloud", "--wait=false")
    wait_for("the cloud line gone", lambda: plantline(plane, NS, "cloud") is None, READY_S)


def test_deleting_a_line_revokes_its_certificates_and_releases_it(plane: ControlPlane, operator: KopfRunner) -> None:
    serials = set(_secret_serials(plane, "pm").values())
    assert len(serials) == 4  # filler, labeler, broker, reader
    plane.kubectl("delete", "pl", "-n", NS, "pm", "--wait=false")
    wait_for("the PlantLine gone (finalizer released)", lambda: plantline(plane, NS, "pm") is None, READY_S)
    assert serials <= _crl_serials(plane)
    wait_for(
        "the children garbage-collected, the PrometheusRule and PodMonitor too",
        lambda: (
            not any(children(plane, NS, "pm").values())
            and prometheus_rules(plane, NS, "pm") == []
            and _pod_monitors(plane, "pm") == []
        ),
        GC_S,
    )
    # The other line is untouched.
    assert ready(plane, NS, "demo") is not None
    assert not set(_secret_serials(plane, "demo").values()) & _crl_serials(plane)
