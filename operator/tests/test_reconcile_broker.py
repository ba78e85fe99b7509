"""The `broker` step and BrokerReady: a line with `broker.kind: emqx` against FakeEmqxApi."""

from __future__ import annotations

from base64 import b64encode
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from plantline.operator.api import PlantLineStatus
from plantline.operator.emqx import Credentials, EmqxBroker
from plantline.operator.handlers import SecretBroker
from plantline.operator.model import ConnectorSettings
from plantline.operator.reconcile import Broker, Context, Outcome, finalize, reconcile
from plantline_testing.emqx import FakeEmqxApi

from .recording import MemoryAuthority, RecordingCluster, demo_body

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
SETTINGS = ConnectorSettings(image="registry.example/plantline/connector:0.1.0")
USERS = {f"site1-line1-{n}" for n in ("line1", "bridge", "reader", "dashboard", "admin")}
CONNECTOR = "plantline-plantline-site1-line1-upstream"
RULES = "/api/v5/authorization/sources/built_in_database/rules"


@pytest.fixture
def fake() -> FakeEmqxApi:
    return FakeEmqxApi()


@pytest.fixture
def broker(fake: FakeEmqxApi) -> EmqxBroker:
    return EmqxBroker("http://emqx:18083", Credentials(fake.key, fake.secret), transport=fake.transport())


def emqx_body(*, bridge: bool = True) -> dict[str, Any]:
    body = demo_body()
    body["spec"]["broker"]["kind"] = "emqx"
    if bridge:
        body["spec"]["broker"]["bridge"] = {"host": "core.example"}
    return body


def run(body: dict[str, Any], cluster: RecordingCluster, authority: MemoryAuthority, broker: Broker | None) -> Outcome:
    outcome = reconcile(body, Context(cluster, authority, SETTINGS, NOW, broker))
    PlantLineStatus.model_validate(outcome.status)
    body["status"] = outcome.status
    cluster.make_available(*cluster.stored("Deployment"))
    return outcome


def condition(outcome: Outcome, type_: str) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == type_)


def test_an_emqx_line_gets_its_objects_and_broker_ready(
    cluster: RecordingCluster, authority: MemoryAuthority, fake: FakeEmqxApi, broker: EmqxBroker
) -> None:
    body = emqx_body()
    outcome = run(body, cluster, authority, broker)
    assert condition(outcome, "BrokerReady")["status"] == "True"
    assert condition(outcome, "BrokerReady")["reason"] == "Reconciled"
    assert set(fake.users) == USERS
    # The connector carries the line's own bridge certificate, as the CA issued it into its Secret.
    bridge_secret = cluster.stored("Secret")["site1-line1-bridge-tls"]
    assert bridge_secret is not None
    assert any(t.startswith("plantline-cert-") for t in fake.connectors[CONNECTOR]["tags"])
    assert [e.reason for e in outcome.events if e.reason == "BrokerReconciled"] == ["BrokerReconciled"]
    assert condition(run(body, cluster, authority, broker), "Ready")["status"] == "True"


def test_a_rule_deleted_behind_the_operators_back_is_restored_at_the_next_resync(
    cluster: RecordingCluster, authority: MemoryAuthority, fake: FakeEmqxApi, broker: EmqxBroker
) -> None:
    body = emqx_body()
    run(body, cluster, authority, broker)
    rules = dict(fake.users)
    del fake.users["site1-line1-reader"]
    fake.all_rules.clear()
    outcome = run(body, cluster, authority, broker)
    assert fake.users == rules
    assert fake.all_rules
    assert "created user site1-line1-reader" in condition(outcome, "BrokerReady")["message"]


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda f: setattr(f, "secret", "rotated"), "Unauthorized"),
        (lambda f: f.rejects.update({("POST", f"{RULES}/users"): "max_rules exceeded"}), "Rejected"),
    ],
)
def test_an_emqx_failure_is_broker_ready_false_and_ready_false_and_the_rest_is_applied(
    cluster: RecordingCluster,
    authority: MemoryAuthority,
    fake: FakeEmqxApi,
    broker: EmqxBroker,
    break_it: Any,
    reason: str,
) -> None:
    break_it(fake)
    body = emqx_body()
    outcome = run(body, cluster, authority, broker)
    assert (condition(outcome, "BrokerReady")["status"], condition(outcome, "BrokerReady")["reason"]) == (
        "False",
        reason,
    )
    assert condition(outcome, "Ready")["status"] == "False"
    assert outcome.failed_step == "broker"
    assert outcome.retry_after is not None
    assert cluster.stored("Deployment")  # the connectors do not wait for the core broker
    if reason == "Rejected":
        assert "BAD_REQUEST: max_rules exceeded" in condition(outcome, "BrokerReady")["message"]
    assert "rotated" not in str(outcome.status) + str(outcome.events)


