"""Report by exception for polled sources: changes, deadbands, and the scaling of raw values."""

from __future__ import annotations

from typing import Any

from plantline.connectors.config import Device, Tag
from plantline.connectors.samples import Quality
from plantline.connectors.sources.polling import ChangeFilter, PollGroup, poll_groups, scaled


def tag(**fields: Any) -> Tag:
    return Tag(**{"signal": "process.x", "address": "MW0", "datatype": "int16", **fields})


def test_the_first_reading_and_every_change_are_reported() -> None:
    changes = ChangeFilter([tag()])
    assert changes.changed(0, 5, Quality.GOOD, 0xFF)
    assert not changes.changed(0, 5, Quality.GOOD, 0xFF)
    assert changes.changed(0, 6, Quality.GOOD, 0xFF)
    assert changes.changed(0, None, Quality.BAD, 0x0A)  # the value went bad
    assert not changes.changed(0, None, Quality.BAD, 0x0A)
    assert changes.changed(0, None, Quality.BAD, 0x05)  # another reason
    assert changes.changed(0, 6, Quality.GOOD, 0xFF)  # back
    changes.reset()  # a new connection
    assert changes.changed(0, 6, Quality.GOOD, 0xFF)


def test_a_change_of_type_is_a_change() -> None:
    changes = ChangeFilter([tag()])
    assert changes.changed(0, 1, Quality.GOOD, 0)
    assert changes.changed(0, True, Quality.GOOD, 0)
    assert changes.changed(0, 1.0, Quality.GOOD, 0)


def test_an_absolute_deadband_holds_back_small_moves_from_the_last_reported_value() -> None:
    changes = ChangeFilter([tag(deadband={"kind": "absolute", "value": 0.5})])
    assert changes.changed(0, 10.0, Quality.GOOD, 0)
    assert not changes.changed(0, 10.4, Quality.GOOD, 0)
    assert not changes.changed(0, 10.5, Quality.GOOD, 0)  # not more than the deadband
    assert changes.changed(0, 10.6, Quality.GOOD, 0)
    assert not changes.changed(0, 10.2, Quality.GOOD, 0)  # compared with 10.6, the last reported
    assert changes.changed(0, 10.0, Quality.GOOD, 0)


def test_a_percent_deadband_is_not_applied() -> None:
    changes = ChangeFilter([tag(deadband={"kind": "percent", "value": 50})])
    assert changes.changed(0, 10, Quality.GOOD, 0)
    assert changes.changed(0, 11, Quality.GOOD, 0)


def test_values_are_scaled_and_counters_stay_integers() -> None:
    assert scaled(tag(), 7) == 7
    assert isinstance(scaled(tag(), 7), int)
    assert scaled(tag(scale=0.01), 6812) == 68.12
    assert scaled(tag(scale=2.0, offset=-1.0), 3) == 5.0
    assert scaled(tag(scale=0.5), True) is True
    assert scaled(tag(scale=0.5), "x") == "x"


def test_tags_are_grouped_by_interval() -> None:
    device = Device.model_construct(
        id="d", protocol="s7", endpoint="s7://h", sampling_interval_ms=250, tags=[tag(), tag(signal="process.y")]
    )
    assert poll_groups(device) == [PollGroup(250, (0, 1))]
