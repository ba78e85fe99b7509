"""`pulumi up` of stacks/core with the operator on a real node: the built image runs, kwok runs the rest.

No registry is reachable, so EMQX's, Prometheus's, Grafana's and PostgreSQL's images cannot run
here; the operator's is built from this checkout (plantline_testing.images). Beside the control
plane, `plantline_testing.node` runs a real node (the kubelet, containerd, the CNI bridge) with
that image loaded, and the fake node stays schedulable (`exclusive=False`). The stack places its
pods by its own config: `operatorNodeSelector` names the real node, `nodeSelector` the fake one.

The operator's container really starts: its /healthz answers from its pod's address, and it
reconciles a PlantLine (the connector pods then go to the fake node: the real one is cordoned)
and removes it again through its finalizer. `pulumi destroy` leaves nothing. The tests run in
file order on one stack.
"""

from __future__ import annotations

import json
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from plantline_testing.controlplane import FAKE_NODE, ControlPlane
from plantline_testing.images import Images
from plantline_testing.kube import (
    OPERATOR_NAMESPACE,
    apply,
    children,
    condition,
    demo_line,
    http_status,
    namespace,
    plantline,
    ready,
    wait_for,
)
from plantline_testing.node import Node
from plantline_testing.pulumi_cli import BUILD_TIMEOUT_S, PulumiStack, core_stack, destroy_core

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 1800)]

SECRETS = {
    "emqxApiSecret": "node-emqx-api-secret",
    "grafanaAdminPassword": "node-grafana-password",
    "postgresPassword": "node-postgres-password",
}
LINES = "lines"
LINE = "demo"
NAME_LABEL = "app.kubernetes.io/name"
HEALTH_PORT = 8080  # operator/deploy's --liveness
READY_S = 120.0


@pytest.fixture(scope="module")
def node(plane: ControlPlane, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(plane, tmp_path_factory.mktemp("node"), exclusive=False) as started:
        started.load_image(images.operator)
        yield started


@pytest.fixture(scope="module")
def stack(
    plane: ControlPlane,
    node: Node,
    images: Images,
    pulumi_bin: Path,
    tls: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PulumiStack]:
    placement = {
        "operatorImage": images.operator,
        "connectorImage": images.connectors,
        "nodeSelector": json.dumps({"kubernetes.io/hostname": FAKE_NODE}),
        "operatorNodeSelector": json.dumps({"kubernetes.io/hostname": node.name}),
    }
    work = tmp_path_factory.mktemp("pulumi")
    created = core_stack(pulumi_bin, work, plane.kubeconfig, tls, SECRETS, placement)
    created.run("up", "--yes", "--skip-preview")
    yield created
    created.run("destroy", "--yes", check=False)  # the last test destroys; this catches an earlier failure


@pytest.fixture
def line(plane: ControlPlane, node: Node, stack: PulumiStack) -> Iterator[dict[str, Any]]:
    """The demo PlantLine, its connector pods on the fake node; deleted (with its namespace) after the test."""
    plane.kubectl("cordon", node.name)  # the operator's pod runs on; new pods go to the fake node
    namespace(plane, LINES)
    body = demo_line(LINE, LINES, line=LINE)
    apply(plane, body)
    yield body
    # Its finalizer needs the operator: gone before the stack (the operator, then the CRD) is.
    plane.kubectl("delete", "namespace", LINES, "--wait=true", "--timeout=120s", check=False)


def _operator_pod(plane: ControlPlane) -> dict[str, Any]:
    selector = "app.kubernetes.io/name=plantline-operator"
    found = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods?labelSelector={selector}")
    (pod,) = found["items"]
    return dict(pod)


def _ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def _certificate(secret: dict[str, Any], key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(b64decode(secret["data"][key]))


def test_up_runs_the_operator_s_image_on_the_real_node(
    plane: ControlPlane, node: Node, images: Images, stack: PulumiStack
) -> None:
    pod = _operator_pod(plane)
    assert pod["spec"]["nodeName"] == node.name
    (container,) = pod["spec"]["containers"]
    assert container["image"] == images.operator
    # Kopf serves its liveness probe once it has started and logged in to the apiserver.
    url = f"http://{pod['status']['podIP']}:{HEALTH_PORT}/healthz"
    wait_for("the operator's /healthz", lambda: http_status(url) == 200, 60)
    pod = _operator_pod(plane)
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"]
    assert "running" in status["state"]
    assert status["restartCount"] == 0
    assert pod["status"]["podIP"].startswith(node.address.rsplit(".", 1)[0] + ".")  # the node's pod network


def test_the_rest_of_the_stack_runs_ready_on_the_fake_node(plane: ControlPlane, stack: PulumiStack) -> None:
    pods = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods")["items"]
    others = {p["metadata"]["labels"][NAME_LABEL]: p for p in pods if p["spec"]["nodeName"] != FAKE_NODE}
    assert list(others) == ["plantline-operator"]
    on_fake = sorted(p["metadata"]["labels"][NAME_LABEL] for p in pods if p["spec"]["nodeName"] == FAKE_NODE)
    assert on_fake == ["emqx", "grafana", "postgres", "prometheus"]
    for pod in pods:
        assert _ready(pod), pod["metadata"]["name"]


def test_the_operator_on_the_node_reconciles_a_plantline_and_finalizes_it(
    plane: ControlPlane, stack: PulumiStack, line: dict[str, Any]
) -> None:
    wait_for("the PlantLine Ready", lambda: ready(plane, LINES, LINE), READY_S)
    made = children(plane, LINES, LINE)
    assert made["Deployment"], made
    assert made["ConfigMap"], made
    # The line's client certificate, issued by the CA the operator made in its namespace.
    ca = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets/plantline-ca")
    leaf = plane.request("GET", f"/api/v1/namespaces/{LINES}/secrets/{LINE}-{LINE}-tls")
    _certificate(leaf, "tls.crt").verify_directly_issued_by(_certificate(ca, "ca.crt"))
    connectors = plane.request("GET", f"/api/v1/namespaces/{LINES}/pods")["items"]
    assert connectors
    for pod in connectors:
        assert pod["spec"]["nodeName"] == FAKE_NODE, pod["metadata"]["name"]
        assert _ready(pod), pod["metadata"]["name"]
    plane.kubectl("delete", "plantline", "-n", LINES, LINE, "--wait=false")
    wait_for("the PlantLine gone, its finalizer removed", lambda: plantline(plane, LINES, LINE) is None, 60)


def test_destroy_leaves_nothing_of_the_stack_behind(plane: ControlPlane, node: Node, stack: PulumiStack) -> None:
    destroy_core(plane, stack)
    on_node = plane.request("GET", f"/api/v1/pods?fieldSelector=spec.nodeName={node.name}")["items"]
    assert on_node == []
