"""The cloud stack's arguments: the namespace's tier and capacity, the equipment types, the consumers."""

from __future__ import annotations

from dataclasses import dataclass, field

from plantline.stacks.sizing import EquipmentType, SizingError, Tier, check_capacity, hub_name

CONSUMERS = ("analytics", "lakehouse")


@dataclass(frozen=True, slots=True)
class CloudArgs:
    """An Event Hubs namespace for one site: a hub per equipment type, a dead-letter hub, the bridge's key."""

    location: str
    equipment: tuple[EquipmentType, ...]
    tier: Tier = "Standard"
    capacity: int = 1  # throughput units (Standard) or processing units (Premium)
    public_network_access: bool = True
    consumers: tuple[str, ...] = CONSUMERS
    resource_group: str | None = None  # None: the stack creates one
    namespace_name: str | None = None  # None: Pulumi names it (globally unique, with a random suffix)
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_capacity(self.tier, self.capacity)
        if not self.equipment:
            raise SizingError("no equipment type: the namespace would hold no hub but the dead-letter one")
        names = [hub_name(e.name) for e in self.equipment]
        if len(set(names)) != len(names):
            raise SizingError(f"two equipment types name the same hub: {', '.join(sorted(names))}")
        if not self.consumers:
            raise SizingError("no consumer: every hub needs a consumer group to be read")
