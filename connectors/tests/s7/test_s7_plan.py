"""S7 read planning: merged ranges, pieces that fit the PDU (240/480/960), and the Read Var codec."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantline.connectors.addressing.s7 import S7Location, parse_s7_address
from plantline.connectors.sources.s7_plan import (
    MAX_ITEMS,
    ItemResult,
    Job,
    Piece,
    ReadPlan,
    S7ResponseError,
    TagResult,
    decode_read_response,
    encode_read_request,
    failed_members,
    max_item_data,
    plan_reads,
    take_values,
)

PDUS = [240, 480, 960]


def loc(address: str, datatype: str = "uint8") -> S7Location:
    return parse_s7_address(address, datatype)


def check_fits(plan: ReadPlan) -> None:
    """Every job and its answer fit the PDU, and every span is read exactly once, in order."""
    for job in plan.jobs:
        assert 1 <= len(job.pieces) <= MAX_ITEMS
        assert job.request_size() <= plan.pdu_size
        assert job.response_size() <= plan.pdu_size
    covered: dict[int, list[Piece]] = {}
    for job in plan.jobs:
        for piece in job.pieces:
            covered.setdefault(piece.span, []).append(piece)
    assert sorted(covered) == list(range(len(plan.spans)))
    for index, span in enumerate(plan.spans):
        pieces = covered[index]
        assert pieces[0].start == span.start
        assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
        assert pieces[-1].end == span.end
    members = sorted(m for span in plan.spans for m in span.members)
    assert members == list(range(len(plan.locations)))


@pytest.mark.parametrize("pdu", PDUS)
def test_one_item_carries_at_most_pdu_minus_18_bytes(pdu: int) -> None:
    assert max_item_data(pdu) == pdu - 18
    plan = plan_reads([loc("DB1.DBS0.254", "string")], pdu_size=pdu)  # 256 bytes
    check_fits(plan)
    assert [len(job.pieces) for job in plan.jobs] == ([1, 1] if pdu == 240 else [1])


@pytest.mark.parametrize(
    ("pdu", "pieces"),
    [
        (240, [222, 222, 222, 222, 112]),
        (480, [462, 462, 76]),
        (960, [942, 58]),
    ],
)
def test_a_1000_byte_range_is_split_to_the_pdu(pdu: int, pieces: list[int]) -> None:
    plan = plan_reads([loc("DB10.DBB0"), loc("DB10.DBB999")], pdu_size=pdu, max_gap=1000)
    check_fits(plan)
    assert len(plan.spans) == 1
    assert plan.spans[0].length == 1000
    assert [p.length for job in plan.jobs for p in job.pieces] == pieces
    assert len(plan.jobs) == len(pieces)  # each piece fills its job


def test_neighbours_merge_when_the_gap_is_small() -> None:
    locations = [
        loc("DB10.DBW0", "int16"),
        loc("DB10.DBD2", "float"),
        loc("DB10.DBX6.3", "bool"),
        loc("DB10.DBW30", "int16"),  # 23 bytes after the end of the range: a range of its own
        loc("DB11.DBW0", "int16"),  # another DB
        loc("MW0", "int16"),  # another area
        loc("DB10.DBB8"),  # out of order, but inside the gap
    ]
    plan = plan_reads(locations, pdu_size=480, max_gap=16)
    check_fits(plan)
    spans = {(s.area, s.db, s.start, s.length): s.members for s in plan.spans}
    assert spans == {
        (0x83, 0, 0, 2): (5,),
        (0x84, 10, 0, 9): (0, 1, 2, 6),
        (0x84, 10, 30, 2): (3,),
        (0x84, 11, 0, 2): (4,),
    }
    assert len(plan.jobs) == 1


def test_without_merging_every_tag_is_a_range_and_one_item_per_job_is_possible() -> None:
    locations = [loc(f"DB1.DBW{2 * i}", "int16") for i in range(30)]
    merged = plan_reads(locations, pdu_size=480)
    assert len(merged.spans) == 1
    assert len(merged.jobs) == 1
    separate = plan_reads(locations, pdu_size=480, max_gap=None)
    check_fits(separate)
    assert len(separate.spans) == 30
    assert [len(job.pieces) for job in separate.jobs] == [20, 10]  # at most 20 items per job
    naive = plan_reads(locations, pdu_size=480, max_gap=None, max_items=1)
    assert len(naive.jobs) == 30


def test_a_240_pdu_job_holds_at_most_19_items() -> None:
    locations = [loc(f"DB1.DBB{10 * i}") for i in range(40)]
    plan = plan_reads(locations, pdu_size=240, max_gap=None)
    check_fits(plan)
    assert max(len(job.pieces) for job in plan.jobs) == 19  # 12 + 12 * 19 = 240


def test_isolated_tags_are_not_merged() -> None:
    locations = [loc("DB1.DBW0", "int16"), loc("DB1.DBW2", "int16"), loc("DB1.DBW4", "int16")]
    plan = plan_reads(locations, pdu_size=480, isolated={1})
    assert [s.members for s in plan.spans] == [(0,), (1,), (2,)]
    plan = plan_reads(locations, pdu_size=480, isolated={0})
    assert [s.members for s in plan.spans] == [(0,), (1, 2)]


def test_bad_planning_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="pdu_size must be >= 64"):
        plan_reads([loc("MB0")], pdu_size=32)
    with pytest.raises(ValueError, match=r"max_items must be within 1\.\.20"):
        plan_reads([loc("MB0")], pdu_size=480, max_items=21)
    with pytest.raises(ValueError, match="max_gap must be >= 0"):
        plan_reads([loc("MB0")], pdu_size=480, max_gap=-1)


_sizes = st.sampled_from(
    [("B", "uint8"), ("W", "int16"), ("D", "float"), ("L", "double"), ("S", "string"), ("X", "bool")]
)


@st.composite
def locations(draw: st.DrawFn) -> list[S7Location]:
    out = []
    for _ in range(draw(st.integers(1, 60))):
        letter, datatype = draw(_sizes)
        db = draw(st.sampled_from([1, 2, 300]))
        byte = draw(st.integers(0, 3000))
        extra = (
            f".{draw(st.integers(0, 7))}"
            if letter == "X"
            else (f".{draw(st.integers(1, 254))}" if letter == "S" else "")
        )
        out.append(parse_s7_address(f"DB{db}.DB{letter}{byte}{extra}", datatype))
    return out


@settings(max_examples=200, deadline=None)  # a pure planner: under CI load one example can take over 200 ms
@given(locations(), st.sampled_from(PDUS), st.sampled_from([None, 0, 16, 200]))
def test_every_plan_fits_its_pdu_and_covers_every_tag(
    locations: list[S7Location], pdu: int, max_gap: int | None
) -> None:
    plan = plan_reads(locations, pdu_size=pdu, max_gap=max_gap)
    check_fits(plan)
    for span in plan.spans:
        for member in span.members:
            assert span.start <= locations[member].start
            assert locations[member].end <= span.end


# -- the Read Var codec -------------------------------------------------------------------------


def test_a_read_request_is_encoded_as_s7_any_items() -> None:
    job = Job((Piece(0, 0x84, 10, 4, 3), Piece(1, 0x83, 0, 1, 2)))
    pdu = encode_read_request(0x1234, job)
    assert pdu.hex(" ") == (
        "32 01 00 00 12 34 00 1a 00 00"  # job header: PDU ref 0x1234, 26 bytes of parameters
        " 04 02"  # Read Var, two items
        " 12 0a 10 02 00 03 00 0a 84 00 00 20"  # BYTE x3 of DB10 from bit address 32 (byte 4)
        " 12 0a 10 02 00 02 00 00 83 00 00 08"  # BYTE x2 of M from byte 1
    )
    assert len(pdu) == job.request_size()


def _answer(ref: int, items: bytes, count: int, error: tuple[int, int] = (0, 0)) -> bytes:
    params = bytes([0x04, count]) if error == (0, 0) else b""
    return struct.pack(">BBHHHHBB", 0x32, 0x03, 0, ref, len(params), len(items), *error) + params + items


def test_answers_are_decoded_item_by_item_with_fill_bytes_and_failures() -> None:
    job = Job((Piece(0, 0x84, 10, 0, 3), Piece(1, 0x84, 11, 0, 2), Piece(2, 0x84, 10, 8, 2)))
    items = (
        b"\xff\x04\x00\x18abc\x00"  # 3 bytes (24 bits) and a fill byte
        b"\x0a\x00\x00\x04"  # DB11 does not exist: the C server declares 4 bytes and sends none
        b"\xff\x04\x00\x10xy"
    )
    results = decode_read_response(_answer(7, items, 3), pdu_ref=7, job=job)
    assert results == [ItemResult(0xFF, b"abc"), ItemResult(0x0A), ItemResult(0xFF, b"xy")]


def test_a_job_refused_as_a_whole_gives_every_item_the_header_error() -> None:
    job = Job((Piece(0, 0x84, 10, 0, 2), Piece(1, 0x84, 10, 4, 2)))
    pdu = struct.pack(">BBHHHHBB", 0x32, 0x02, 0, 9, 0, 0, 0x81, 0x04)
    assert decode_read_response(pdu, pdu_ref=9, job=job) == [ItemResult(0x8104)] * 2


@pytest.mark.parametrize(
    ("pdu", "message"),
    [
        (b"\x32\x03", "not an S7 answer"),
        (b"\x99" + bytes(11), "not an S7 answer"),
        (struct.pack(">BBHHHHBB", 0x32, 0x01, 0, 7, 0, 0, 0, 0), "expected an acknowledgement"),
        (_answer(8, b"\xff\x04\x00\x10ab", 1), "answer to PDU 8, expected 7"),
        (_answer(7, b"\xff\x04\x00\x10ab", 1) + b"\x00", "its header says"),
        (_answer(7, b"\xff\x04\x00\x10ab", 2), "do not match a read of 1 items"),
        (_answer(7, b"\xff\x04\x00\x18abc", 1), "3 bytes announced, 2 asked for"),
        (_answer(7, b"\xff\x04", 1), "answer ends before item 0"),
    ],
)
def test_answers_that_are_not_ours_break_the_connection(pdu: bytes, message: str) -> None:
    job = Job((Piece(0, 0x84, 10, 0, 2),))
    with pytest.raises(S7ResponseError, match=message):
        decode_read_response(pdu, pdu_ref=7, job=job)


def test_values_come_back_per_tag_and_a_failed_piece_only_spoils_its_tags() -> None:
    locations = [loc("DB10.DBW0", "int16"), loc("DB10.DBD460", "int32"), loc("DB10.DBW900", "int16")]
    plan = plan_reads(locations, pdu_size=480, max_gap=1000)
    assert [len(job.pieces) for job in plan.jobs] == [1, 1]  # 462 + 440 bytes
    block = bytearray(902)
    struct.pack_into(">h", block, 0, -7)
    struct.pack_into(">i", block, 460, 123456)  # straddles the pieces (462 | 440)
    struct.pack_into(">h", block, 900, 99)
    answers = [[ItemResult(0xFF, bytes(block[p.start : p.end]))] for job in plan.jobs for p in job.pieces]
    assert take_values(plan, answers) == [TagResult(-7, None), TagResult(123456, None), TagResult(99, None)]
    answers[1] = [ItemResult(0x05)]
    assert take_values(plan, answers) == [TagResult(-7, None), TagResult(None, 0x05), TagResult(None, 0x05)]
    assert failed_members(plan, answers) == {0, 1, 2}


def test_a_string_that_does_not_decode_is_a_problem_not_a_code() -> None:
    plan = plan_reads([loc("DB1.DBS0.2", "string")], pdu_size=480)
    result = take_values(plan, [[ItemResult(0xFF, b"\x02\x07ab")]])
    assert result[0].code is None
    assert result[0].problem is not None
    assert "current length 7 exceeds its maximum 2" in result[0].problem
