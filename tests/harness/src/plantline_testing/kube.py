"""Helpers for the operator's end-to-end tests on the real control plane.

`install_operator` applies `operator/deploy` (CRD, namespace, RBAC, the operator Deployment) with
the built kubectl's kustomize and returns a kubeconfig that authenticates as the operator's
ServiceAccount, so a test's operator has exactly the rights the manifests grant.
"""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from plantline.operator.api import API_VERSION, GROUP, PLURAL
from plantline.operator.model import LINE_LABEL
from plantline_testing import find_program
from plantline_testing.controlplane import ApiError, ControlPlane

ROOT = Path(__file__).resolve().parents[4]
DEPLOY = ROOT / "operator" / "deploy"
DEMO = ROOT / "examples" / "demo-line.yaml"
CRD_NAME = f"{PLURAL}.{GROUP}"
OPERATOR_NAMESPACE = "plantline-system"
OPERATOR_ACCOUNT = "plantline-operator"
PLANTLINES = f"/apis/{API_VERSION}"
# The prometheus-operator's CRDs ship in its Go module; the Go module proxy serves it pinned.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.81.0"
PLURAL_RULES = "prometheusrules"
PROMETHEUS_RULE_CRD = f"{PLURAL_RULES}.monitoring.coreos.com"
PLURAL_POD_MONITORS = "podmonitors"
POD_MONITOR_CRD = f"{PLURAL_POD_MONITORS}.monitoring.coreos.com"
DASHBOARD_KINDS = ("broker", "core", "edge", "oee")

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Return the first truthy value of `probe()`; raise AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def install_operator(plane: ControlPlane) -> Path:
    """Apply operator/deploy and return a kubeconfig of the operator's ServiceAccount."""
    plane.kubectl("apply", "--server-side", "-k", str(DEPLOY))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return plane.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)


def namespace(plane: ControlPlane, name: str, *, restricted: bool = True) -> str:
    """Create a namespace (enforcing the restricted pod security standard by default)."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    try:
        plane.request("POST", "/api/v1/namespaces", body)
    except ApiError as exc:
        if exc.status != 409:
            raise
    return name


def demo_line(
    name: str, ns: str, *, line: str, grouping: str = "perLine", machines: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Return the demo PlantLine renamed (`metadata.name`, `spec.line`), optionally cut to `machines`."""
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    data["metadata"] = {"name": name, "namespace": ns}
    data["spec"]["line"] = line
    data["spec"]["connectors"] = {"grouping": grouping}
    if machines:
        data["spec"]["machines"] = [m for m in data["spec"]["machines"] if m["id"] in machines]
    return data


def demo_machine(machine_id: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return copy.deepcopy(next(m for m in data["spec"]["machines"] if m["id"] == machine_id))


def bare_deployment(name: str, ns: str, *, image: str = "bare:0", command: Sequence[str] = ()) -> dict[str, Any]:
    """Return a one-pod Deployment that the restricted pod security standard admits: a baseline to time against."""
    container: dict[str, Any] = {
        "name": "c",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if command:
        container["command"] = list(command)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }


def apply(plane: ControlPlane, obj: dict[str, Any]) -> None:
    plane.kubectl("apply", "--server-side", "--field-manager=e2e", "-f", "-", stdin=json.dumps(obj))


def plantline(plane: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return plane.request("GET", f"{PLANTLINES}/namespaces/{ns}/{PLURAL}/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """Return the condition `type_` of an object's status ({} when absent)."""
    for item in ((obj or {}).get("status") or {}).get("conditions", []):
        if item.get("type") == type_:
            return dict(item)
    return {}


def ready(plane: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    """Return the PlantLine once Ready=True for its current generation, else None."""
    obj = plantline(plane, ns, name)
    if obj is None:
        return None
    cond = condition(obj, "Ready")
    generation = obj["metadata"].get("generation")
    current = obj.get("status", {}).get("observedGeneration") == generation
    return obj if cond.get("status") == "True" and cond.get("observedGeneration") == generation and current else None


def items(plane: ControlPlane, path: str, selector: str) -> list[dict[str, Any]]:
    answer = plane.request("GET", f"{path}?labelSelector={selector}")
    found: list[dict[str, Any]] = answer.get("items", [])
    return found


def children(plane: ControlPlane, ns: str, line: str) -> dict[str, list[str]]:
    """Return the names of the line's children, by kind."""
    selector = f"{LINE_LABEL}={line}"
    paths = {
        "Secret": f"/api/v1/namespaces/{ns}/secrets",
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
        "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
        "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
        "PersistentVolumeClaim": f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        "NetworkPolicy": f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    }
    return {kind: sorted(i["metadata"]["name"] for i in items(plane, path, selector)) for kind, path in paths.items()}


def line_config_maps(name: str) -> list[str]:
    """Return the names of the ConfigMaps a line gets without the PrometheusRule CRD, sorted."""
    boards = [f"{name}-dashboard-{kind}" for kind in DASHBOARD_KINDS]
    return sorted([f"{name}-connectors", f"{name}-trust", f"{name}-rules", *boards])


def prometheus_rule_crd(plural: str = PLURAL_RULES) -> Path:
    """Return a CRD (PrometheusRule by default) of the pinned prometheus-operator module, downloaded once by `go`."""
    argv = [find_program("go"), "mod", "download", "-json", f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"]
    with tempfile.TemporaryDirectory() as outside_any_module:
        done = subprocess.run(argv, cwd=outside_any_module, capture_output=True, text=True, timeout=600, check=True)
    module = Path(json.loads(done.stdout)["Dir"])
    return module / "example" / "prometheus-operator-crd" / f"monitoring.coreos.com_{plural}.yaml"


def prometheus_rules(plane: ControlPlane, ns: str, line: str, plural: str = PLURAL_RULES) -> list[str]:
    """Return the names of the line's PrometheusRules (or PodMonitors: `plural`); [] while the CRD is not served."""
    try:
        found = items(plane, f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/{plural}", f"{LINE_LABEL}={line}")
    except ApiError as exc:
        # 404: no CRD; 429 "storage is (re)initializing": the apiserver is still setting up a new CRD's storage.
        if exc.status in (404, 429):
            return []
        raise
    return sorted(i["metadata"]["name"] for i in found)


def events(plane: ControlPlane, ns: str, name: str) -> list[dict[str, Any]]:
    answer = plane.request("GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name={name}")
    found: list[dict[str, Any]] = answer.get("items", [])
    return found


def http_status(url: str) -> int:
    """Return the HTTP status a GET of `url` answers with (0 when nothing answers), e.g. a pod's probe."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - the pod network
            return int(answer.status)
    except OSError:
        return 0


__all__ = [
    "CRD_NAME",
    "DEPLOY",
    "OPERATOR_ACCOUNT",
    "OPERATOR_NAMESPACE",
    "PLURAL_POD_MONITORS",
    "POD_MONITOR_CRD",
    "PROMETHEUS_RULE_CRD",
    "apply",
    "bare_deployment",
    "children",
    "condition",
    "demo_line",
    "demo_machine",
    "events",
    "http_status",
    "install_operator",
    "items",
    "line_config_maps",
    "namespace",
    "plantline",
    "prometheus_rule_crd",
    "prometheus_rules",
    "ready",
    "wait_for",
]
