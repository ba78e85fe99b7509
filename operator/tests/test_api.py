"""The PlantLine model: the demo validates; every broken document fails with exact spec paths."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.operator.api import (
    Condition,
    PlantLine,
    PlantLineInvalid,
    PlantLineStatus,
    identities,
    parse_plantline,
)

INVALID = Path(__file__).parent / "invalid"
DemoData = Callable[[], dict[str, Any]]


def _expected(path: Path) -> set[str]:
    return {line.removeprefix("# expect: ") for line in path.read_text().splitlines() if line.startswith("# expect: ")}


def _problems(data: object) -> set[str]:
    with pytest.raises(PlantLineInvalid) as caught:
        parse_plantline(data)
    return {str(p) for p in caught.value.problems}


def test_demo_line_is_valid(demo: PlantLine) -> None:
    spec = demo.spec
    assert (spec.site, spec.area, spec.line) == ("site1", "packaging", "line1")
    assert [m.protocol for m in spec.machines] == ["opcua", "s7", "cip"]
    assert spec.sparkplug_group == "site1"
    assert spec.sparkplug_edge_node == "line1"
    assert spec.machines[0].ideal_cycle_time == 0.5
    assert spec.kpi.shift_calendar is not None
    assert spec.kpi.shift_calendar.timezone == "Europe/Berlin"


def test_camel_case_round_trip(demo: PlantLine) -> None:
    dumped = demo.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["apiVersion"] == "plantline.dev/v1alpha1"
    assert "idealCycleTime" in dumped["spec"]["machines"][0]
    assert parse_plantline(dumped) == demo


def test_sparkplug_ids_override_the_defaults(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"] |= {"groupId": "plant-a", "edgeNodeId": "packaging-1", "primaryHostId": "scada"}
    spec = parse_plantline(data).spec
    assert (spec.sparkplug_group, spec.sparkplug_edge_node, spec.primary_host_id) == ("plant-a", "packaging-1", "scada")


def test_primary_host_offline_defaults_to_the_spec_and_hold_needs_a_host(demo_data: DemoData) -> None:
    data = demo_data()
    assert parse_plantline(data).spec.primary_host_offline == "disconnect"
    data["spec"]["primaryHostOffline"] = "hold"
    assert _problems(data) == {"spec.primaryHostOffline: hold applies only to a line with a primaryHostId"}
    data["spec"]["primaryHostId"] = "scada"
    assert parse_plantline(data).spec.primary_host_offline == "hold"
    data["spec"]["primaryHostOffline"] = "wait"
    assert _problems(data) == {"spec.primaryHostOffline: Input should be 'disconnect' or 'hold'"}


def test_uint32_field_defaults_to_the_spec_and_is_checked(demo: PlantLine, demo_data: DemoData) -> None:
    assert demo.spec.uint32_field == "int_value"
    data = demo_data()
    data["spec"]["uint32Field"] = "long_value"
    assert parse_plantline(data).spec.uint32_field == "long_value"
    data["spec"]["uint32Field"] = "longValue"
    assert _problems(data) == {"spec.uint32Field: Input should be 'int_value' or 'long_value'"}


@pytest.mark.parametrize("path", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_documents_name_each_problem_by_path(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} has no '# expect:' lines"
    assert _problems(yaml.safe_load(path.read_text())) == expected


def test_every_bad_address_of_a_machine_is_reported(demo_data: DemoData) -> None:
    data = demo_data()
    capper = data["spec"]["machines"][1]
    capper["tags"][0]["address"] = "Filler.state.run"
    capper["tags"][3]["address"] = "DB10.DBX0"
    problems = _problems(data)
    assert {p.split(":", 1)[0] for p in problems} == {
        "spec.machines[1].tags[0].address",
        "spec.machines[1].tags[3].address",
    }


def test_identity_too_long_for_a_certificate(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["site"] = "s" * 20
    data["spec"]["line"] = "l" * 20
    data["spec"]["machines"][0]["id"] = "m" * 20
    data["spec"]["machines"][0]["opcua"] = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}
    problems = _problems(data)
    assert any(p.startswith("spec.machines[0].id: makes the certificate identity") for p in problems)


def test_opcua_security_must_be_consistent(demo_data: DemoData) -> None:
    data = demo_data()
    data["spec"]["machines"][0]["opcua"] = {"securityPolicy": "Basic256Sha256", "securityMode": "None"}
    assert _problems(data) == {
        "spec.machines[0].opcua: securityPolicy and securityMode must both be None or both be set"
    }


def test_a_secured_machine_must_trust_some_server(demo_data: DemoData) -> None:
    data = demo_data()
    secured = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}
    data["spec"]["machines"][0]["opcua"] = {**secured, "serverTrust": {"lineCa": False}}
    data["spec"]["machines"][0]["reconnect"] = {"initialDelay": 10, "maxDelay": 2}
    assert _problems(data) == {
        "spec.machines[0].opcua.serverTrust: trusts no server: keep lineCa, list certificates, or set acceptUnknown",
        "spec.machines[0].reconnect.maxDelay: must be at least initialDelay",
    }
    data["spec"]["machines"][0]["opcua"]["serverTrust"] = {"lineCa": False, "acceptUnknown": True}
    data["spec"]["machines"][0]["reconnect"] = {"maxDelay": 2}
    parse_plantline(data)
    forged = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    data["spec"]["machines"][0]["opcua"]["serverTrust"] = {"certificates": [forged]}
    (problem,) = _problems(data)
    assert problem.startswith("spec.machines[0].opcua.serverTrust.certificates[0]: not a PEM certificate")


def test_a_primary_host_is_an_identity_of_the_line(demo_data: DemoData) -> None:
    data = demo_data()
    assert "site1-line1-host" not in identities(parse_plantline(data).spec)
    data["spec"]["primaryHostId"] = "scada"
    assert identities(parse_plantline(data).spec)["site1-line1-host"] == "spec.primaryHostId"


def test_a_connector_named_like_a_role_would_take_its_identity(demo_data: DemoData) -> None:
    data = demo_data()  # perMachine: a connector per machine, named after it
    data["spec"]["machines"][1]["id"] = "host"
    assert _problems(data) == {
        "spec.machines[1].id: 'host' is reserved with grouping perMachine: its connector's certificate "
        "identity would be the line's host identity site1-line1-host"
    }
    data = demo_data()
    data["spec"]["connectors"] = {"grouping": "perLine"}  # one connector, named after the line
    data["spec"]["line"] = "broker"
    assert _problems(data) == {
        "spec.line: 'broker' is reserved with grouping perLine: its connector's certificate "
        "identity would be the line's broker identity site1-broker-broker"
    }
    data["spec"]["connectors"] = {"grouping": "perProtocol"}
    assert parse_plantline(data).spec.line == "broker"


@pytest.mark.parametrize("address", ["1.2.3", "0.0.0.0.0", "fe80::1::2", "256.0.0.1"])
def test_listen_address_is_an_ip_address(demo_data: DemoData, address: str) -> None:
    data = demo_data()
    data["spec"]["broker"]["listenAddress"] = address
    assert _problems(data) == {f"spec.broker.listenAddress: {address!r} is not an IPv4 or IPv6 address"}


def test_not_a_mapping_and_wrong_kind(demo_data: DemoData) -> None:
    assert _problems(["x"]) == {"expected a mapping with apiVersion, kind, metadata and spec"}
    data = copy.deepcopy(demo_data())
    data["kind"] = "Line"
    assert _problems(data) == {"kind: Input should be 'PlantLine'"}


def test_metadata_ignores_server_fields(demo_data: DemoData) -> None:
    data = demo_data()
    data["metadata"] |= {"uid": "abc", "resourceVersion": "7", "generation": 3}
    assert parse_plantline(data).metadata.generation == 3


def test_status_conditions() -> None:
    status = PlantLineStatus.model_validate(
        {
            "observedGeneration": 3,
            "machineCount": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "CertificatesPending",
                    "message": "waiting for 5 certificates",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": 3,
                }
            ],
        }
    )
    assert status.conditions[0].type == "Ready"
    with pytest.raises(ValueError, match="reason"):
        Condition.model_validate(
            {"type": "Ready", "status": "True", "reason": "not camel", "lastTransitionTime": "2025-01-01T00:00:00Z"}
        )
    with pytest.raises(ValueError, match="type"):
        Condition.model_validate(
            {"type": "Happy", "status": "True", "reason": "Fine", "lastTransitionTime": "2025-01-01T00:00:00Z"}
        )
