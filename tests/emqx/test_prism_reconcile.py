"""The EMQX client's whole reconcile against Stoplight Prism serving EMQX's own OpenAPI.

Prism (not written here) validates each request against EMQX 5.8.1's published description and
answers from its examples and schemas; a request it finds invalid is answered 400 and logged as a
violation. The reconcile of a line with every role, a bridge and a primary host, then its removal,
must send nothing Prism refuses. The answers are the description's examples, not a real cluster's
state: this proves the requests, the stateful behaviour is proven against FakeEmqxApi.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.emqx import Credentials, EmqxClient, reconcile_line, remove_line
from plantline.operator.emqx_model import BridgeMaterial, BrokerRejected, LineRef, ListenerWant, Result
from plantline_testing.prism import Prism, running_prism

pytestmark = [pytest.mark.peer, pytest.mark.slow]
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-line.yaml"
REF = LineRef("plantline", "site1-line1")
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    with running_prism(tmp_path_factory.mktemp("prism")) as running:
        yield running


@pytest.fixture
def line() -> PlantLine:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    data["spec"]["connectors"] = {"grouping": "perMachine"}
    data["spec"]["primaryHostId"] = "scada"
    data["spec"]["broker"]["bridge"] = {"host": "core.example", "port": 8883, "remotePrefix": "plant/"}
    return parse_plantline(data)


def _client(prism: Prism) -> EmqxClient:
    # Prism serves the description's paths at its root, without EMQX's /api/v5 prefix.
    return EmqxClient(prism.url, Credentials("plantline", "secret"), api_path="")


def test_the_whole_reconcile_and_the_removal_pass_prisms_request_validation(prism: Prism, line: PlantLine) -> None:
    material = BridgeMaterial(PEM, KEY, PEM)

    async def run() -> tuple[Result, Result]:
        async with _client(prism) as client:
            created = await reconcile_line(client, line, REF, material, listener=ListenerWant("ssl:default", PEM))
        async with _client(prism) as client:
            removed = await remove_line(client, REF, line)
        return created, removed

    mark = len(prism.log.read_text(errors="replace"))
    created, _ = asyncio.run(run())
    log = prism.log.read_text(errors="replace")[mark:]
    # Prism's answers hold none of the line's objects: everything is created, settings included.
    kinds = {(c.kind, c.operation) for c in created.changes}
    assert {("user", "create"), ("default-deny", "create"), ("connector", "create"), ("action", "create")} <= kinds
    assert ("listener", "change") in kinds
    assert "Violation: request" not in log, log
    assert "Request did not pass the validation rules" not in log, log
    assert log.count("Request received") >= created.requests


def test_prism_refuses_a_request_the_description_does_not_allow(prism: Prism) -> None:
    """The referee is awake: a rule with an action EMQX does not know is refused and logged."""

    async def run() -> None:
        async with _client(prism) as client:
            body = [{"username": "u", "rules": [{"permission": "allow", "action": "read", "topic": "a"}]}]
            await client._call("POST", "/authorization/sources/built_in_database/rules/users", body=body)

    with pytest.raises(BrokerRejected, match="HTTP 400"):
        asyncio.run(run())
    assert "Violation: request.body.0.rules.0.action" in prism.log.read_text(errors="replace")
