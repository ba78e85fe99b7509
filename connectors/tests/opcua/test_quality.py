"""The OPC UA quality table: StatusCode severity bits -> good / uncertain / bad."""

from __future__ import annotations

import pytest
from asyncua.ua.status_codes import StatusCodes

from plantline.connectors.quality import opcua_quality
from plantline.connectors.samples import Quality

# Named codes with their values from OPC UA Part 6 (StatusCode.csv), so the table is checked
# against the spec's numbers and not only against asyncua's copy of them.
NAMED = [
    ("Good", 0x0000_0000, Quality.GOOD),
    ("GoodOverload", 0x002F_0000, Quality.GOOD),
    ("GoodClamped", 0x0030_0000, Quality.GOOD),
    ("GoodLocalOverride", 0x0096_0000, Quality.GOOD),
    ("Uncertain", 0x4000_0000, Quality.UNCERTAIN),
    ("UncertainLastUsableValue", 0x4090_0000, Quality.UNCERTAIN),
    ("UncertainSensorNotAccurate", 0x4093_0000, Quality.UNCERTAIN),
    ("UncertainEngineeringUnitsExceeded", 0x4094_0000, Quality.UNCERTAIN),
    ("UncertainInitialValue", 0x4092_0000, Quality.UNCERTAIN),
    ("Bad", 0x8000_0000, Quality.BAD),
    ("BadCommunicationError", 0x8005_0000, Quality.BAD),
    ("BadNodeIdUnknown", 0x8034_0000, Quality.BAD),
    ("BadNotConnected", 0x808A_0000, Quality.BAD),
    ("BadDeviceFailure", 0x808B_0000, Quality.BAD),
    ("BadSensorFailure", 0x808C_0000, Quality.BAD),
    ("BadOutOfService", 0x808D_0000, Quality.BAD),
    ("BadWaitingForInitialData", 0x8032_0000, Quality.BAD),
    ("BadTimeout", 0x800A_0000, Quality.BAD),
]


@pytest.mark.parametrize(("name", "code", "quality"), NAMED, ids=[n for n, _, _ in NAMED])
def test_named_status_codes(name: str, code: int, quality: Quality) -> None:
    assert getattr(StatusCodes, name) == code  # our number is the spec's (and asyncua's)
    assert opcua_quality(code) is quality


def test_info_bits_do_not_change_quality() -> None:
    overflow = 0x0000_0480  # InfoType DataValue + Overflow: a monitored-item queue discarded values
    assert opcua_quality(StatusCodes.Good | overflow) is Quality.GOOD
    assert opcua_quality(StatusCodes.UncertainLastUsableValue | overflow) is Quality.UNCERTAIN
    assert opcua_quality(StatusCodes.BadSensorFailure | overflow) is Quality.BAD


def test_reserved_severity_is_bad() -> None:
    # Part 4, 7.39: severity 11 is reserved and "shall be treated as Bad".
    assert opcua_quality(0xC000_0000) is Quality.BAD
    assert opcua_quality(0xFFFF_FFFF) is Quality.BAD


@pytest.mark.parametrize("code", [-1, 0x1_0000_0000])
def test_a_number_that_is_no_uint32_is_refused(code: int) -> None:
    with pytest.raises(ValueError, match="UInt32"):
        opcua_quality(code)
