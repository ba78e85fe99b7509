"""The EMQX client and plan against FakeEmqxApi, whose every exchange is checked against EMQX's OpenAPI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.cli import main
from plantline.operator.emqx import Credentials, EmqxBroker, EmqxClient, reconcile_line, remove_line
from plantline.operator.emqx_model import (
    BridgeMaterial,
    BrokerRejected,
    BrokerUnauthorized,
    BrokerUnreachable,
    LineRef,
    Result,
)
from plantline_testing.emqx import FakeEmqxApi, serving

REF = LineRef("plantline", "site1-line1")
MATERIAL = BridgeMaterial(
    b"-----BEGIN CERTIFICATE-----\nA\n", b"-----BEGIN PRIVATE KEY-----\nB\n", b"-----BEGIN CERTIFICATE-----\nC\n"
)
CA_PEM = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
OTHERS_RULES: list[dict[str, Any]] = [{"permission": "allow", "action": "all", "topic": "x/#"}]
OTHERS_RULE = {"permission": "deny", "action": "publish", "topic": "spBv1.0/site1/+/line9/#"}


@pytest.fixture
def line(demo_data: Callable[[], dict[str, Any]]) -> PlantLine:
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    data["spec"]["broker"]["bridge"] = {"host": "core.example", "port": 8883, "remotePrefix": "plant/"}
    return parse_plantline(data)


@pytest.fixture
def fake() -> FakeEmqxApi:
    fake = FakeEmqxApi()
    fake.users["someone-else"] = list(OTHERS_RULES)
    fake.all_rules.append(dict(OTHERS_RULE))
    fake.connectors["mine"] = {"type": "mqtt", "name": "mine", "server": "elsewhere:1883"}
    return fake


def sync(
    fake: FakeEmqxApi, line: PlantLine, material: BridgeMaterial | None = MATERIAL, *, listener: str | None = None
) -> Result:
    broker = EmqxBroker(
        "http://emqx:18083", Credentials(fake.key, fake.secret), listener=listener, transport=fake.transport()
    )
    return broker.sync(line, REF, material, CA_PEM)


def ops(result: Result) -> list[tuple[str, str, str]]:
    return [(c.operation, c.kind, c.name) for c in result.changes]


def test_a_new_line_gets_its_rules_default_deny_connector_and_actions(fake: FakeEmqxApi, line: PlantLine) -> None:
    result = sync(fake, line)
    assert {c.operation for c in result.changes} == {"create"}
    assert set(fake.users) == {
        "someone-else",
        *(
            f"site1-line1-{n}"
            for n in ("capper", "filler", "labeler", "bridge", "host", "reader", "dashboard", "admin")
        ),
    }
    filler = fake.users["site1-line1-filler"]
    assert filler[0] == REF.owner_rule
    assert {"permission": "allow", "action": "publish", "topic": "spBv1.0/site1/DDATA/line1-filler/filler"} in filler
    assert filler[-1] == {"permission": "deny", "action": "all", "topic": "#"}
    assert fake.all_rules[0] == OTHERS_RULE  # others' rules first, as they were
    assert fake.all_rules[1:] == [
        {"permission": "deny", "action": "all", "topic": f"spBv1.0/site1/+/line1-{m}/#"}
        for m in ("capper", "filler", "labeler")
    ]
    upstream = fake.connectors["plantline-plantline-site1-line1-upstream"]
    assert upstream["server"] == "core.example:8883"
    assert upstream["ssl"]["verify"] == "verify_peer"
    assert MATERIAL.tag in upstream["tags"]
    actions = {a["local_topic"]: a["parameters"] for a in fake.actions.values()}
    assert actions["spBv1.0/site1/+/line1-filler/#"] == {
        "topic": "plant/${topic}",
        "qos": 1,
        "retain": False,
        "payload": "${payload}",
    }
    assert len(actions) == 3


def test_the_bridge_key_never_shows_in_a_plan(fake: FakeEmqxApi, line: PlantLine) -> None:
    result = sync(fake, line)
    assert b"PRIVATE KEY" in MATERIAL.key_pem
    assert "PRIVATE KEY" not in repr(result) + result.summary()


def test_a_second_reconcile_changes_nothing_and_only_reads(fake: FakeEmqxApi, line: PlantLine) -> None:
    sync(fake, line)
    fake.log.clear()
    result = sync(fake, line)
    assert result.changes == []
    assert {method for method, _ in fake.log} == {"GET"}
    # The settings, the line's users, the all-list, then its connector and its three actions by name.
    assert result.requests == 8


@pytest.mark.parametrize(
    "edit",
    [
        lambda f: f.users.pop("site1-line1-reader"),
        lambda f: f.users["site1-line1-dashboard"].insert(1, {"permission": "allow", "action": "all", "topic": "#"}),
        lambda f: f.all_rules.pop(),
        lambda f: f.actions.pop("plantline-plantline-site1-line1-up-filler"),
        lambda f: f.connectors["plantline-plantline-site1-line1-upstream"].update(server="evil.example:8883"),
        lambda f: f.actions["plantline-plantline-site1-line1-up-capper"]["parameters"].update(qos=0),
        lambda f: f.zone["mqtt"].update(peer_cert_as_username="disabled"),
        lambda f: f.source.update(enable=False),
    ],
    ids=["user-deleted", "user-widened", "deny-deleted", "action-deleted", "connector-edited", "action-edited",
         "zone-edited", "source-disabled"],
)  # fmt: skip
def test_drift_is_repaired_in_one_reconcile(fake: FakeEmqxApi, line: PlantLine, edit: Callable[[Any], Any]) -> None:
    sync(fake, line)
    before = _snapshot(fake)
    edit(fake)
    assert len(sync(fake, line).changes) == 1
    assert _snapshot(fake) == before
    assert sync(fake, line).changes == []


def _snapshot(fake: FakeEmqxApi) -> str:
    state = [fake.users, fake.all_rules, fake.connectors, fake.actions, fake.zone, fake.source]
    return json.dumps(state, sort_keys=True)


def test_the_listener_named_is_made_mutual_tls_with_the_ca_and_kept_so(fake: FakeEmqxApi, line: PlantLine) -> None:
    assert fake.listeners["ssl:default"]["ssl_options"]["verify"] == "verify_none"
    first = sync(fake, line, listener="ssl:default")
    assert ("change", "listener", "ssl:default") in ops(first)
    tls = fake.listeners["ssl:default"]["ssl_options"]
    assert (tls["verify"], tls["fail_if_no_peer_cert"], tls["enable_crl_check"]) == ("verify_peer", True, True)
    assert fake.ca_files["ssl:default"] == CA_PEM.decode()  # what EMQX saved behind its cacertfile path
    assert fake.listeners["ssl:default"]["bind"] == "0.0.0.0:8883"  # the rest of the listener as it was
    assert sync(fake, line, listener="ssl:default").changes == []
    fake.listeners["ssl:default"]["ssl_options"]["enable_crl_check"] = False
    assert ops(sync(fake, line, listener="ssl:default")) == [("change", "listener", "ssl:default")]
    with pytest.raises(BrokerRejected, match="no such listener"):
        sync(fake, line, listener="ssl:plant")


def test_the_zone_keeps_its_other_settings(fake: FakeEmqxApi, line: PlantLine) -> None:
    fake.zone["mqtt"]["peer_cert_as_username"] = "disabled"
    sync(fake, line)
    assert fake.zone["mqtt"] == {"peer_cert_as_username": "cn", "max_qos_allowed": 2}


def test_a_missing_builtin_database_source_is_created(fake: FakeEmqxApi, line: PlantLine) -> None:
    fake.source = None
    sync(fake, line)
    created: Any = fake.source
    assert created["enable"] is True


def test_a_removed_machine_loses_its_rules_and_action(
    fake: FakeEmqxApi, line: PlantLine, demo_data: Callable[[], dict[str, Any]]
) -> None:
    sync(fake, line)
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    data["spec"]["broker"]["bridge"] = {"host": "core.example", "port": 8883, "remotePrefix": "plant/"}
    data["spec"]["machines"] = [m for m in data["spec"]["machines"] if m["id"] != "labeler"]
    assert ops(sync(fake, parse_plantline(data))) == [
        # The roles that span the line lose the labeler's edge node.
        *(("change", "user", f"site1-line1-{n}") for n in ("bridge", "host", "reader", "dashboard", "admin")),
        ("delete", "user", "site1-line1-labeler"),
        ("change", "default-deny", "all"),
        ("delete", "action", "plantline-plantline-site1-line1-up-labeler"),
    ]
    assert "site1-line1-labeler" not in fake.users
    assert not [r for r in fake.all_rules if "labeler" in r["topic"]]


def test_a_bridge_taken_out_of_the_spec_takes_its_connector_and_actions_along(
    fake: FakeEmqxApi, line: PlantLine, demo_data: Callable[[], dict[str, Any]]
) -> None:
    sync(fake, line)
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    changes = ops(sync(fake, parse_plantline(data), None))
    assert [c for c in changes if c[1] in ("action", "connector")] == [
        *(("delete", "action", f"plantline-plantline-site1-line1-up-{m}") for m in ("capper", "filler", "labeler")),
        ("delete", "connector", "plantline-plantline-site1-line1-upstream"),
    ]
    assert ("delete", "user", "site1-line1-bridge") in changes
    assert list(fake.connectors) == ["mine"]
    assert fake.actions == {}


def test_removing_the_line_deletes_what_it_owns_and_nothing_else(fake: FakeEmqxApi, line: PlantLine) -> None:
    sync(fake, line)
    broker = EmqxBroker("http://emqx:18083", Credentials(fake.key, fake.secret), transport=fake.transport())
    result = broker.remove(REF, line)
    assert {c.operation for c in result.changes} == {"delete"}
    assert fake.users == {"someone-else": OTHERS_RULES}
    assert fake.all_rules == [OTHERS_RULE]
    assert list(fake.connectors) == ["mine"]
    assert fake.actions == {}
    assert broker.remove(REF, line).changes == []


def test_another_lines_objects_of_a_similar_name_are_not_touched(fake: FakeEmqxApi, line: PlantLine) -> None:
    other = LineRef("plantline", "site1-line1-b")  # its names start with this line's prefix
    sync(fake, line)
    fake.connectors["plantline-plantline-site1-line1-b-upstream"] = {
        "type": "mqtt",
        "name": "plantline-plantline-site1-line1-b-upstream",
        "server": "b:8883",
        "description": other.description,
    }
    EmqxBroker("http://emqx:18083", Credentials(fake.key, fake.secret), transport=fake.transport()).remove(REF, line)
    assert list(fake.connectors) == ["mine", "plantline-plantline-site1-line1-b-upstream"]


def test_a_user_of_the_lines_name_that_it_does_not_own_is_refused_and_left(fake: FakeEmqxApi, line: PlantLine) -> None:
    fake.users["site1-line1-admin"] = [{"permission": "allow", "action": "all", "topic": "#"}]
    with pytest.raises(BrokerRejected, match="site1-line1-admin exist in EMQX and are not owned"):
        sync(fake, line)
    assert fake.users["site1-line1-admin"] == [{"permission": "allow", "action": "all", "topic": "#"}]


def test_emqx_refusing_a_request_is_rejected_with_its_message(fake: FakeEmqxApi, line: PlantLine) -> None:
    fake.rejects[("POST", "/api/v5/authorization/sources/built_in_database/rules/users")] = "bad rule schema"
    with pytest.raises(BrokerRejected, match=r"POST /authorization/.*/users: HTTP 400: BAD_REQUEST: bad rule schema"):
        sync(fake, line)


def test_a_wrong_secret_is_unauthorized_and_never_shown(fake: FakeEmqxApi, line: PlantLine) -> None:
    credentials = Credentials(fake.key, "not-the-secret")
    with pytest.raises(BrokerUnauthorized) as caught:
        EmqxBroker("http://emqx:18083", credentials, transport=fake.transport()).sync(line, REF, MATERIAL, CA_PEM)
    assert "not-the-secret" not in str(caught.value)
    assert "not-the-secret" not in repr(credentials)


def test_an_unreachable_emqx_is_reported(line: PlantLine) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    broker = EmqxBroker("http://emqx:18083", Credentials("k", "s"), transport=httpx.MockTransport(refuse))
    with pytest.raises(BrokerUnreachable, match="ConnectError"):
        broker.sync(line, REF, MATERIAL, CA_PEM)


def test_something_else_than_emqx_is_rejected(line: PlantLine) -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>a dashboard</html>")

    broker = EmqxBroker("http://emqx:18083", Credentials("k", "s"), transport=httpx.MockTransport(html))
    with pytest.raises(BrokerRejected, match="not JSON: is http://emqx:18083/api/v5/ EMQX's REST API"):
        broker.sync(line, REF, MATERIAL, CA_PEM)


def test_a_dry_run_only_reads(fake: FakeEmqxApi, line: PlantLine) -> None:
    async def run() -> Result:
        async with EmqxClient("http://emqx:18083", Credentials(fake.key, fake.secret), transport=fake.transport()) as c:
            return await reconcile_line(c, line, REF, MATERIAL, dry_run=True)

    result = asyncio.run(run())
    assert len(result.changes) == 13
    assert {method for method, _ in fake.log} == {"GET"}


def test_users_are_read_page_by_page(fake: FakeEmqxApi, line: PlantLine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("plantline.operator.emqx.PAGE_LIMIT", 3)
    sync(fake, line)
    assert sync(fake, line).changes == []

    async def run() -> Result:
        async with EmqxClient("http://emqx:18083", Credentials(fake.key, fake.secret), transport=fake.transport()) as c:
            return await remove_line(c, REF, line)

    assert len(asyncio.run(run()).changes) == 13


# -- plantline broker plan ------------------------------------------------------------------------


def _line_file(tmp_path: Path, line: PlantLine) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(json.dumps(line.model_dump(mode="json", by_alias=True, exclude_none=True)))
    return path


def test_broker_plan_prints_the_changes_as_json_and_changes_nothing(
    fake: FakeEmqxApi, line: PlantLine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(f"{fake.key}:{fake.secret}\n")
    sync(fake, line)
    fake.users.pop("site1-line1-reader")
    fake.connectors["plantline-plantline-site1-line1-upstream"]["server"] = "evil.example:8883"
    before = _snapshot(fake)
    with serving(fake) as url:
        argv = ["broker", "plan", str(_line_file(tmp_path, line)), "--emqx", url, "--credentials", str(key_file)]
        assert main([*argv, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "line": "plantline/site1-line1",
        "emqx": url,
        "requests": 8,
        "changes": [
            {"kind": "user", "name": "site1-line1-reader", "operation": "create"},
            {"kind": "connector", "name": "plantline-plantline-site1-line1-upstream", "operation": "change"},
        ],
    }
    assert "1 to create, 1 to change, 0 to delete" in err
    assert fake.secret not in out + err
    assert _snapshot(fake) == before
    assert fake.violations == []


@pytest.fixture
def plan(fake: FakeEmqxApi, line: PlantLine, tmp_path: Path) -> Callable[..., int]:
    """Return a runner of `plantline broker plan` on the line against the fake, served over HTTP."""
    path = _line_file(tmp_path, line)

    def run(*extra: str) -> int:
        with serving(fake) as url:
            return main(["broker", "plan", str(path), "--emqx", url, *extra])

    return run


def test_broker_plan_text_reads_credentials_from_the_environment(
    fake: FakeEmqxApi, plan: Callable[..., int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTLINE_EMQX_API_KEY", fake.key)
    monkeypatch.setenv("PLANTLINE_EMQX_API_SECRET", fake.secret)
    assert plan() == 0
    out = capsys.readouterr().out.splitlines()
    assert "create  user          site1-line1-admin" in out
    assert "create  action        plantline-plantline-site1-line1-up-filler" in out


def test_broker_plan_without_credentials_or_with_a_wrong_key(
    plan: Callable[..., int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLANTLINE_EMQX_API_KEY", raising=False)
    assert plan() == 2
    monkeypatch.setenv("PLANTLINE_EMQX_API_KEY", "plantline-test-key")
    monkeypatch.setenv("PLANTLINE_EMQX_API_SECRET", "wrong-secret")
    assert plan() == 1
    err = capsys.readouterr().err
    assert "no EMQX API key" in err
    assert "Unauthorized" in err
    assert "wrong-secret" not in err


def test_lines_reconciled_at_once_keep_each_others_default_deny(
    fake: FakeEmqxApi, demo_data: Callable[[], dict[str, Any]]
) -> None:
    lines = []
    for index in range(6):
        data = demo_data()
        data["spec"]["line"] = f"l{index}"
        lines.append((LineRef("plantline", f"l{index}"), parse_plantline(data)))
    with serving(fake) as url:
        broker = EmqxBroker(url, Credentials(fake.key, fake.secret))
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda item: broker.sync(item[1], item[0], None, CA_PEM), lines))
    assert fake.all_rules[0] == OTHERS_RULE
    denied = {r["topic"] for r in fake.all_rules[1:]}
    assert denied == {f"spBv1.0/site1/+/l{i}-{m}/#" for i in range(6) for m in ("capper", "filler", "labeler")}
    assert fake.violations == []
