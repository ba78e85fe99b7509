"""The cloud stack's Pulumi program: `pulumi config` -> `CloudArgs` -> `IngestionHubs`, and its outputs.

`equipment` is a JSON list of `{"name": ..., "expectedMBps": ...}` (one per equipment type of the
site's lines); stacks/README.md lists every key with its default.
"""

from __future__ import annotations

from typing import Any

import pulumi

from plantline.stacks.cloud.args import CONSUMERS, CloudArgs
from plantline.stacks.cloud.component import IngestionHubs
from plantline.stacks.sizing import TIERS, EquipmentType, SizingError, Tier


def equipment_types(value: Any) -> tuple[EquipmentType, ...]:
    """Return the equipment types of config `equipment`, or say what is wrong with it."""
    if not isinstance(value, list):
        raise SizingError('config equipment: expected a JSON list such as [{"name": "packaging", "expectedMBps": 2}]')
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SizingError(f"config equipment: {item!r} has no name")
        out.append(EquipmentType(item["name"], float(item.get("expectedMBps", 1.0))))
    return tuple(out)


def tier(value: str | None) -> Tier:
    """Return the tier config `tier` names (Standard by default)."""
    for known in TIERS:
        if value in (None, known):
            return known
    raise SizingError(f"config tier: expected one of {', '.join(TIERS)}, got {value!r}")


def consumers(value: Any) -> tuple[str, ...]:
    """Return the consumers of config `consumers` (analytics and lakehouse when unset)."""
    if value is None:
        return CONSUMERS
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SizingError('config consumers: expected a JSON list of names such as ["analytics", "lakehouse"]')
    return tuple(value)


def read_args(config: pulumi.Config) -> CloudArgs:
    """Return the cloud stack's arguments from its config."""
    public = config.get_bool("publicNetworkAccess")
    return CloudArgs(
        location=config.require("location"),
        equipment=equipment_types(config.require_object("equipment")),
        tier=tier(config.get("tier")),
        capacity=config.get_int("capacity") or 1,
        public_network_access=True if public is None else public,
        consumers=consumers(config.get_object("consumers")),
        resource_group=config.get("resourceGroup"),
        namespace_name=config.get("namespaceName"),
        tags=dict(config.get_object("tags") or {}),
    )


def main(name: str = "plantline") -> IngestionHubs:
    """Run the cloud stack: read the config, create the component, export its outputs."""
    hubs = IngestionHubs(name, read_args(pulumi.Config()))
    pulumi.export("namespaceName", hubs.namespace_name)
    pulumi.export("kafkaEndpoint", hubs.kafka_endpoint)
    pulumi.export("hubs", hubs.hubs)
    pulumi.export("bridgeConnectionString", hubs.bridge_connection_string)
    return hubs
