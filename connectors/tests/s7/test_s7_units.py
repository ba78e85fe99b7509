"""The S7 quality table, endpoint syntax and tag validation, without a PLC."""

from __future__ import annotations

from typing import Any

import pytest

from plantline.connectors.addressing.s7 import S7Endpoint, parse_s7_address, parse_s7_endpoint
from plantline.connectors.config import Device, Tag
from plantline.connectors.quality import s7_describe, s7_quality
from plantline.connectors.samples import Quality
from plantline.connectors.sources.s7 import S7Source, reading_of, s7_locations
from plantline.connectors.sources.s7_plan import TagResult


def s7_device(endpoint: str, tags: list[dict[str, Any]]) -> Device:
    # config.Device accepts only protocol "opcua" today: build it without validation.
    return Device.model_construct(
        id="press-1", protocol="s7", endpoint=endpoint, sampling_interval_ms=100, tags=[Tag(**t) for t in tags]
    )


@pytest.mark.parametrize(
    ("code", "quality"),
    [(0xFF, Quality.GOOD), (0x0A, Quality.BAD), (0x05, Quality.BAD), (0x03, Quality.BAD), (0x00, Quality.BAD),
     (0x8104, Quality.BAD), (0x8500, Quality.BAD)],
)  # fmt: skip
def test_s7_codes_map_to_quality(code: int, quality: Quality) -> None:
    assert s7_quality(code) is quality


@pytest.mark.parametrize("code", [-1, 0x10000])
def test_s7_quality_refuses_numbers_that_are_no_code(code: int) -> None:
    with pytest.raises(ValueError, match="S7 return code"):
        s7_quality(code)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0x0A, "item return code 0x0A: object does not exist"),
        (0x05, "item return code 0x05: address out of range"),
        (0x42, "item return code 0x42: unknown item return code"),
        (0x8104, "job refused, error class 0x81 (application relationship error), code 0x04"),
        (0x9901, "error class 0x99 (unknown error class), code 0x01"),
    ],
)
def test_s7_codes_read_as_text(code: int, text: str) -> None:
    assert text in s7_describe(code)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("s7://10.0.0.5", S7Endpoint("10.0.0.5", 102, 0, 1, 480)),
        ("s7://plc-1:1102", S7Endpoint("plc-1", 1102, 0, 1, 480)),
        ("s7://127.0.0.1:1102?rack=0&slot=2", S7Endpoint("127.0.0.1", 1102, 0, 2, 480)),
        ("s7://127.0.0.1/?pdu=240&rack=1&slot=0", S7Endpoint("127.0.0.1", 102, 1, 0, 240)),
    ],
)
def test_s7_endpoints_parse(endpoint: str, expected: S7Endpoint) -> None:
    assert parse_s7_endpoint(endpoint) == expected


def test_a_bad_tag_address_is_named_by_its_position() -> None:
    device = s7_device(
        "s7://127.0.0.1:1102",
        [
            {"signal": "state.run", "address": "DB1.DBX0.0", "datatype": "bool"},
            {"signal": "counter.good", "address": "DB1.DBW2", "datatype": "uint32"},
        ],
    )
    with pytest.raises(ValueError, match=r"^tags\[1\]\.address: 'DB1.DBW2': the size letter 'W'"):
        s7_locations(device)
    with pytest.raises(ValueError, match=r"^tags\[1\]\.address"):
        S7Source(device)


def test_a_source_refuses_a_device_of_another_protocol() -> None:
    device = Device.model_validate(
        {
            "id": "f",
            "protocol": "opcua",
            "endpoint": "opc.tcp://h:4840/",
            "tags": [{"signal": "state.run", "address": "ns=2;s=X", "datatype": "bool"}],
        }
    )
    with pytest.raises(ValueError, match="speaks opcua, not s7"):
        S7Source(device)


def test_readings_carry_the_code_and_say_which_db_is_missing() -> None:
    location = parse_s7_address("DB11.DBW0", "int16")
    good = reading_of(3, location, TagResult(42, None))
    assert (good.tag, good.value, good.quality, good.code) == (3, 42, Quality.GOOD, 0xFF)
    missing = reading_of(3, location, TagResult(None, 0x0A))
    assert (missing.value, missing.quality, missing.code) == (None, Quality.BAD, 0x0A)
    assert missing.problem is not None
    assert "object does not exist" in missing.problem
    assert "DB11 is not in the PLC" in missing.problem
    undecodable = reading_of(3, location, TagResult(None, None, "bad string"))
    assert (undecodable.quality, undecodable.code, undecodable.problem) == (
        Quality.BAD,
        None,
        "cannot decode: bad string",
    )
