"""The CIP quality table, endpoints, Logix addresses, pycomm3 definitions and read plans, without a PLC."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pycomm3.cip.data_types import DINT, REAL, STRING
from pycomm3.tag import Tag as Pycomm3Tag

from plantline.connectors.addressing.cip import CipEndpoint, LogixAddress, parse_cip_endpoint, parse_logix_address
from plantline.connectors.config import Tag
from plantline.connectors.quality import cip_describe, cip_quality
from plantline.connectors.samples import Quality
from plantline.connectors.sources.cip import (
    CipRead,
    cip_status_of,
    logix_tag_definitions,
    plan_cip_reads,
    reading_of,
)


def tags(*specs: tuple[str, str]) -> list[Tag]:
    return [Tag(signal=f"process.t{i}", address=a, datatype=d) for i, (a, d) in enumerate(specs)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "quality"),
    [(0x00, Quality.GOOD), (0x06, Quality.UNCERTAIN), (0x04, Quality.BAD), (0x05, Quality.BAD), (0x08, Quality.BAD),
     (0x1E, Quality.BAD), (0xFF, Quality.BAD), (0x42, Quality.BAD)],
)  # fmt: skip
def test_cip_statuses_map_to_quality(status: int, quality: Quality) -> None:
    assert cip_quality(status) is quality


def test_cip_statuses_read_as_text() -> None:
    assert cip_describe(0x05) == "CIP general status 0x05: path destination unknown (no such tag, or no such element)"
    assert "partial transfer" in cip_describe(0x06)
    assert "unknown general status" in cip_describe(0x42)
    with pytest.raises(ValueError, match="a CIP general status is a byte"):
        cip_quality(256)


@pytest.mark.parametrize(
    ("endpoint", "expected", "path"),
    [
        ("cip://10.0.0.9", CipEndpoint("10.0.0.9", 44818, None), "10.0.0.9:44818"),
        ("cip://127.0.0.1:44999", CipEndpoint("127.0.0.1", 44999, None), "127.0.0.1:44999"),
        ("cip://plc:44818/2", CipEndpoint("plc", 44818, 2), "plc:44818/2"),
        ("cip://plc/", CipEndpoint("plc", 44818, None), "plc:44818"),
    ],
)
def test_cip_endpoints_parse(endpoint: str, expected: CipEndpoint, path: str) -> None:
    assert parse_cip_endpoint(endpoint) == expected
    assert expected.path == path


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Filler_state_run", LogixAddress("Filler_state_run")),
        ("Counts[3]", LogixAddress("Counts", 3)),
        ("Program:Main.Count", LogixAddress("Program:Main.Count")),
        ("Program:Main.Counts[0]", LogixAddress("Program:Main.Counts", 0)),
        ("_x9", LogixAddress("_x9")),
    ],
)
def test_logix_addresses_parse(address: str, expected: LogixAddress) -> None:
    assert parse_logix_address(address) == expected
    assert str(expected) == address


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("Word.3", "bits of integers are not supported"),
        ("Matrix[1,2]", "multi-dimensional array elements are not supported"),
        ("Udt.Member", "structure members are not supported"),
        ("Program:Main.Udt.Member", "structure members are not supported"),
        ("9lives", "not a Logix tag name"),
        ("Counts[-1]", "not a Logix tag name"),
        ("DB10.DBW2", "structure members are not supported"),
        ("", "not a Logix tag name"),
    ],
)
def test_bad_logix_addresses_say_why(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(address))) as caught:
        parse_logix_address(address)
    assert message in str(caught.value)


def test_definitions_come_from_the_declared_datatypes() -> None:
    definitions = logix_tag_definitions(
        tags(("Run", "bool"), ("Temp", "float"), ("Counts[2]", "int32"), ("Counts[7]", "int32"), ("Name", "string"))
    )
    assert set(definitions) == {"Run", "Temp", "Counts", "Name"}
    assert definitions["Temp"]["data_type"] == "REAL"
    assert definitions["Temp"]["type_class"] is REAL
    assert definitions["Temp"]["dim"] == 0
    assert definitions["Name"]["type_class"] is STRING
    counts: dict[str, Any] = definitions["Counts"]
    assert (counts["data_type"], counts["dim"], counts["dimensions"]) == ("DINT", 1, [8, 0, 0])
    assert counts["type_class"].element_type is DINT
    assert all(d["instance_id"] is None and d["tag_type"] == "atomic" for d in definitions.values())


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            (("Count", "int32"), ("Count", "int16")),
            r"tags\[1\]\.address: Count is declared as DINT by tags\[0\] and as INT",
        ),
        ((("Count", "int32"), ("Count[1]", "int32")), r"declared as DINT by tags\[0\] and as DINT\[\] here"),
        ((("Ok", "int32"), ("When", "datetime")), r"tags\[1\]\.datatype: 'datetime' has no Logix type"),
        ((("Udt.Member", "int32"),), r"tags\[0\]\.address: 'Udt.Member': structure members"),
    ],
)
def test_definitions_refuse_what_cannot_be_read(specs: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logix_tag_definitions(tags(*specs))


def test_close_array_elements_are_read_as_one_run() -> None:
    addresses = [parse_logix_address(a) for a in ["A", "Arr[0]", "Arr[1]", "Arr[5]", "Arr[40]", "B", "A", "Other[3]"]]
    plan = plan_cip_reads(addresses, range(len(addresses)), max_gap=8)
    assert plan == [
        CipRead("A", ((0, -1), (6, -1))),
        CipRead("B", ((5, -1),)),
        CipRead("Arr[0]{6}", ((1, 0), (2, 1), (3, 5))),
        CipRead("Arr[40]", ((4, -1),)),
        CipRead("Other[3]", ((7, -1),)),
    ]
    unmerged = plan_cip_reads(addresses, range(len(addresses)), max_gap=None)
    assert [r.request for r in unmerged] == ["A", "B", "Arr[0]", "Arr[1]", "Arr[5]", "Arr[40]", "Other[3]"]
    isolated = plan_cip_reads(addresses, range(len(addresses)), isolated={2})
    assert [r.request for r in isolated] == ["A", "B", "Arr[0]", "Arr[1]", "Arr[5]", "Arr[40]", "Other[3]"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("Destination unknown, class unsupported, instance undefined or structure element undefined "
         "(see extended status) - Extended status out of memory  (05, 00)", 0x05),
        ("General Error (see extended status) - Access beyond end of the object  (ff, 2105)", 0xFF),
        ("IOI syntax error. A syntax error was detected decoding the Request Path (see extended status)", 0x04),
        ("Insufficient Packet Space", 0x06),
        ("Unknown Error (2b)", 0x2B),
        ("failed to receive reply", None),
        ("Invalid tag request - KeyError(8)", None),
    ],
)  # fmt: skip
def test_pycomm3_error_texts_map_back_to_the_general_status(error: str, status: int | None) -> None:
    assert cip_status_of(error) == status


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        ("Destination unknown, class unsupported, instance undefined or structure element undefined "
         "(see extended status) - Extended status out of memory  (05, 00)",
         "CIP general status 0x05: path destination unknown (no such tag, or no such element)"),
        ("IOI syntax error. A syntax error was detected decoding the Request Path (see extended status) "
         "- Extended status out of memory  (04, 00)",
         "CIP general status 0x04: path segment error (the tag name or request path does not parse)"),
        ("General Error (see extended status) - Access beyond end of the object  (ff, 2105)",
         "CIP general status 0xFF: general error (Logix: see the extended status, e.g. access beyond the end of "
         "the object); Access beyond end of the object (ff, 2105)"),
    ],
)  # fmt: skip
def test_a_refused_tag_is_told_in_the_projects_words(error: str, problem: str) -> None:
    reading = reading_of(3, "int32", Pycomm3Tag("Nope", None, None, error), -1)
    assert reading.problem == problem
    assert "out of memory" not in (reading.problem or "")


def test_readings_from_pycomm3_replies() -> None:
    good = reading_of(1, "int32", Pycomm3Tag("Count", 42, "DINT", None), -1)
    assert (good.tag, good.value, good.quality, good.code) == (1, 42, Quality.GOOD, 0)
    element = reading_of(2, "float", Pycomm3Tag("Arr", [1.0, 2.5, 3.0], "REAL[3]", None), 1)
    assert (element.value, element.quality) == (2.5, Quality.GOOD)
    widened = reading_of(2, "double", Pycomm3Tag("L", 3, "LREAL", None), -1)
    assert widened.value == 3.0
    assert isinstance(widened.value, float)
    partial = reading_of(3, "int32", Pycomm3Tag("Big", None, None, "Insufficient Packet Space"), -1)
    assert (partial.value, partial.quality, partial.code) == (None, Quality.BAD, 0x06)  # no value: bad
    partial = reading_of(3, "int32", Pycomm3Tag("Big", 7, "DINT", "Insufficient Packet Space"), -1)
    assert (partial.value, partial.quality, partial.code) == (7, Quality.UNCERTAIN, 0x06)
    missing = reading_of(3, "int32", Pycomm3Tag("Nope", None, None, "Destination unknown, class unsupported, "
        "instance undefined or structure element undefined (see extended status)"), -1)  # fmt: skip
    assert (missing.value, missing.quality, missing.code) == (None, Quality.BAD, 0x05)
    unknown = reading_of(3, "int32", Pycomm3Tag("X", None, None, "failed to parse reply"), -1)
    assert (unknown.quality, unknown.code, unknown.problem) == (Quality.BAD, None, "pycomm3: failed to parse reply")
    wrong = reading_of(3, "bool", Pycomm3Tag("X", 1, "DINT", None), -1)
    assert wrong.quality is Quality.BAD
    assert wrong.problem is not None
    assert "a BOOL should be bool" in wrong.problem
