"""The operator's `broker` step end to end: the real control plane, FakeEmqxApi served over HTTP.

The operator (its deploy manifests, its ServiceAccount) runs under KopfRunner with `--emqx`
pointing at the stand-in, which checks every exchange against EMQX's OpenAPI, and the API key in
the Secret the flags name. A line with `broker.kind: emqx` gets its objects and `BrokerReady`;
a rule deleted behind the operator's back is back within one resync; deleting the line removes
them before the finalizer lets it go.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import kopf
import pytest
from kopf.testing import KopfRunner

from plantline.operator.handlers import Options, register
from plantline.operator.model import ConnectorSettings
from plantline_testing.controlplane import BUILD_TIMEOUT_S, ControlPlane
from plantline_testing.emqx import FakeEmqxApi, serving
from plantline_testing.kube import (
    OPERATOR_NAMESPACE,
    apply,
    condition,
    demo_line,
    install_operator,
    namespace,
    plantline,
    ready,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 600)]

NS = "emqx-lines"
NAME = "core-line"
RESYNC_S = 3.0
READY_S = 90.0
SECRET = "plantline-emqx-api"
READER = "site1-line7-reader"


@pytest.fixture(scope="module")
def fake() -> FakeEmqxApi:
    return FakeEmqxApi(secret="e2e-secret-never-logged")


@pytest.fixture(scope="module")
def operator(plane: ControlPlane, fake: FakeEmqxApi) -> Iterator[KopfRunner]:
    kubeconfig: Path = install_operator(plane)
    namespace(plane, NS)
    data = {"api-key": b64encode(fake.key.encode()).decode(), "api-secret": b64encode(fake.secret.encode()).decode()}
    apply(plane, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": OPERATOR_NAMESPACE},
                  "data": data})  # fmt: skip
    with serving(fake) as url:
        registry = kopf.OperatorRegistry()
        options = Options(
            connector=ConnectorSettings(image="plantline-connectors:e2e"),
            resync_seconds=RESYNC_S,
            emqx_url=url,
            emqx_secret=(OPERATOR_NAMESPACE, SECRET),
            emqx_listener="ssl:default",
        )
        register(registry, options)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", str(kubeconfig))
            with KopfRunner(["run", "--standalone", "--all-namespaces"], registry=registry, timeout=60) as runner:
                yield runner
    assert fake.secret not in runner.output
    assert fake.violations == []


def _users(fake: FakeEmqxApi) -> set[str]:
    with fake.lock:
        return set(fake.users)


def test_an_emqx_line_gets_its_objects_and_is_ready(
    plane: ControlPlane, operator: KopfRunner, fake: FakeEmqxApi
) -> None:
    line = demo_line(NAME, NS, line="line7", grouping="perMachine")
    line["spec"]["broker"] |= {"kind": "emqx", "bridge": {"host": "core.example"}}
    apply(plane, line)
    found = wait_for("the EMQX line Ready", lambda: ready(plane, NS, NAME), READY_S)
    broker = condition(found, "BrokerReady")
    assert (broker["status"], broker["reason"]) == ("True", "Reconciled")
    assert READER in _users(fake)
    trust = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/configmaps/plantline-ca-trust")
    with fake.lock:
        assert f"plantline-{NS}-{NAME}-upstream" in fake.connectors
        assert len(fake.actions) == 3
        # The clients' listener trusts the operator's CA, demands a certificate and checks CRLs.
        assert fake.ca_files["ssl:default"] == trust["data"]["ca.crt"]
        assert fake.listeners["ssl:default"]["ssl_options"]["verify"] == "verify_peer"
        assert fake.listeners["ssl:default"]["ssl_options"]["enable_crl_check"] is True


def test_a_rule_deleted_behind_its_back_is_restored_within_one_resync(
    plane: ControlPlane, operator: KopfRunner, fake: FakeEmqxApi
) -> None:
    with fake.lock:
        del fake.users[READER]
    wait_for("the reader's rules back", lambda: READER in _users(fake), RESYNC_S * 2 + 10)


def test_deleting_the_line_removes_its_objects(plane: ControlPlane, operator: KopfRunner, fake: FakeEmqxApi) -> None:
    with fake.lock:
        fake.users["someone-else"] = [{"permission": "allow", "action": "all", "topic": "x/#"}]
    plane.kubectl("delete", "pl", "-n", NS, NAME, "--timeout=90s")
    wait_for("the line gone", lambda: plantline(plane, NS, NAME) is None, 90)
    assert _users(fake) == {"someone-else"}
    with fake.lock:
        assert (fake.connectors, fake.actions, fake.all_rules) == ({}, {}, [])
