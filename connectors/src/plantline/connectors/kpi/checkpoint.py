"""The byte format of a KPI engine's checkpoint (`KpiEngine.checkpoint`, `KpiEngine.restore`).

A checkpoint is `MAGIC`, then zlib-compressed: the length of a JSON text (4 bytes, little-endian),
the JSON of the engine's state but its window buckets (integers, booleans, None and strings
only), then the buckets as 64-bit little-endian integers, one after the other (restored with a
few C calls rather than a Python loop per field: a restore is paid per machine per request).
A value beyond 64 bits (a 64-bit counter's glitch counts that many parts) puts the buckets in the
JSON instead. Either way a restored engine is the saved one to the last digit. Every checkpoint
names the configuration it was taken with (`config_key`): an engine's state means nothing under
another window, bucket width, counter width or calendar, so it is restored only with the same.
The format's version is in `MAGIC`: a reader refuses any other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import zlib
from array import array
from collections.abc import Sequence
from typing import Any

from plantline.connectors.kpi.shifts import ALWAYS_PRODUCTION, CalendarPiece, CalendarStatus, ShiftOccurrence

MAGIC = b"PLKE\x01"  # PlantLine KPI engine, format 1
_BIG_ENDIAN = sys.byteorder == "big"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored here: another format, or another configuration."""


def config_key(terms: Any) -> str:
    """Return a digest of a configuration's terms (JSON-able, in a fixed order): equal terms, equal key."""
    text = json.dumps(terms, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def encode(state: dict[str, Any], buckets: Sequence[list[int]]) -> bytes:
    """Return `state` (JSON-able) and the window's `buckets` (lists of integers of one length) as a checkpoint."""
    try:
        packed = array("q", [value for bucket in buckets for value in bucket])
    except OverflowError:
        packed, state = array("q"), {**state, "buckets": [list(bucket) for bucket in buckets]}
    if _BIG_ENDIAN:
        packed.byteswap()
    text = json.dumps(state, separators=(",", ":")).encode()
    return MAGIC + zlib.compress(len(text).to_bytes(4, "little") + text + packed.tobytes(), 6)


def decode(data: bytes, width: int) -> tuple[dict[str, Any], list[list[int]]]:
    """Return the state and the buckets (of `width` integers) a checkpoint holds; raise CheckpointError
    for anything but this format."""
    if not data.startswith(MAGIC):
        raise CheckpointError(f"not a KPI engine checkpoint of format {MAGIC[-1]}")
    try:
        payload = zlib.decompress(data[len(MAGIC) :])
        length = int.from_bytes(payload[:4], "little")
        state = json.loads(payload[4 : 4 + length])
        packed = array("q")
        packed.frombytes(payload[4 + length :])
    except (zlib.error, ValueError) as exc:
        raise CheckpointError(f"a damaged KPI engine checkpoint: {exc}") from None
    if not isinstance(state, dict) or len(packed) % width:
        raise CheckpointError("a damaged KPI engine checkpoint")
    if "buckets" in state:
        return state, state.pop("buckets")
    if _BIG_ENDIAN:
        packed.byteswap()
    flat = packed.tolist()
    return state, [flat[at : at + width] for at in range(0, len(flat), width)]


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
