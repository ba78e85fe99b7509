"""The byte format of a KPI engine's checkpoint (`KpiEngine.checkpoint`, `KpiEngine.restore`).

A checkpoint is `MAGIC`, then zlib-compressed JSON of the engine's state: integers, booleans,
None and strings only, so a restored engine is the saved one to the last digit. Every checkpoint
names the configuration it was taken with (`config_key`): an engine's state means nothing under
another window, bucket width, counter width or calendar, so it is restored only with the same.
A window bucket is mostly zeros; it is written as its start (after the previous bucket's), a
bit mask of its non-zero fields and those fields. The format's version is in `MAGIC`: a reader
refuses any other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zlib
from collections.abc import Iterable
from typing import Any

from plantline.connectors.kpi.shifts import ALWAYS_PRODUCTION, CalendarPiece, CalendarStatus, ShiftOccurrence

MAGIC = b"PLKE\x01"  # PlantLine KPI engine, format 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored here: another format, or another configuration."""


def config_key(terms: Any) -> str:
    """Return a digest of a configuration's terms (JSON-able, in a fixed order): equal terms, equal key."""
    text = json.dumps(terms, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def encode(state: dict[str, Any]) -> bytes:
    """Return `state` (JSON-able) as a checkpoint."""
    return MAGIC + zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6)


def decode(data: bytes) -> dict[str, Any]:
    """Return the state a checkpoint holds; raise CheckpointError for anything but this format."""
    if not data.startswith(MAGIC):
        raise CheckpointError(f"not a KPI engine checkpoint of format {MAGIC[-1]}")
    try:
        state = json.loads(zlib.decompress(data[len(MAGIC) :]))
    except (zlib.error, ValueError) as exc:
        raise CheckpointError(f"a damaged KPI engine checkpoint: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError("a damaged KPI engine checkpoint")
    return state


def pack_buckets(buckets: Iterable[list[int]], fields: int) -> list[int]:
    """Return the window's buckets (`fields` values, then the start) as one flat list of integers."""
    out: list[int] = []
    previous = 0
    for bucket in buckets:
        mask, values = 0, []
        for i, value in enumerate(bucket[:fields]):
            if value:
                mask |= 1 << i
                values.append(value)
        out += [bucket[fields] - previous, mask, *values]
        previous = bucket[fields]
    return out


def unpack_buckets(flat: list[int], fields: int) -> list[list[int]]:
    """Return the buckets `pack_buckets` flattened."""
    buckets, at, start, end = [], 0, 0, len(flat)
    while at < end:
        start += flat[at]
        mask = flat[at + 1]
        at += 2
        bucket = [0] * fields + [start]
        while mask:
            low = mask & -mask
            bucket[low.bit_length() - 1] = flat[at]
            at += 1
            mask ^= low
        buckets.append(bucket)
    return buckets


def pack_occurrence(occ: ShiftOccurrence | None) -> list[Any] | None:
    if occ is None:
        return None
    return [occ.name, occ.local_date.isoformat(), occ.start_ms, occ.end_ms, [list(b) for b in occ.breaks]]


def unpack_occurrence(packed: list[Any] | None) -> ShiftOccurrence | None:
    if packed is None:
        return None
    name, day, start, end, breaks = packed
    return ShiftOccurrence(name, dt.date.fromisoformat(day), start, end, tuple((s, e) for s, e in breaks))


def pack_piece(piece: CalendarPiece) -> list[Any] | None:
    return None if piece == ALWAYS_PRODUCTION else [piece.end_ms, piece.status.value, pack_occurrence(piece.shift)]


def unpack_piece(packed: list[Any] | None) -> CalendarPiece:
    if packed is None:
        return ALWAYS_PRODUCTION
    end, status, occ = packed
    return CalendarPiece(end, CalendarStatus(status), unpack_occurrence(occ))
