"""The Event Hubs sizing rules of the plant's ingestion plan: hub names, partitions, tier limits.

Pure: the cloud stack and its tests read these, and so does stacks/README.md's table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Tier = Literal["Standard", "Premium"]
TIERS: tuple[Tier, ...] = ("Standard", "Premium")
# Azure's quotas: partitions per event hub, and the namespace's capacity (throughput units on
# Standard, processing units on Premium, which come in these sizes only).
MAX_PARTITIONS: dict[Tier, int] = {"Standard": 32, "Premium": 100}
CAPACITY_CHOICES: dict[Tier, tuple[int, ...]] = {
    "Standard": tuple(range(1, 41)),
    "Premium": (1, 2, 4, 8, 16),
}
THROUGHPUT_UNITS_PER_PARTITION = 20  # the plan's rule: one partition per 20 units, at least
RETENTION_HOURS = 7 * 24  # seven days: the longest Standard keeps, and the plan's replay window
HUB_SUFFIX = "-equipment"
DEAD_LETTER_HUB = "dead-letter"
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
_MAX_HUB_NAME = 256


class SizingError(ValueError):
    """An argument the tier cannot take (capacity, throughput)."""


@dataclass(frozen=True, slots=True)
class EquipmentType:
    """One kind of equipment the lines send: its name and the traffic expected of all its lines."""

    name: str
    expected_mb_per_s: float = 1.0


def hub_name(equipment: str) -> str:
    """Return the Event Hub of an equipment type: `Packaging` -> `packaging-equipment`."""
    stem = _NOT_ALLOWED.sub("-", equipment.lower()).strip("-")
    if not stem:
        raise SizingError(f"equipment type {equipment!r} has no letter or digit to name a hub after")
    return stem[: _MAX_HUB_NAME - len(HUB_SUFFIX)].rstrip("-") + HUB_SUFFIX


def check_capacity(tier: Tier, capacity: int) -> int:
    """Return `capacity` when the tier offers it (1-40 throughput units; 1, 2, 4, 8 or 16 processing units)."""
    if tier not in TIERS:
        raise SizingError(f"tier {tier!r}: expected one of {', '.join(TIERS)}")
    if capacity not in CAPACITY_CHOICES[tier]:
        choices = CAPACITY_CHOICES[tier]
        raise SizingError(f"{tier} offers a capacity of {choices[0]}..{choices[-1]}, not {capacity}")
    return capacity


def partition_count(tier: Tier, capacity: int, expected_mb_per_s: float) -> int:
    """Return a hub's partitions: max(capacity / 20, expected MB/s), rounded up, clamped to 1..the tier's limit.

    A partition takes about 1 MB/s of ingress, so the expected traffic sets the floor; the
    namespace's capacity, one partition per 20 units, keeps a large namespace's hubs wide enough
    to use it. Partitions cannot be reduced later, hence the rounding up.
    """
    check_capacity(tier, capacity)
    if expected_mb_per_s < 0 or not math.isfinite(expected_mb_per_s):
        raise SizingError(f"expected throughput {expected_mb_per_s} MB/s is not a finite, positive number")
    wanted = max(math.ceil(capacity / THROUGHPUT_UNITS_PER_PARTITION), math.ceil(expected_mb_per_s))
    return min(max(wanted, 1), MAX_PARTITIONS[tier])
