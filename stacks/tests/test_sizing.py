"""The ingestion plan's sizing rules: hub names and partition counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantline.stacks.sizing import MAX_PARTITIONS, TIERS, SizingError, Tier, hub_name, partition_count


@pytest.mark.parametrize(
    ("equipment", "hub"),
    [
        ("packaging", "packaging-equipment"),
        ("Packaging", "packaging-equipment"),
        ("Filling Line 2", "filling-line-2-equipment"),
        ("  CNC/milling  ", "cnc-milling-equipment"),
    ],
)
def test_hub_names_derive_from_the_equipment_type(equipment: str, hub: str) -> None:
    assert hub_name(equipment) == hub


def test_a_type_without_letters_names_no_hub() -> None:
    with pytest.raises(SizingError, match="no letter or digit"):
        hub_name("--")


def test_long_names_fit_event_hubs_limit() -> None:
    name = hub_name("x" * 400)
    assert len(name) == 256
    assert name.endswith("-equipment")


@pytest.mark.parametrize(
    ("tier", "capacity", "mb_per_s", "partitions"),
    [
        ("Standard", 1, 0.0, 1),
        ("Standard", 1, 0.4, 1),
        ("Standard", 1, 1.0, 1),
        ("Standard", 1, 1.01, 2),
        ("Standard", 40, 0.5, 2),  # 40 units / 20
        ("Standard", 40, 7, 7),
        ("Standard", 40, 1000, 32),
        ("Premium", 16, 0.5, 1),
        ("Premium", 16, 64, 64),
        ("Premium", 16, 1000, 100),
    ],
)
def test_partitions_follow_the_plans_rule(tier: Tier, capacity: int, mb_per_s: float, partitions: int) -> None:
    assert partition_count(tier, capacity, mb_per_s) == partitions


@given(st.sampled_from(TIERS), st.data(), st.floats(min_value=0, max_value=10_000))
def test_partitions_stay_within_the_tier_and_grow_with_the_traffic(tier: Tier, data: st.DataObject, mb: float) -> None:
    from plantline.stacks.sizing import CAPACITY_CHOICES

    capacity = data.draw(st.sampled_from(CAPACITY_CHOICES[tier]))
    count = partition_count(tier, capacity, mb)
    assert 1 <= count <= MAX_PARTITIONS[tier]
    assert partition_count(tier, capacity, mb * 2) >= count


@pytest.mark.parametrize("mb_per_s", [-1.0, float("nan"), float("inf")])
def test_a_nonsense_throughput_is_refused(mb_per_s: float) -> None:
    with pytest.raises(SizingError, match="finite, positive"):
        partition_count("Standard", 1, mb_per_s)