def test_an_unreachable_emqx_is_reported(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    broker = EmqxBroker("http://emqx:18083", Credentials("k", "s"), transport=httpx.MockTransport(refuse))
    outcome = run(emqx_body(), cluster, authority, broker)
    assert condition(outcome, "BrokerReady")["reason"] == "BrokerUnreachable"


def test_without_an_emqx_the_line_is_not_ready(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    outcome = run(emqx_body(), cluster, authority, None)
    assert condition(outcome, "BrokerReady")["reason"] == "BrokerNotConfigured"
    assert condition(outcome, "Ready")["reason"] == "BrokerNotConfigured"


def test_a_mosquitto_line_never_calls_emqx_and_has_no_broker_ready(
    cluster: RecordingCluster, authority: MemoryAuthority, fake: FakeEmqxApi, broker: EmqxBroker
) -> None:
    outcome = run(demo_body(), cluster, authority, broker)
    assert "BrokerReady" not in {c["type"] for c in outcome.status["conditions"]}
    assert fake.log == []


def test_a_line_moved_off_emqx_loses_its_objects_and_its_condition(
    cluster: RecordingCluster, authority: MemoryAuthority, fake: FakeEmqxApi, broker: EmqxBroker
) -> None:
    body = emqx_body()
    run(body, cluster, authority, broker)
    body["spec"]["broker"]["kind"] = "mosquitto"
    outcome = run(body, cluster, authority, broker)
    assert "BrokerReady" not in {c["type"] for c in outcome.status["conditions"]}
    assert (fake.users, fake.all_rules, fake.connectors, fake.actions) == ({}, [], {}, {})
    fake.log.clear()
    run(body, cluster, authority, broker)
    assert fake.log == []


def test_the_finalizer_removes_the_lines_objects(
    cluster: RecordingCluster, authority: MemoryAuthority, fake: FakeEmqxApi, broker: EmqxBroker
) -> None:
    fake.users["someone-else"] = [{"permission": "allow", "action": "all", "topic": "x/#"}]
    body = emqx_body()
    run(body, cluster, authority, broker)
    events = finalize(body, Context(cluster, authority, SETTINGS, NOW, broker))
    assert list(fake.users) == ["someone-else"]
    assert (fake.all_rules, fake.connectors, fake.actions) == ([], {}, {})
    assert {e.reason for e in events} == {"CertificatesRevoked", "BrokerReconciled"}


def test_the_api_key_comes_from_the_secret_named_in_the_flags(
    cluster: RecordingCluster, authority: MemoryAuthority, fake: FakeEmqxApi
) -> None:
    door = SecretBroker(cluster, "http://emqx:18083", ("plantline-system", "emqx-api"), transport=fake.transport())
    body = emqx_body()
    outcome = run(body, cluster, authority, door)
    assert condition(outcome, "BrokerReady")["reason"] == "Unauthorized"
    assert "plantline-system/emqx-api holds no api-key" in condition(outcome, "BrokerReady")["message"]
    data = {"api-key": b64encode(fake.key.encode()).decode(), "api-secret": b64encode(fake.secret.encode()).decode()}
    meta = {"name": "emqx-api", "namespace": "plantline-system"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}
    cluster.apply("Secret", "plantline-system", "emqx-api", secret)
    outcome = run(body, cluster, authority, door)
    assert condition(outcome, "BrokerReady")["reason"] == "Reconciled"
    assert fake.secret not in str(outcome.status) + str(outcome.events)
