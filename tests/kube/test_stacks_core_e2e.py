"""`pulumi up` of stacks/core against a real control plane: create, no drift, update in place, destroy.

The Pulumi CLI and the Kubernetes provider are built from the Go module proxy
(tests/harness/pulumi/build.sh), the language host is plantline_testing.pulumi_host; the state is
local (`pulumi login file://DIR` in a temporary directory) and secrets are encrypted with a passphrase.
kwok runs the pods, so every Deployment and StatefulSet the stack makes becomes Ready, and the
hostPath provisioner binds their claims. The broker's server certificate comes from the toolkit's
CA (plantline.pki). The tests run in file order on one stack.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline_testing.controlplane import ApiError, ControlPlane
from plantline_testing.pulumi_cli import (
    BUILD_TIMEOUT_S,
    CORE_CLUSTER_WIDE,
    PulumiStack,
    core_stack,
    destroy_core,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 1800)]

REPO = Path(__file__).resolve().parents[2]
NS = "plantline-system"
SECRETS = {
    "emqxApiSecret": "stack-emqx-api-secret",
    "grafanaAdminPassword": "stack-grafana-password",
    "postgresPassword": "stack-postgres-password",
}
DEPLOYMENTS = ("plantline-operator", "prometheus", "grafana")
STATEFULSETS = ("emqx", "postgres")


@pytest.fixture(scope="module")
def stack(
    plane: ControlPlane, pulumi_bin: Path, tls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PulumiStack]:
    created = core_stack(pulumi_bin, tmp_path_factory.mktemp("pulumi"), plane.kubeconfig, tls, SECRETS)
    started = time.monotonic()
    created.run("up", "--yes", "--skip-preview")
    print(f"pulumi up of stacks/core: {time.monotonic() - started:.1f} s")  # the benchmark's figure
    yield created
    created.run("destroy", "--yes", check=False)  # the last test destroys; this catches an earlier failure


def get(plane: ControlPlane, path: str) -> dict[str, Any] | None:
    try:
        return plane.request("GET", path)
    except ApiError as error:
        if error.status == 404:
            return None
        raise


def test_up_creates_every_workload_ready_with_its_claims_bound(plane: ControlPlane, stack: PulumiStack) -> None:
    for name in DEPLOYMENTS:
        deployment = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
        assert deployment["status"].get("availableReplicas") == 1, name
    for name in STATEFULSETS:
        statefulset = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
        assert statefulset["status"].get("readyReplicas") == 1, name
        claim = plane.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-{name}-0")
        assert claim["status"]["phase"] == "Bound", name
    for path in CORE_CLUSTER_WIDE:
        assert get(plane, path) is not None, path
    policies = plane.request("GET", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies")
    assert sorted(p["metadata"]["name"] for p in policies["items"]) == ["emqx-ingress", "postgres-ingress"]
    operator = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/plantline-operator")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--emqx=http://emqx-dashboard.{NS}.svc:18083" in args


def test_the_secrets_reach_the_cluster_but_neither_the_config_file_nor_the_outputs(
    plane: ControlPlane, stack: PulumiStack, tls: dict[str, str]
) -> None:
    emqx_tls = plane.request("GET", f"/api/v1/namespaces/{NS}/secrets/emqx-tls")["data"]
    assert base64.b64decode(emqx_tls["tls.key"]).decode().strip() == tls["tlsKey"].strip()
    api = plane.request("GET", f"/api/v1/namespaces/{NS}/secrets/plantline-emqx-api")["data"]
    assert base64.b64decode(api["api-secret"]).decode() == SECRETS["emqxApiSecret"]
    config_file = (stack.project / f"Pulumi.{stack.name}.yaml").read_text()
    config = yaml.safe_load(config_file)["config"]
    for key in ("tlsKey", *SECRETS):
        assert set(config[f"plantline-core:{key}"]) == {"secure"}, key
    state = "".join(p.read_text() for p in (stack.work_dir / "state").rglob("*.json"))
    assert state, "no state file under the stack's local backend"
    for value in (tls["tlsKey"].strip().splitlines()[1], *SECRETS.values()):
        assert value not in config_file
        assert value not in state
    outputs = stack.outputs()
    assert outputs == {
        "brokerEndpoint": f"mqtts://emqx.{NS}.svc:8883",
        "brokerApiUrl": f"http://emqx-dashboard.{NS}.svc:18083",
        "grafanaUrl": f"http://grafana.{NS}.svc:3000",
        "caBundle": tls["caBundle"].rstrip("\n"),
        "operatorNamespace": NS,
        "databaseHost": f"postgres.{NS}.svc",
    }


def test_a_preview_right_after_up_shows_no_changes(stack: PulumiStack) -> None:
    stack.run("preview", "--expect-no-changes")


def test_operator_deploy_is_what_kubectl_kustomize_renders_too(plane: ControlPlane) -> None:
    from plantline.stacks.manifests import read_documents

    rendered = plane.kubectl("kustomize", str(REPO / "operator" / "deploy")).stdout
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(read_documents(REPO / "operator" / "deploy"), key=key) == sorted(
        (d for d in yaml.safe_load_all(rendered) if d), key=key
    )


def test_a_config_change_updates_in_place(plane: ControlPlane, stack: PulumiStack) -> None:
    stack.set_config({"prometheusRetention": "7d"})
    steps = stack.preview_steps()
    changed = {tuple(s["urn"].split("::")[-2:]): s["op"] for s in steps if s["op"] != "same"}
    assert changed == {("plantline:core:PlantLineCore$kubernetes:apps/v1:Deployment", "prometheus"): "update"}
    stack.run("up", "--yes", "--skip-preview")
    deployment = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/prometheus")
    assert "--storage.tsdb.retention.time=7d" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    stack.run("preview", "--expect-no-changes")


def test_destroy_leaves_nothing_of_the_stack_behind(plane: ControlPlane, stack: PulumiStack) -> None:
    destroy_core(plane, stack)
