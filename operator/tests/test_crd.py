"""The CRD: generated from the model, structural, with CEL rules; the checked-in file never drifts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.operator.api import PlantLineInvalid, parse_plantline
from plantline.operator.crd import ADDRESS_PATTERNS, crd, crd_yaml

CHECKED_IN = Path(__file__).resolve().parents[1] / "crds" / "plantline.dev_plantlines.yaml"
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN = ("$ref", "$defs", "definitions", "const", "title", "additionalItems", "patternProperties")

INVALID = Path(__file__).parent / "invalid"
DemoData = Callable[[], dict[str, Any]]


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _structural_problems(node: dict[str, Any], path: str) -> list[str]:
    """Return where `node` breaks Kubernetes' structural-schema rules (the subset we generate)."""
    problems = []
    unknown_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    if not node.get("type") and not unknown_ok:
        problems.append(f"{path}: no type")
    problems += [f"{path}: {key}" for key in (*_FORBIDDEN, *_JUNCTORS) if key in node]
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            problems.append(f"{path}: {key} must be a boolean in OpenAPI v3.0")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{path}: array without items")
    for name, sub in node.get("properties", {}).items():
        problems += _structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _structural_problems(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        problems += _structural_problems(node["items"], f"{path}[]")
    return problems


def test_checked_in_crd_matches_the_model() -> None:
    assert CHECKED_IN.read_text() == crd_yaml(), (
        "regenerate with: plantline crd > operator/crds/plantline.dev_plantlines.yaml"
    )


def test_output_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()
    assert yaml.safe_load(crd_yaml()) == crd()


def test_schema_is_structural() -> None:
    schema = _schema()
    assert _structural_problems(schema, "") == []
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert "x-kubernetes-preserve-unknown-fields" not in crd_yaml()


def test_names_and_version() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "plantlines.plantline.dev"
    assert spec["group"] == "plantline.dev"
    assert spec["names"] | {} == {
        "kind": "PlantLine",
        "listKind": "PlantLineList",
        "plural": "plantlines",
        "singular": "plantline",
        "shortNames": ["pl"],
    }
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "Machines", "Age"]


def test_defaults_enums_and_camel_case() -> None:
    spec = _schema()["properties"]["spec"]
    machine = spec["properties"]["machines"]["items"]
    assert machine["properties"]["protocol"]["enum"] == ["opcua", "s7", "cip"]
    assert machine["properties"]["samplingInterval"]["default"] == 1.0
    ideal = machine["properties"]["idealCycleTime"]
    assert {k: v for k, v in ideal.items() if k != "description"} == {
        "exclusiveMinimum": True,
        "minimum": 0,
        "type": "number",
    }
    assert ideal["description"].startswith("Seconds per part")  # the field's description reaches kubectl explain
    assert spec["properties"]["connectors"]["default"] == {"grouping": "perLine"}
    assert spec["properties"]["broker"]["properties"]["kind"]["enum"] == ["mosquitto", "emqx"]
    assert spec["required"] == ["site", "area", "line", "machines", "broker"]
    assert set(machine["required"]) == {"id", "protocol", "endpoint", "tags"}
    assert spec["properties"]["pki"]["default"] == {"validityDays": {}}
    status = _schema()["properties"]["status"]["properties"]
    assert status["conditions"]["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_uniqueness_is_list_map_keys_and_cel_rules_are_present() -> None:
    spec = _schema()["properties"]["spec"]
    machines = spec["properties"]["machines"]
    tags = machines["items"]["properties"]["tags"]
    assert (machines["x-kubernetes-list-type"], machines["x-kubernetes-list-map-keys"]) == ("map", ["id"])
    assert (tags["x-kubernetes-list-type"], tags["x-kubernetes-list-map-keys"]) == ("map", ["signal"])
    # Pairwise CEL uniqueness was over the cost budget; the spec's one rule is constant cost.
    assert [r["message"] for r in spec["x-kubernetes-validations"]] == [
        "primaryHostOffline: hold applies only to a line with a primaryHostId"
    ]
    machine_rules = [r["rule"] for r in machines["items"]["x-kubernetes-validations"]]
    assert any(r.startswith("self.protocol != 's7' || self.tags.all(t, t.address.matches(") for r in machine_rules)
    # CEL cost estimation needs bounds on every list and string the rules iterate over; these are
    # the bounds the real apiserver accepts (test_apiserver_crd installs the CRD as checked in).
    assert machines["maxItems"] == 64
    assert tags["maxItems"] == 128
    assert tags["items"]["properties"]["address"]["maxLength"] == 128


def _addresses(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["protocol"], t["address"]) for m in data["spec"]["machines"] for t in m["tags"]]


def test_cel_address_patterns_accept_what_the_model_accepts(demo_data: DemoData) -> None:
    for protocol, address in _addresses(demo_data()):
        assert re.fullmatch(ADDRESS_PATTERNS[protocol], address), (protocol, address)


@pytest.mark.parametrize(
    ("protocol", "address"),
    [("opcua", "DB10.DBX0.1"), ("s7", "ns=2;s=X"), ("s7", "DB10"), ("cip", "DB10.DBX0.0"), ("cip", "1abc")],
)
def test_cel_address_patterns_reject_what_the_model_rejects(protocol: str, address: str, demo_data: DemoData) -> None:
    assert not re.fullmatch(ADDRESS_PATTERNS[protocol], address)
    data = demo_data()
    machine = next(m for m in data["spec"]["machines"] if m["protocol"] == protocol)
    machine["tags"][0]["address"] = address
    with pytest.raises(PlantLineInvalid):
        parse_plantline(data)


def test_invalid_fixtures_exist() -> None:
    assert len(list(INVALID.glob("*.yaml"))) >= 8
