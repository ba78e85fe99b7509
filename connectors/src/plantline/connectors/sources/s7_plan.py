"""Planning S7 reads: merge the tags of one poll into ranges, split and pack them to the PDU size.

Pure and sans-I/O: `plan_reads` turns tag locations into read jobs, `encode_read_request` and
`decode_read_response` are the S7comm "Read Var" codec for one job, and `take_values` turns the
answers back into one result per tag. The S7 source sends the bytes; tests and the bench call
these directly.

Merging. Tags of one area (and DB) are sorted by offset; a tag that starts at most `max_gap`
bytes after the end of the current range joins it, so the range reads the gap too (cheaper than
another item: an item costs 12 request and 4 response bytes, and the CPU's time per item).

Splitting. A job and its answer must each fit the PDU size negotiated at connect. An answer is
a 12-byte header, 2 bytes of parameters, and per item 4 bytes of header, the data and a fill
byte after odd-sized data; a request is a 10-byte header, 2 bytes and 12 bytes per item. So one
item carries at most `pdu - 18` bytes (462 at PDU 480), and a range longer than that is split
into pieces: the read-larger-than-the-PDU bug that UMH's and Telegraf's S7 inputs had. Pieces
and ranges are packed greedily into jobs of at most `max_items` (20, what snap7 servers and
most CPUs accept) items; a range that does not fit the room left in a job is split so that the
job is filled, unless the room is below `MIN_PIECE` bytes.

Isolation. A range that merged a bad tag (one past the end of its DB, say) fails as a whole:
the CPU answers "address out of range" for the item. Tags listed in `isolated` are never
merged, so the S7 source re-plans with the members of a failed multi-tag range isolated and the
good tags read good again (see `failed_members`).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from plantline.connectors.addressing.s7 import S7DecodeError, S7Location, decode
from plantline.connectors.quality import S7_ITEM_OK
from plantline.connectors.samples import Value

DEFAULT_MAX_GAP = 16
MAX_ITEMS = 20
MIN_PIECE = 16
MIN_PDU = 64

JOB_HEADER = 10  # protocol id, ROSCTR, reserved, PDU ref, parameter and data length
ACK_HEADER = 12  # the same plus error class and error code
PARAMS = 2  # function, item count
REQUEST_ITEM = 12  # S7-ANY variable specification
RESPONSE_ITEM = 4  # return code, transport size, length

_PROTOCOL_ID = 0x32
_ROSCTR_JOB = 0x01
_ROSCTR_ACK = 0x02
_ROSCTR_ACK_DATA = 0x03
_READ_VAR = 0x04
_TRANSPORT_BYTE = 0x02
_BIT_LENGTH_TRANSPORTS = frozenset({0x03, 0x04, 0x05})  # BIT, BYTE/WORD/DWORD, INTEGER: length in bits


@dataclass(frozen=True)
class Span:
    """A contiguous byte range of one area (and DB) read for the tags in `members`."""

    area: int
    db: int
    start: int
    length: int
    members: tuple[int, ...]  # indexes into the planned locations

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class Piece:
    """One read item of a job: (part of) a span."""

    span: int  # index into ReadPlan.spans
    area: int
    db: int
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class Job:
    """One Read Var request and its answer; both fit the PDU."""

    pieces: tuple[Piece, ...]

    def request_size(self) -> int:
        return JOB_HEADER + PARAMS + REQUEST_ITEM * len(self.pieces)

    def response_size(self) -> int:
        return ACK_HEADER + PARAMS + sum(RESPONSE_ITEM + p.length + p.length % 2 for p in self.pieces)


@dataclass(frozen=True)
class ReadPlan:
    """The jobs that read a set of tag locations, for one PDU size."""

    pdu_size: int
    locations: tuple[S7Location, ...]
    spans: tuple[Span, ...]
    jobs: tuple[Job, ...]

    @property
    def bytes_read(self) -> int:
        return sum(span.length for span in self.spans)


@dataclass(frozen=True)
class ItemResult:
    """The answer to one read item: the return code (0xFF success) and, on success, its bytes."""

    code: int
    data: bytes = b""


@dataclass(frozen=True)
class TagResult:
    """What one tag read: a value, or the code (S7 return code / header error) and why not."""

    value: Value | None  # set when `code` is None and there was no problem
    code: int | None  # None: read and decoded; otherwise the S7 code that made it bad
    problem: str | None = None  # a decode problem (the read itself succeeded)


class S7ResponseError(Exception):
    """An answer that is not the answer to the job sent: the connection cannot be trusted."""


def max_item_data(pdu_size: int) -> int:
    """Return the most data bytes one item of a job can carry at `pdu_size`."""
    return pdu_size - ACK_HEADER - PARAMS - RESPONSE_ITEM


def _merge(
    locations: Sequence[S7Location], max_gap: int | None, isolated: Collection[int]
) -> list[tuple[S7Location, list[int], int]]:
    """Return (first location, member indexes, end) per range, in area/DB/offset order."""
    order = sorted(range(len(locations)), key=lambda i: (locations[i].area, locations[i].db, locations[i].start))
    ranges: list[tuple[S7Location, list[int], int]] = []
    for index in order:
        here = locations[index]
        if ranges and max_gap is not None and index not in isolated:
            first, members, end = ranges[-1]
            same_block = (first.area, first.db) == (here.area, here.db)
            if same_block and members[0] not in isolated and here.start <= end + max_gap:
                members.append(index)
                ranges[-1] = (first, members, max(end, here.end))
                continue
        ranges.append((here, [index], here.end))
    return ranges


def plan_reads(
    locations: Sequence[S7Location],
    *,
    pdu_size: int,
    max_gap: int | None = DEFAULT_MAX_GAP,
    max_items: int = MAX_ITEMS,
    isolated: Collection[int] = frozenset(),
) -> ReadPlan:
    """Return the jobs that read every location, each job and answer within `pdu_size` bytes.

    `max_gap=None` merges nothing (one range per tag); `max_items=1` sends one item per job;
    together they are the naive "one read per tag" the bench compares with. Tags whose index
    is in `isolated` get a range of their own. Raises ValueError for a PDU size below 64 bytes
    or `max_items` outside 1..20.
    """
    if pdu_size < MIN_PDU:
        raise ValueError(f"pdu_size must be >= {MIN_PDU}, got {pdu_size!r}")
    if not 1 <= max_items <= MAX_ITEMS:
        raise ValueError(f"max_items must be within 1..{MAX_ITEMS}, got {max_items!r}")
    if max_gap is not None and max_gap < 0:
        raise ValueError(f"max_gap must be >= 0 or None, got {max_gap!r}")
    spans = tuple(
        Span(int(first.area), first.db, first.start, end - first.start, tuple(members))
        for first, members, end in _merge(locations, max_gap, isolated)
    )
    # A job holds at most this many items by the request-size limit as well.
    max_items = min(max_items, (pdu_size - JOB_HEADER - PARAMS) // REQUEST_ITEM)
    jobs: list[Job] = []
    pieces: list[Piece] = []
    used = ACK_HEADER + PARAMS  # response bytes of the job being filled

    def flush() -> None:
        nonlocal pieces, used
        if pieces:
            jobs.append(Job(tuple(pieces)))
        pieces, used = [], ACK_HEADER + PARAMS

    for span_index, span in enumerate(spans):
        offset = 0
        while offset < span.length:
            remaining = span.length - offset
            room = pdu_size - used - RESPONSE_ITEM
            if len(pieces) >= max_items or room < min(remaining, MIN_PIECE):
                flush()
                room = pdu_size - used - RESPONSE_ITEM
            take = min(remaining, room)
            if take < remaining:
                take -= take % 2  # a piece cut short is even, so it needs no fill byte
            pieces.append(Piece(span_index, span.area, span.db, span.start + offset, take))
            used += RESPONSE_ITEM + take + take % 2
            offset += take
    flush()
    return ReadPlan(pdu_size, tuple(locations), spans, tuple(jobs))


# -- the Read Var codec ---------------------------------------------------------------------------


def encode_read_request(pdu_ref: int, job: Job) -> bytes:
    """Return the S7comm Read Var job PDU for `job` (bytes read as BYTE, S7-ANY addressing)."""
    items = b"".join(
        struct.pack(">BBBBHHB", 0x12, 0x0A, 0x10, _TRANSPORT_BYTE, piece.length, piece.db, piece.area)
        + (piece.start * 8).to_bytes(3, "big")
        for piece in job.pieces
    )
    parameters = bytes([_READ_VAR, len(job.pieces)]) + items
    header = struct.pack(">BBHHHH", _PROTOCOL_ID, _ROSCTR_JOB, 0, pdu_ref & 0xFFFF, len(parameters), 0)
    return header + parameters


def decode_read_response(pdu: bytes, *, pdu_ref: int, job: Job) -> list[ItemResult]:
    """Return one ItemResult per piece of `job` from its answer PDU.

    A job refused as a whole (an error class in the header) gives every piece the code
    `(class << 8) | code`. An item with a return code other than 0xFF carries no data, whatever
    length it declares (the C snap7 server declares 4 bytes for a DB that does not exist and
    sends none, which python-snap7 3.x's own parser reports as "Data item is truncated").
    Raises S7ResponseError for an answer that does not belong to this job or is malformed.
    """
    if len(pdu) < ACK_HEADER or pdu[0] != _PROTOCOL_ID:
        raise S7ResponseError(f"not an S7 answer ({len(pdu)} bytes: {pdu[:12].hex(' ')})")
    rosctr, ref, param_len, data_len, error_class, error_code = struct.unpack(">xBxxHHHBB", pdu[:ACK_HEADER])
    if rosctr not in (_ROSCTR_ACK, _ROSCTR_ACK_DATA):
        raise S7ResponseError(f"expected an acknowledgement, got ROSCTR 0x{rosctr:02X}")
    if ref != pdu_ref & 0xFFFF:
        raise S7ResponseError(f"answer to PDU {ref}, expected {pdu_ref & 0xFFFF}")
    if len(pdu) != ACK_HEADER + param_len + data_len:
        raise S7ResponseError(f"answer is {len(pdu)} bytes, its header says {ACK_HEADER + param_len + data_len}")
    if error_class or error_code:
        return [ItemResult((error_class << 8) | error_code)] * len(job.pieces)
    params = pdu[ACK_HEADER : ACK_HEADER + param_len]
    if len(params) != PARAMS or params[0] != _READ_VAR or params[1] != len(job.pieces):
        raise S7ResponseError(f"answer parameters {params.hex(' ')} do not match a read of {len(job.pieces)} items")
    data = pdu[ACK_HEADER + param_len :]
    results: list[ItemResult] = []
    at = 0
    for number, piece in enumerate(job.pieces):
        if at + RESPONSE_ITEM > len(data):
            raise S7ResponseError(f"answer ends before item {number}")
        code, transport, length = struct.unpack(">BBH", data[at : at + RESPONSE_ITEM])
        at += RESPONSE_ITEM
        if code != S7_ITEM_OK:
            results.append(ItemResult(code))
            continue
        size = (length + 7) // 8 if transport in _BIT_LENGTH_TRANSPORTS else length
        if size != piece.length or at + size > len(data):
            raise S7ResponseError(f"item {number}: {size} bytes announced, {piece.length} asked for")
        results.append(ItemResult(code, bytes(data[at : at + size])))
        at += size
        if size % 2 and number < len(job.pieces) - 1:
            at += 1  # fill byte
    return results


# -- from answers to tag values -------------------------------------------------------------------


def take_values(plan: ReadPlan, answers: Sequence[Sequence[ItemResult]]) -> list[TagResult]:
    """Return one TagResult per planned location, in the order of `plan.locations`.

    `answers` holds the ItemResults of every job of the plan, in order. A tag that overlaps a
    failed piece gets that piece's code; the others are decoded from their range's bytes.
    """
    if len(answers) != len(plan.jobs):
        raise ValueError(f"{len(answers)} answers for {len(plan.jobs)} jobs")
    buffers = [bytearray(span.length) for span in plan.spans]
    failed: list[list[tuple[int, int, int]]] = [[] for _ in plan.spans]  # (start, end, code) per span
    for job, results in zip(plan.jobs, answers, strict=True):
        for piece, result in zip(job.pieces, results, strict=True):
            span = plan.spans[piece.span]
            if result.code == S7_ITEM_OK:
                at = piece.start - span.start
                buffers[piece.span][at : at + piece.length] = result.data
            else:
                failed[piece.span].append((piece.start, piece.end, result.code))
    out: list[TagResult | None] = [None] * len(plan.locations)
    for span_index, span in enumerate(plan.spans):
        for member in span.members:
            location = plan.locations[member]
            code = next(
                (c for start, end, c in failed[span_index] if start < location.end and location.start < end), None
            )
            if code is not None:
                out[member] = TagResult(None, code)
                continue
            at = location.start - span.start
            try:
                out[member] = TagResult(decode(location, bytes(buffers[span_index][at : at + location.size])), None)
            except S7DecodeError as exc:
                out[member] = TagResult(None, None, str(exc))
    return [result if result is not None else TagResult(None, None, "not planned") for result in out]


def failed_members(plan: ReadPlan, answers: Sequence[Sequence[ItemResult]]) -> set[int]:
    """Return the tags of merged (multi-tag) ranges that had a failed piece: the ones to isolate."""
    out: set[int] = set()
    for job, results in zip(plan.jobs, answers, strict=True):
        for piece, result in zip(job.pieces, results, strict=True):
            span = plan.spans[piece.span]
            if result.code != S7_ITEM_OK and len(span.members) > 1:
                out.update(span.members)
    return out
