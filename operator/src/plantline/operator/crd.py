"""The PlantLine CustomResourceDefinition, generated from the API model's JSON schema.

Kubernetes wants a structural schema (OpenAPI v3.0 subset): no `$ref`, a `type` on every node,
no `anyOf` carrying types, boolean `exclusiveMinimum`. `structural_schema` converts pydantic's
JSON schema into that form; the cross-field checks the model does in Python are mirrored as CEL
rules (`x-kubernetes-validations`) so that the API server rejects most bad specs up front.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from plantline.operator.api import GROUP, KIND, PLURAL, VERSION, PlantLine, PlantLineStatus

SINGULAR = "plantline"
SHORT_NAMES = ("pl",)

# What a tag address must look like, per protocol: a CEL-side approximation of the connectors'
# parsers (plantline.connectors.addressing); a test checks both agree on known good and bad ones.
ADDRESS_PATTERNS = {
    "opcua": r"^(ns=[0-9]+;)?(i=[0-9]+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$",
    "s7": r"^(DB[0-9]+\.DB[XBWDLS][0-9]+(\.[0-9]+)?|[IEQAM][XBWDLS]?[0-9]+(\.[0-9]+)?)$",
    "cip": r"^(Program:[A-Za-z_][A-Za-z0-9_]{0,39}\.)?[A-Za-z_][A-Za-z0-9_]{0,39}(\[[0-9]{1,9}\])?$",
}

# Keywords of JSON Schema that the structural schema keeps as they are.
_KEPT = frozenset(
    {
        "type",
        "description",
        "format",
        "enum",
        "default",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "maxProperties",
        "pattern",
        "required",
    }
)


def _cel_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Return `node` with its `$ref` inlined and an Optional's null branch dropped."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        node = {**defs[ref.rsplit("/", 1)[1]], **node}
    branches = node.pop("anyOf", None)
    if branches is not None:
        kept = [b for b in branches if b.get("type") != "null"]
        if len(kept) != 1:
            raise ValueError(f"cannot express a union of {len(kept)} schemas structurally: {branches}")
        node = {**_resolve(kept[0], defs), **node}
    return node


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT}
    if "const" in node:
        out["enum"] = [node["const"]]
    if "exclusiveMinimum" in node:
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node:
        out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if out.get("default", 0) is None:
        del out["default"]  # absent means None; a null default is not a structural default
    elif "default" in out:
        out["default"] = _without_nulls(out["default"])
    if "properties" in node:
        out["properties"] = {name: _convert(sub, defs) for name, sub in node["properties"].items()}
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(node["additionalProperties"], defs)
    if "items" in node:
        out["items"] = _convert(node["items"], defs)
    if "type" not in out:
        raise ValueError(f"schema node without a type: {node}")
    return out


def structural_schema(model: type[PlantLine] | type[PlantLineStatus]) -> dict[str, Any]:
    """Return the model's schema in Kubernetes structural form (camelCase names, inlined defs)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(schema, schema.get("$defs", {}))


def _machine_rules() -> list[dict[str, str]]:
    rules = [
        {"rule": "!has(self.opcua) || self.protocol == 'opcua'", "message": "opcua options need protocol opcua"},
    ]
    for protocol, pattern in ADDRESS_PATTERNS.items():
        rules.append(
            {
                "rule": f"self.protocol != '{protocol}' || self.tags.all(t, t.address.matches({_cel_string(pattern)}))",
                "message": f"every address of a {protocol} machine must be a {protocol} address",
            }
        )
    return rules


def _spec_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the cross-field rules; uniqueness is a list-map key, which costs no CEL budget.

    The apiserver refuses CEL rules whose estimated cost (items x length x regex) exceeds its
    budget, and the whole CRD with them: pairwise uniqueness over 64 machines x 128 tags did, so
    machine ids and tag signals are list-map keys (the error names the duplicate item).
    """
    spec = copy.deepcopy(spec)
    machines = spec["properties"]["machines"]
    machines["x-kubernetes-list-type"] = "map"
    machines["x-kubernetes-list-map-keys"] = ["id"]
    tags = machines["items"]["properties"]["tags"]
    tags["x-kubernetes-list-type"] = "map"
    tags["x-kubernetes-list-map-keys"] = ["signal"]
    machines["items"]["x-kubernetes-validations"] = _machine_rules()
    spec["properties"]["cloud"]["x-kubernetes-validations"] = [
        {
            "rule": "has(self.eventHubsNamespace) != has(self.bootstrapServers)",
            "message": "set exactly one of eventHubsNamespace and bootstrapServers",
        },
        {
            "rule": "!has(self.eventHubsNamespace) || has(self.credentialsSecretRef)",
            "message": "credentialsSecretRef: Event Hubs needs the send rule's connection string",
        },
    ]
    spec["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.primaryHostOffline) || self.primaryHostOffline != 'hold' || has(self.primaryHostId)",
            "message": "primaryHostOffline: hold applies only to a line with a primaryHostId",
        }
    ]
    return spec


def crd() -> dict[str, Any]:
    """Return the PlantLine CRD (apiextensions.k8s.io/v1) as plain data."""
    line = structural_schema(PlantLine)
    status = structural_schema(PlantLineStatus)
    root = {
        "type": "object",
        "description": "PlantLine is one production line: its machines, broker, certificates, KPIs and dashboards.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _spec_schema(line["properties"]["spec"]),
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "plantline-operator",
                "app.kubernetes.io/part-of": "plantline",
                "app.kubernetes.io/managed-by": "plantline-operator",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Machines", "type": "integer", "jsonPath": ".status.machineCount"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `plantline crd` from plantline.operator.api; do not edit by hand.\n"


def crd_yaml() -> str:
    """Return the CRD as YAML text with sorted keys (the checked-in file must equal it)."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=True, default_flow_style=False, width=120)
