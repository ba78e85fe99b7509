"""Report by exception for polled sources: changes, deadbands, and the scaling of raw values."""

from __future__ import annotations

from typing import Any

from plantline.connectors.config import Device, Tag
from plantline.connectors.samples import Quality, scaled
from plantline.connectors.sources.polling import ChangeFilter, PollGroup, poll_groups


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
    assert scaled(7, 1.0, 0.0) == 7
    assert isinstance(scaled(7, 1.0, 0.0), int)
    assert scaled(6812, 0.01, 0.0) == 68.12
    assert scaled(3, 2.0, -1.0) == 5.0
    assert scaled(True, 0.5, 0.0) is True
    assert scaled("x", 0.5, 0.0) == "x"


def test_a_scaled_integer_has_the_decimals_its_scale_implies() -> None:
    # Binary floating point makes -1233 * 0.1 into -123.30000000000001; a count has no such digits.
    assert repr(scaled(-1233, 0.1, 0.0)) == "-123.3"
    assert repr(scaled(-32768, 0.01, 0.0)) == "-327.68"
    assert repr(scaled(1234, 0.1, -40.0)) == "83.4"
    assert repr(scaled(3, 0.25, 0.0)) == "0.75"
    assert repr(scaled(7, 0.1, 0.05)) == "0.75"  # the offset's decimals count too
    assert scaled(1, 1 / 3, 0.0) == 1 / 3  # a scale of no finite decimals keeps every digit
    assert scaled(12.3456, 0.1, 0.0) == 12.3456 * 0.1  # a raw float keeps the PLC's precision


def test_tags_are_grouped_by_interval() -> None:
    device = Device.model_construct(
        id="d", protocol="s7", endpoint="s7://h", sampling_interval_ms=250, tags=[tag(), tag(signal="process.y")]
    )
    assert poll_groups(device) == [PollGroup(250, (0, 1))]


def test_a_tag_with_its_own_interval_is_polled_in_its_own_group() -> None:
    tags = [
        tag(),
        tag(signal="process.slow", sampling_interval_ms=5000),
        tag(signal="process.fast", sampling_interval_ms=50),
    ]
    device = Device.model_construct(id="d", protocol="s7", endpoint="s7://h", sampling_interval_ms=250, tags=tags)
    assert poll_groups(device) == [PollGroup(50, (2,)), PollGroup(250, (0,)), PollGroup(5000, (1,))]
