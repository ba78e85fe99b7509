"""The durable store-and-forward outbox: samples wait on disk until the broker acknowledged them.

Every batch a source hands over is written here before it is published, and leaves only when
`ack` is called for it after the broker's PUBACK (or when a bound drops it, counted). The outbox
survives `kill -9` and restarts and replays in append order; batches that were already stored when
it was opened come back with `recovered=True` so the publisher can mark them historical.

Design decisions, and why:

- SQLite in WAL mode, `synchronous=NORMAL`. A commit appends to the WAL with write(2); once
  `append` returns, the batch is in the kernel's page cache and survives the death of the
  process. Only a power loss or kernel crash can lose the last commits (the WAL is fsynced at
  checkpoints). `durable_against_power_loss=True` selects `synchronous=FULL`: an fsync per commit,
  at a large cost in appends per second. SQLite gives atomic batches, crash recovery that is
  tested far beyond anything hand-written, and one file to move aside when it is damaged. A
  hand-rolled segment log might append faster, but would have to re-implement all of that; the
  outbox already appends and drains several hundred thousand samples/s in batches of 100-1000
  (tests/bench/outbox_bench.py), far above what a line produces.
- One row per `append` call: a batch is the unit of durability, publication and acknowledgement,
  and a row per sample would cost a B-tree insert per sample. The row holds a compact binary
  encoding made with `struct` and `array` (below) and its CRC-32. A row whose CRC or encoding
  does not check out is moved to the `quarantine` table (the last `QUARANTINE_KEEP` are kept for
  forensics), counted, logged and passed to the `on_corrupt` callback; the other batches are
  still delivered.
- Samples that no longer fit the connector's configuration (a removed device or signal, a value
  of a retyped tag) are not damage: `set_aside` moves them, by reason, to the `unfit` table (the
  newest `UNFIT_KEEP` rows are kept) in the same encoding, so they can be read back with
  `decode_batch`; the rest of their batch is published as usual.
- A database file SQLite cannot read at open (not a database, or `PRAGMA quick_check` fails) is
  moved aside, with its WAL, to `outbox.db.corrupt-<UTC timestamp>`, reported the same way, and a
  fresh outbox starts. Losing that backlog is the price of keeping the connector running; the
  moved file stays for forensics (`sqlite3 FILE .recover` can often salvage rows). Errors that
  are not damage (disk full, permissions, a lock) are raised, never "repaired".
- Batch ids come from `AUTOINCREMENT`, so an id is never reused, not even after the table was
  empty or after a restart: a late PUBACK for a dropped batch can never delete a newer one.
- Bounds are enforced oldest-first in append order, inside the transaction of the `append` that
  exceeds them (and on open and in `pending`): batches older than `max_age_s` go first, then the
  oldest batches until the stored bytes fit `max_bytes`. The batch being appended is never
  dropped, so the newest data always wins; a single batch larger than `max_bytes` is kept alone.
  Stored bytes are the encoded rows plus `ROW_OVERHEAD_BYTES` each, the figure `fill` is computed
  from; the file on disk is larger by SQLite's page slack and the WAL (`stats().disk_bytes`).
  Freed pages are reused, so the file does not grow past its high-water mark.
- Flow control by hysteresis: `pressure` turns on when `fill` reaches `high_watermark` and off
  only when it falls below `low_watermark`, so sources do not flap around one threshold.
- In-flight tracking without extra writes: `pending` hands out batches above a cursor and moves
  the cursor past them; every stored batch at or below the cursor is therefore in flight.
  `requeue_in_flight` (the MQTT session dropped before PUBACK) resets the cursor, so in-flight
  batches come again first, in order, before newer ones. A restart does the same implicitly.
- Threads: none. The connector drives the outbox from its event loop, PUBACKs included (its MQTT
  link has no network thread), so no lock is taken; use an `Outbox` from one thread at a time.
- One process per outbox directory: an exclusive `flock` on `outbox.lock` (released by the kernel
  when the process dies), because two processes draining one outbox would publish twice.
- Counters (drops, corrupt batches) count since this `Outbox` was opened, like Prometheus
  counters in the process that exports them; the stored batches are counted from the database.

The encoding of one batch comes in two formats, told apart by the first byte, both little-endian
and both read back by `decode_batch`. Format 2 is for the usual batch (one device, one quality,
no protocol codes, every value an int64 or every value a float64) and is written and read a
column at a time by C code, with no Python per sample; format 1 takes every other batch.

Format 1:

    header   u8 format, u8 flags (bit 0: 32-bit name indices), u32 samples, u32 names
    names    per name: u32 length, UTF-8 bytes    (each distinct device and signal, once per batch)
    samples  per sample: u16|u32 device index, u16|u32 signal index, u8 tag, i64 source_ts_ms,
             [i64 protocol_code if tag bit 6], value by kind
    tag      bits 0-3 kind: 0 None, 1 False, 2 True, 3 int64, 4 bigint (u16 length + two's
             complement bytes), 5 float64, 6 str (u32 length + UTF-8); bits 4-5 quality
             (good, uncertain, bad); bit 6 protocol_code present

Format 2:

    header   as format 1 (format 2); names as format 1, the device first
    kind     u8: 3 int64, 5 float64 (the kinds of format 1); u8 quality bits, as in a tag
    columns  u16|u32 signal index per sample, then i64 source_ts_ms per sample, then the values
             (i64 or f64) per sample
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import sqlite3
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any, Literal, Self

from plantline.connectors.samples import Quality, Sample, Value

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from plantline.connectors.config import OutboxSettings

__all__ = [
    "DB_NAME",
    "LOCK_NAME",
    "QUARANTINE_KEEP",
    "ROW_OVERHEAD_BYTES",
    "UNFIT_KEEP",
    "Batch",
    "CorruptBatchError",
    "CorruptionReport",
    "DropReason",
    "Dropped",
    "Outbox",
    "OutboxError",
    "OutboxLockedError",
    "OutboxStats",
    "decode_batch",
    "encode_batch",
]

_log = logging.getLogger(__name__)

DB_NAME = "outbox.db"
LOCK_NAME = "outbox.lock"
ROW_OVERHEAD_BYTES = 40  # per stored batch: id, appended_at, samples, crc and SQLite's cell header
QUARANTINE_KEEP = 100  # damaged rows kept for forensics; older ones are deleted
UNFIT_KEEP = 1000  # rows of samples set aside (a batch and a reason each); older ones are deleted
SCHEMA_VERSION = 1
_WAL_SIZE_LIMIT = 16 << 20  # truncate the WAL back to this after a checkpoint
_CHUNK = 500  # ids per DELETE statement (SQLite's variable limit is far above)
# SQLite's primary result codes that mean "the file is damaged", as opposed to busy, full or denied.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    appended_at REAL    NOT NULL,
    samples     INTEGER NOT NULL,
    crc         INTEGER NOT NULL,
    body        BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id             INTEGER PRIMARY KEY,
    appended_at    REAL,
    samples        INTEGER,
    crc            INTEGER,
    body           BLOB,
    quarantined_at REAL NOT NULL,
    reason         TEXT NOT NULL
);
"""
# Samples set aside because they no longer fit the configuration: one row per batch and reason,
# in the batch encoding. Created on every open, so that files made before it get it too.
_UNFIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS unfit (
    batch_id    INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    appended_at REAL    NOT NULL,
    samples     INTEGER NOT NULL,
    crc         INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    set_aside_at REAL   NOT NULL,
    PRIMARY KEY (batch_id, reason)
);
"""


class OutboxError(Exception):
    """The outbox cannot be opened or used (not raised for damage it can recover from)."""


class OutboxLockedError(OutboxError):
    """Another process holds the outbox directory."""


class CorruptBatchError(ValueError):
    """A stored batch does not decode; the message says where."""


class DropReason(enum.StrEnum):
    """Why batches were dropped unpublished."""

    MAX_AGE = "max_age"
    MAX_BYTES = "max_bytes"


@dataclass(frozen=True, slots=True)
class Dropped:
    """Samples and stored bytes dropped for one reason."""

    samples: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """One stored batch as handed to the publisher; `recovered` if it predates this open."""

    id: int
    samples: tuple[Sample, ...]
    appended_at: float
    recovered: bool


@dataclass(frozen=True, slots=True)
class CorruptionReport:
    """Damage found and dealt with: a quarantined batch, or a database file moved aside."""

    kind: Literal["batch", "database"]
    detail: str
    batch_id: int | None = None
    moved_to: Path | None = None
    samples: int = 0  # the samples a quarantined batch said it held (unknown for a moved file)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The outbox's fill and counters; counters count since this `Outbox` was opened."""

    batches: int
    samples: int
    bytes: int
    in_flight_batches: int
    oldest_age_s: float | None
    dropped: Mapping[DropReason, Dropped]
    corrupt_batches: int
    corrupt_files: int
    fill: float
    pressure: bool
    disk_bytes: int

    @property
    def dropped_samples(self) -> int:
        return sum(d.samples for d in self.dropped.values())

    @property
    def dropped_bytes(self) -> int:
        return sum(d.bytes for d in self.dropped.values())


# ---------------------------------------------------------------------------------------------
# The batch encoding (pure)

_ROWS = 1  # format 1: a sample after another
_COLUMNS = 2  # format 2: the usual batch (one device, one quality, all int64 or all float64), by column
_WIDE = 0x01
_HEADER = struct.Struct("<BBII")
_LENGTH = struct.Struct("<I")
_HAS_CODE = 0x40
_KIND_MASK = 0x0F
_NONE, _FALSE, _TRUE, _INT, _BIGINT, _FLOAT, _STR = range(7)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_QUALITY_BITS: dict[str, int] = {Quality.GOOD: 0x00, Quality.UNCERTAIN: 0x10, Quality.BAD: 0x20}
_VALUE_FORMAT = {_NONE: "", _FALSE: "", _TRUE: "", _INT: "q", _BIGINT: "H", _FLOAT: "d", _STR: "I"}


def _layouts(index: str) -> dict[int, struct.Struct]:
    """Return the fixed part of a sample's encoding by kind and protocol-code bit."""
    layouts = {}
    for kind, value in _VALUE_FORMAT.items():
        layouts[kind] = struct.Struct(f"<{index}{index}Bq{value}")
        layouts[kind | _HAS_CODE] = struct.Struct(f"<{index}{index}Bqq{value}")
    return layouts


_NARROW_LAYOUTS = _layouts("H")
_WIDE_LAYOUTS = _layouts("I")
_device_of = attrgetter("device")
_signal_of = attrgetter("signal")
_NUMBER = -1  # a decoding kind: int or float, packed in the fixed part

# What decoding needs of a tag byte, by its value: (unpack_from, size, kind, quality, has a
# protocol code), or None for a tag no encoder writes. One lookup per sample instead of a few.
_TagEntry = tuple[Callable[[bytes, int], tuple[Any, ...]], int, int, Quality, bool]


def _tag_table(layouts: dict[int, struct.Struct]) -> list[_TagEntry | None]:
    table: list[_TagEntry | None] = [None] * 256
    for layout_bits, layout in layouts.items():
        kind = layout_bits & _KIND_MASK
        for quality, bits in _QUALITY_BITS.items():
            decoding = _NUMBER if kind in (_INT, _FLOAT) else kind
            table[layout_bits | bits] = (
                layout.unpack_from,
                layout.size,
                decoding,
                Quality(quality),
                bool(layout_bits & _HAS_CODE),
            )
    return table


_NARROW_TAGS = _tag_table(_NARROW_LAYOUTS)
_WIDE_TAGS = _tag_table(_WIDE_LAYOUTS)


def _typecode(size: int, candidates: str) -> str:
    """Return the array typecode among `candidates` whose items are `size` bytes on this machine.

    Format 2 fixes each column's width; C's int and long differ in size between platforms.
    """
    for code in candidates:
        if array(code).itemsize == size:
            return code
    raise ImportError(f"no array typecode of {size} bytes among {candidates!r} on this platform")


# Format 2's columns: signal indices (2 bytes, or 4 when wide), timestamps and values (8 bytes).
_U16, _U32, _I64, _F64 = _typecode(2, "H"), _typecode(4, "IL"), _typecode(8, "ql"), _typecode(8, "d")
_QUALITY_OF_BITS = {bits: Quality(quality) for quality, bits in _QUALITY_BITS.items()}
_BIG_ENDIAN = sys.byteorder == "big"  # array writes the machine's byte order; the format is little-endian


def _kind_of(value: Value | None) -> tuple[int, int | float | bytes | None]:
    """Return a value's kind and what is packed for it (bytes follow the fixed part)."""
    if isinstance(value, float):
        return _FLOAT, float(value)
    if isinstance(value, bool):
        return (_TRUE if value else _FALSE), None
    if isinstance(value, int):
        number = int(value)  # an IntEnum is stored as its number
        if _INT64_MIN <= number <= _INT64_MAX:
            return _INT, number
        return _BIGINT, number.to_bytes((number.bit_length() + 8) // 8, "little", signed=True)
    if isinstance(value, str):
        return _STR, value.encode()
    if value is None:
        return _NONE, None
    raise TypeError(f"{type(value).__name__} is not bool, int, float, str or None")


def _header_and_names(
    samples: Sequence[Sample], ordered: dict[str, None] | None = None, fmt: int = _ROWS
) -> tuple[list[bytes], dict[str, int], bool]:
    """Return the encoded header and name table, each name's index, and whether indices are wide.

    `ordered`: the names, when the caller has them already.
    """
    if ordered is None:
        # each distinct device and signal in order of first appearance (a device before its signal)
        devices = dict.fromkeys(map(_device_of, samples))
        if len(devices) == 1:  # the usual batch: one device, all its samples' names at C speed
            ordered = dict.fromkeys([*devices, *map(_signal_of, samples)])
        else:
            ordered = dict.fromkeys(name for sample in samples for name in (sample.device, sample.signal))
    names = {name: index for index, name in enumerate(ordered)}
    wide = len(names) > 0xFFFF
    parts = [_HEADER.pack(fmt, _WIDE if wide else 0, len(samples), len(names))]
    for name in names:
        data = name.encode()
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return parts, names, wide


def _encode_columns(samples: Sequence[Sample]) -> bytes | None:
    """Return format 2 of a batch of one device, one quality, no protocol codes and all int64 or all float
    values; None for any other batch (format 1 takes it).

    Each column is converted by C code (zip, array), with no Python per sample: most batches of
    a connector are of this kind, and this is a good part of the cost of every sample.
    """
    count = len(samples)
    if not count:
        return None
    devices, signals, values, qualities, timestamps, codes = zip(*samples, strict=True)
    device, quality = devices[0], qualities[0]
    if codes.count(None) != count or devices.count(device) != count or qualities.count(quality) != count:
        return None
    kinds = set(map(type, values))
    if kinds == {int}:
        kind, typecode = _INT, _I64
    elif kinds == {float}:
        kind, typecode = _FLOAT, _F64
    else:
        return None
    quality_bits = _QUALITY_BITS.get(quality)
    if quality_bits is None:
        return None
    try:
        value_column, time_column = array(typecode, values), array(_I64, timestamps)
    except (OverflowError, TypeError):  # an int beyond int64, a timestamp that is not one: format 1 says which
        return None
    parts, names, wide = _header_and_names(samples, dict.fromkeys((device, *signals)), _COLUMNS)
    index_column = array(_U32 if wide else _U16, map(names.__getitem__, signals))
    columns = (index_column, time_column, value_column)
    if _BIG_ENDIAN:
        for column in columns:
            column.byteswap()
    parts.append(bytes((kind, quality_bits)))
    parts += [column.tobytes() for column in columns]
    return b"".join(parts)


def _encode(samples: Sequence[Sample]) -> bytes:
    columns = _encode_columns(samples)
    if columns is not None:
        return columns
    parts, names, wide = _header_and_names(samples)
    layouts = _WIDE_LAYOUTS if wide else _NARROW_LAYOUTS
    quality_bits = _QUALITY_BITS
    append = parts.append
    pack_float, pack_int = layouts[_FLOAT].pack, layouts[_INT].pack
    # the hot loop of `append`: a number without a protocol code is packed at once (most
    # samples); everything else by _pack_sample
    # (a Sample is a named tuple: unpacking it at once is cheaper than reading its fields)
    for sample in samples:
        device, signal, value, quality, source_ts_ms, protocol_code = sample
        if protocol_code is None:
            if type(value) is float:
                pack, kind = pack_float, _FLOAT
            elif type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
                pack, kind = pack_int, _INT
            else:
                pack = None
            if pack is not None:
                append(pack(names[device], names[signal], kind | quality_bits[quality], source_ts_ms, value))
                continue
        _pack_sample(sample, names, layouts, append)
    return b"".join(parts)


def _pack_sample(
    sample: Sample, names: dict[str, int], layouts: dict[int, struct.Struct], append: Callable[[bytes], None]
) -> None:
    """Append the encoding of any sample (the general path of `_encode`)."""
    kind, packed = _kind_of(sample.value)
    head: tuple[int, ...]
    if sample.protocol_code is None:
        layout = layouts[kind]
        head = (names[sample.device], names[sample.signal], kind | _QUALITY_BITS[sample.quality], sample.source_ts_ms)
    else:
        layout = layouts[kind | _HAS_CODE]
        tag = kind | _QUALITY_BITS[sample.quality] | _HAS_CODE
        head = (names[sample.device], names[sample.signal], tag, sample.source_ts_ms, sample.protocol_code)
    if packed is None:
        append(layout.pack(*head))
    elif type(packed) is bytes:
        append(layout.pack(*head, len(packed)))
        append(packed)
    else:
        append(layout.pack(*head, packed))


def _utf8_problem(text: object) -> str | None:
    if not isinstance(text, str):
        return f"expected str, got {type(text).__name__}"
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return f"not encodable as UTF-8 ({exc.reason})"
    return None


def _int64_problem(number: object) -> str | None:
    if not isinstance(number, int) or not _INT64_MIN <= number <= _INT64_MAX:
        return f"expected a 64-bit integer, got {number!r}"
    return None


def _sample_problem(sample: object) -> str | None:
    """Return `field: problem` for a sample that cannot be stored, else None (the slow path)."""
    if not isinstance(sample, Sample):
        return f": expected a Sample, got {type(sample).__name__}"
    checks: list[tuple[str, str | None]] = [
        ("device", _utf8_problem(sample.device)),
        ("signal", _utf8_problem(sample.signal)),
        ("quality", None if sample.quality in _QUALITY_BITS else f"{sample.quality!r} is not a Quality"),
        ("source_ts_ms", _int64_problem(sample.source_ts_ms)),
        ("protocol_code", None if sample.protocol_code is None else _int64_problem(sample.protocol_code)),
    ]
    if not isinstance(sample.value, str):  # a str's problem is its encoding, checked below
        try:
            kind, packed = _kind_of(sample.value)
        except TypeError as exc:
            checks.append(("value", str(exc)))
        else:
            if kind == _BIGINT and isinstance(packed, bytes) and len(packed) > 0xFFFF:
                checks.append(("value", "integer too large to store"))
    else:
        checks.append(("value", _utf8_problem(sample.value)))
    for name, problem in checks:
        if problem is not None:
            return f".{name}: {problem}"
    return None


def encode_batch(samples: Sequence[Sample]) -> bytes:
    """Return the stored form of a batch; a sample that cannot be stored raises naming its index."""
    try:
        return _encode(samples)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, struct.error) as exc:
        for index, sample in enumerate(samples):
            problem = _sample_problem(sample)
            if problem is not None:
                raise ValueError(f"samples[{index}]{problem}") from None
        raise ValueError(f"samples: cannot be stored ({exc})") from None


def decode_batch(body: bytes) -> tuple[Sample, ...]:
    """Return the samples of a stored batch, or raise CorruptBatchError."""
    try:
        return _decode(body)
    except CorruptBatchError:
        raise
    except (struct.error, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptBatchError(f"undecodable batch: {exc}") from None


def _decode(body: bytes) -> tuple[Sample, ...]:
    fmt, flags, count, name_count = _HEADER.unpack_from(body, 0)
    if fmt not in (_ROWS, _COLUMNS) or flags & ~_WIDE:
        raise CorruptBatchError(f"unknown batch format {fmt} (flags {flags:#04x})")
    offset = _HEADER.size
    names: list[str] = []
    for _ in range(name_count):
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        end = offset + length
        if end > len(body):
            raise CorruptBatchError("name runs past the end of the batch")
        names.append(body[offset:end].decode())
        offset = end
    if fmt == _COLUMNS:
        return _decode_columns(body, offset, count, names, wide=bool(flags & _WIDE))
    tags, tag_at = (_WIDE_TAGS, 8) if flags & _WIDE else (_NARROW_TAGS, 4)
    out: list[Sample] = []
    append = out.append
    make = tuple.__new__  # a Sample without the call of its generated __new__
    for _ in range(count):
        tag = body[offset + tag_at]
        entry = tags[tag]
        if entry is None:
            if tag & 0x80:
                raise CorruptBatchError(f"unknown tag bits {tag:#04x}")
            raise KeyError(f"tag {tag:#04x}")  # an unknown kind or quality
        unpack, size, kind, quality, has_code = entry
        fields = unpack(body, offset)
        offset += size
        value: Value | None
        if kind is _NUMBER:
            value = fields[-1]
        elif kind in (_STR, _BIGINT):
            end = offset + fields[-1]
            if end > len(body):
                raise CorruptBatchError("value runs past the end of the batch")
            raw = body[offset:end]
            value = raw.decode() if kind == _STR else int.from_bytes(raw, "little", signed=True)
            offset = end
        else:
            value = None if kind == _NONE else kind == _TRUE
        code = fields[4] if has_code else None
        append(make(Sample, (names[fields[0]], names[fields[1]], value, quality, fields[3], code)))
    if offset != len(body):
        raise CorruptBatchError(f"{len(body) - offset} trailing bytes after {count} samples")
    return tuple(out)


def _decode_columns(body: bytes, offset: int, count: int, names: list[str], *, wide: bool) -> tuple[Sample, ...]:
    """Return the samples of format 2, whose columns start after the names at `offset`."""
    kind, quality_bits = body[offset], body[offset + 1]
    offset += 2
    quality = _QUALITY_OF_BITS.get(quality_bits)
    if quality is None or kind not in (_INT, _FLOAT) or not names:
        raise CorruptBatchError(f"unknown column kind {kind} or quality bits {quality_bits:#04x}")
    columns = (array(_U32 if wide else _U16), array(_I64), array(_I64 if kind == _INT else _F64))
    for column in columns:
        end = offset + count * column.itemsize
        if end > len(body):
            raise CorruptBatchError("a column runs past the end of the batch")
        column.frombytes(body[offset:end])
        if _BIG_ENDIAN:
            column.byteswap()
        offset = end
    if offset != len(body):
        raise CorruptBatchError(f"{len(body) - offset} trailing bytes after {count} samples")
    index_column, time_column, value_column = columns
    signals = map(names.__getitem__, index_column)  # an index past the names raises IndexError: corrupt
    rows = zip(repeat(names[0]), signals, value_column, repeat(quality), time_column, repeat(None), strict=False)
    return tuple(map(tuple.__new__, repeat(Sample), rows))  # Samples without their generated __new__


# ---------------------------------------------------------------------------------------------
# Opening the database


class _DamagedError(Exception):
    """The database file is damaged beyond what SQLite opens (internal)."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _connect(path: Path, *, full_sync: bool) -> sqlite3.Connection:
    """Return a connection to a sound outbox database at `path` (created if missing)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        db.execute(f"PRAGMA synchronous={'FULL' if full_sync else 'NORMAL'}")
        db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        check = [row[0] for row in db.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise _DamagedError("; ".join(str(c) for c in check[:5]))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            _fsync_directory(path.parent)  # the new file's name must survive a power loss too
        elif version != SCHEMA_VERSION:
            raise OutboxError(f"{path}: outbox schema version {version}; this version reads {SCHEMA_VERSION}")
        db.execute(_UNFIT_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: Path, now: float) -> Path:
    """Rename a damaged database (and its WAL and shared-memory files) out of the way."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    attempt = 1
    while target.exists():
        attempt += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{attempt}")
    for suffix in ("-wal", "-shm", ""):
        # The WAL goes too, and first: left beside a fresh database (say, after a kill between two
        # renames) SQLite would replay its stale pages into it.
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    _fsync_directory(path.parent)
    return target


def _fsync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _lock_directory(path: Path) -> IO[bytes]:
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutboxLockedError(f"{path}: another process uses this outbox") from None
    except BaseException:
        handle.close()
        raise
    return handle


# ---------------------------------------------------------------------------------------------
# The outbox


@dataclass(slots=True)
class _Totals:
    """What is stored, kept in memory so that the hot path does not count rows."""

    batches: int = 0
    samples: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _Drops:
    """Batches chosen for dropping, all at or below `last_id`."""

    last_id: int = 0
    batches: int = 0
    by_reason: dict[DropReason, Dropped] = field(default_factory=dict)

    def add(self, reason: DropReason, batch_id: int, samples: int, size: int) -> None:
        before = self.by_reason.get(reason, Dropped())
        self.by_reason[reason] = Dropped(before.samples + samples, before.bytes + size)
        self.last_id = batch_id
        self.batches += 1


_Row = tuple[int, float, int, int, bytes]
_DELETE_IDS = "DELETE FROM batch WHERE id IN ({marks}) RETURNING samples, length(body)"


class Outbox:
    """A bounded, durable FIFO of sample batches that leave only when acknowledged.

    Use from one thread at a time: nothing here takes a lock.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_age_s: float,
        high_watermark: float,
        low_watermark: float,
        clock: Callable[[], float] = time.time,
        durable_against_power_loss: bool = False,
        on_corrupt: Callable[[CorruptionReport], None] | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes: must be at least 1 (got {max_bytes})")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s: must be positive (got {max_age_s})")
        if not 0 < low_watermark < high_watermark <= 1:
            raise ValueError(
                f"low_watermark, high_watermark: need 0 < low < high <= 1 (got {low_watermark}, {high_watermark})"
            )
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.high_watermark = high_watermark
        self.low_watermark = low_watermark
        self._clock = clock
        self._on_corrupt = on_corrupt
        self._closed = False
        self._totals = _Totals()
        self._dropped: dict[DropReason, Dropped] = {}
        self._corrupt_batches = 0
        self._corrupt_files = 0
        self._in_flight: set[int] = set()
        self._cursor = 0  # every stored batch with an id at or below it is in flight
        self._oldest_at: float | None = None  # appended_at of the oldest batch; None: look it up
        self._pressure = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_directory(self.directory / LOCK_NAME)
        reports: list[CorruptionReport] = []
        try:
            self._db = self._open(full_sync=durable_against_power_loss, reports=reports)
        except BaseException:
            self._lock_file.close()
            raise
        try:
            self._load_totals()
            self._run_bounds(self._clock())
        except BaseException:
            self._db.close()
            self._lock_file.close()
            raise
        self._report(reports)

    @classmethod
    def from_settings(
        cls,
        settings: OutboxSettings,
        *,
        clock: Callable[[], float] = time.time,
        durable_against_power_loss: bool = False,
        on_corrupt: Callable[[CorruptionReport], None] | None = None,
    ) -> Outbox:
        """Return the outbox a connector's configuration describes."""
        return cls(
            settings.directory,
            max_bytes=settings.max_bytes,
            max_age_s=settings.max_age_s,
            high_watermark=settings.high_watermark,
            low_watermark=settings.low_watermark,
            clock=clock,
            durable_against_power_loss=durable_against_power_loss,
            on_corrupt=on_corrupt,
        )

    def _open(self, *, full_sync: bool, reports: list[CorruptionReport]) -> sqlite3.Connection:
        path = self.directory / DB_NAME
        try:
            return _connect(path, full_sync=full_sync)
        except (sqlite3.DatabaseError, _DamagedError) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not _is_damage(exc):
                raise
            detail = f"{path}: unreadable database ({exc})"
        moved = _move_aside(path, self._clock())
        self._corrupt_files += 1
        reports.append(CorruptionReport("database", f"{detail}; moved to {moved.name}, starting empty", None, moved))
        return _connect(path, full_sync=full_sync)

    def _load_totals(self) -> None:
        batches, samples, size, last_id = self._db.execute(
            "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(length(body)), 0), coalesce(max(id), 0)"
            " FROM batch"
        ).fetchone()
        self._totals = _Totals(batches, samples, size + batches * ROW_OVERHEAD_BYTES)
        self._recovered_up_to: int = last_id
        self._appended = (last_id, last_id)  # the ids of the latest append and of the one before
        self._update_pressure()

    # -- the public operations ----------------------------------------------------------------

    def append(self, samples: Sequence[Sample]) -> int:
        """Store a batch durably and return its id; may drop the oldest batches to stay bounded."""
        if not samples:
            raise ValueError("samples: an empty batch")
        body = encode_batch(samples)
        self._check_open()
        now = self._clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._db.execute(
                "INSERT INTO batch (appended_at, samples, crc, body) VALUES (?, ?, ?, ?)",
                (now, len(samples), zlib.crc32(body), body),
            )
            batch_id = cursor.lastrowid
            if batch_id is None:  # pragma: no cover - SQLite always reports the rowid of an INSERT
                raise OutboxError("SQLite returned no id for the new batch")
            added = _Totals(1, len(samples), len(body) + ROW_OVERHEAD_BYTES)
            drops = self._delete_over_bounds(now, newest_id=batch_id, pending=added)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if self._totals.batches == 0:
            self._oldest_at = now
        self._totals = _Totals(
            self._totals.batches + 1, self._totals.samples + added.samples, self._totals.bytes + added.bytes
        )
        self._apply_drops(drops)
        self._update_pressure()
        self._appended = (self._appended[1], batch_id)
        return batch_id

    def pending(self, max_samples: int) -> list[Batch]:
        """Return the oldest batches not yet handed out, about `max_samples` samples in all.

        At least one batch is returned when any is waiting, even one larger than `max_samples`.
        The batches are in flight until acknowledged or requeued.
        """
        if max_samples < 1:
            raise ValueError(f"max_samples: must be at least 1 (got {max_samples})")
        reports: list[CorruptionReport] = []
        self._check_open()
        now = self._clock()
        self._run_bounds(now)
        batches: list[Batch] = []
        while not batches:
            rows = self._rows_after(self._cursor, max_samples)
            if not rows:
                break
            damaged: list[tuple[_Row, str]] = []
            for row in rows:
                batch_id, appended_at, count, crc, body = row
                try:
                    if zlib.crc32(body) != crc:
                        raise CorruptBatchError(f"CRC mismatch: stored {crc:#010x}, computed {zlib.crc32(body):#010x}")
                    samples = decode_batch(body)
                    if len(samples) != count:
                        raise CorruptBatchError(f"{len(samples)} samples decoded, {count} recorded")
                except CorruptBatchError as exc:
                    damaged.append((row, str(exc)))
                    continue
                batches.append(Batch(batch_id, samples, appended_at, batch_id <= self._recovered_up_to))
            if damaged:
                reports.extend(self._quarantine(damaged, now))
            self._cursor = rows[-1][0]
        self._in_flight.update(batch.id for batch in batches)
        self._report(reports)
        return batches

    def ack(self, batch_ids: Sequence[int]) -> None:
        """Remove batches the broker acknowledged; unknown ids are ignored.

        After `close` this does nothing: the batch stays stored and is replayed (at least once).
        """
        ids = sorted(set(batch_ids))
        if not ids:
            return
        if self._closed:
            return
        removed = _Totals()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                statement = _DELETE_IDS.format(marks=",".join("?" * len(chunk)))
                for samples, size in self._db.execute(statement, chunk).fetchall():
                    removed.batches += 1
                    removed.samples += samples
                    removed.bytes += size + ROW_OVERHEAD_BYTES
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._in_flight.difference_update(ids)
        self._remove(removed)

    def claim(self, batch_id: int) -> bool:
        """Hand out a batch just appended, if nothing older waits; return whether it is now in flight.

        The fast path of a publisher without a backlog: it publishes the batch it holds in memory
        instead of reading it back with `pending()`, which never returns a claimed batch.
        """
        self._check_open()
        if batch_id <= self._cursor:
            return False
        if batch_id == self._appended[1] and self._cursor >= self._appended[0]:
            # The latest append, and everything stored before it is handed out already.
            self._cursor = batch_id
            self._in_flight.add(batch_id)
            return True
        older = self._db.execute(
            "SELECT 1 FROM batch WHERE id > ? AND id < ? LIMIT 1", (self._cursor, batch_id)
        ).fetchone()
        if older is not None:
            return False
        exists = self._db.execute("SELECT 1 FROM batch WHERE id = ?", (batch_id,)).fetchone()
        if exists is None:
            return False
        self._cursor = batch_id
        self._in_flight.add(batch_id)
        return True

    def set_aside(self, batch_id: int, unfit: Mapping[str, Sequence[Sample]], *, remove: bool) -> None:
        """Move samples that no longer fit the configuration to the `unfit` table, by reason.

        `remove`: nothing else of the batch is left to publish, so the stored batch goes in the
        same transaction; otherwise it stays until its other samples are acknowledged. Setting
        aside the same batch and reason again (after a restart) replaces the earlier row. The
        newest `UNFIT_KEEP` rows are kept.
        """
        self._check_open()
        now = self._clock()
        row = self._db.execute("SELECT appended_at FROM batch WHERE id = ?", (batch_id,)).fetchone()
        appended_at = now if row is None else float(row[0])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for reason, samples in unfit.items():
                body = encode_batch(samples)
                self._db.execute(
                    "INSERT OR REPLACE INTO unfit VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (batch_id, str(reason), appended_at, len(samples), zlib.crc32(body), body, now),
                )
            self._db.execute(
                "DELETE FROM unfit WHERE rowid NOT IN (SELECT rowid FROM unfit ORDER BY set_aside_at DESC,"
                " rowid DESC LIMIT ?)",
                (UNFIT_KEEP,),
            )
            removed = _Totals()
            if remove:
                for samples, size in self._db.execute(_DELETE_IDS.format(marks="?"), (batch_id,)).fetchall():
                    removed = _Totals(1, samples, size + ROW_OVERHEAD_BYTES)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if remove:
            self._in_flight.discard(batch_id)
            self._remove(removed)

    def requeue_in_flight(self) -> None:
        """Hand out the in-flight batches again, first and in order (the session dropped)."""
        self._check_open()
        self._in_flight.clear()
        self._cursor = 0

    @property
    def fill(self) -> float:
        """Stored bytes as a fraction of `max_bytes` (above 1 only for one oversized batch)."""
        return self._totals.bytes / self.max_bytes

    @property
    def pressure(self) -> bool:
        """Whether sources should slow down: on from `high_watermark` until below `low_watermark`."""
        return self._pressure

    def stats(self) -> OutboxStats:
        """Return the fill level and counters (read-only: bounds apply on append and pending)."""
        self._check_open()
        oldest = self._oldest_appended_at()
        totals = self._totals
        disk = sum(
            p.stat().st_size for p in (self.directory / DB_NAME, self.directory / f"{DB_NAME}-wal") if p.exists()
        )
        return OutboxStats(
            batches=totals.batches,
            samples=totals.samples,
            bytes=totals.bytes,
            in_flight_batches=len(self._in_flight),
            oldest_age_s=None if oldest is None else max(0.0, self._clock() - oldest),
            dropped=MappingProxyType(dict(self._dropped)),
            corrupt_batches=self._corrupt_batches,
            corrupt_files=self._corrupt_files,
            fill=min(1.0, totals.bytes / self.max_bytes),
            pressure=self._pressure,
            disk_bytes=disk,
        )

    def close(self) -> None:
        """Close the database and release the directory; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._db.close()
        self._lock_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"{self.directory}: the outbox is closed")

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _rows_after(self, cursor: int, max_samples: int) -> list[_Row]:
        rows: list[_Row] = []
        total = 0
        query = "SELECT id, appended_at, samples, crc, body FROM batch WHERE id > ? ORDER BY id"
        with contextlib.closing(self._db.execute(query, (cursor,))) as found:  # ends the read at once
            for row in found:
                if rows and total + row[2] > max_samples:
                    break
                rows.append(row)
                total += row[2]
                if total >= max_samples:
                    break
        return rows

    def _oldest_appended_at(self) -> float | None:
        if self._oldest_at is None and self._totals.batches:
            row = self._db.execute("SELECT appended_at FROM batch ORDER BY id LIMIT 1").fetchone()
            self._oldest_at = None if row is None else float(row[0])
        return self._oldest_at

    def _over_bounds(self, now: float, extra_bytes: int = 0) -> bool:
        if self._totals.bytes + extra_bytes > self.max_bytes:
            return True
        oldest = self._oldest_appended_at()
        return oldest is not None and oldest < now - self.max_age_s

    def _run_bounds(self, now: float) -> None:
        """Drop what is over a bound, in a transaction of its own."""
        if not self._over_bounds(now):
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (newest_id,) = self._db.execute("SELECT coalesce(max(id), 0) FROM batch").fetchone()
            drops = self._delete_over_bounds(now, newest_id=newest_id, pending=_Totals())
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._apply_drops(drops)

    def _delete_over_bounds(self, now: float, *, newest_id: int, pending: _Totals) -> _Drops:
        """Delete, oldest first, the batches that are too old or do not fit.

        The newest batch is never dropped to make room (it is only as old as the clock says).
        """
        drops = _Drops()
        if not self._over_bounds(now, pending.bytes):
            return drops
        cutoff = now - self.max_age_s
        stored = self._totals.bytes + pending.bytes
        query = "SELECT id, appended_at, samples, length(body) FROM batch ORDER BY id"
        with contextlib.closing(self._db.execute(query)) as oldest_first:  # closed before the DELETE
            for batch_id, appended_at, samples, body_size in oldest_first:
                size = body_size + ROW_OVERHEAD_BYTES
                if appended_at < cutoff:
                    drops.add(DropReason.MAX_AGE, batch_id, samples, size)
                elif stored > self.max_bytes and batch_id != newest_id:
                    drops.add(DropReason.MAX_BYTES, batch_id, samples, size)
                else:
                    break
                stored -= size
        if drops.batches:
            self._db.execute("DELETE FROM batch WHERE id <= ?", (drops.last_id,))
        return drops

    def _apply_drops(self, drops: _Drops) -> None:
        if not drops.batches:
            return
        removed = _Totals(batches=drops.batches)
        for reason, dropped in drops.by_reason.items():
            before = self._dropped.get(reason, Dropped())
            self._dropped[reason] = Dropped(before.samples + dropped.samples, before.bytes + dropped.bytes)
            removed.samples += dropped.samples
            removed.bytes += dropped.bytes
            _log.debug("outbox dropped %d samples (%d bytes): %s", dropped.samples, dropped.bytes, reason)
        self._in_flight = {i for i in self._in_flight if i > drops.last_id}
        self._remove(removed)

    def _remove(self, removed: _Totals) -> None:
        if not removed.batches:
            return
        self._totals = _Totals(
            self._totals.batches - removed.batches,
            self._totals.samples - removed.samples,
            self._totals.bytes - removed.bytes,
        )
        self._oldest_at = None
        self._update_pressure()

    def _update_pressure(self) -> None:
        fill = self.fill
        if not self._pressure and fill >= self.high_watermark:
            self._pressure = True
        elif self._pressure and fill < self.low_watermark:
            self._pressure = False

    def _quarantine(self, damaged: list[tuple[_Row, str]], now: float) -> Iterator[CorruptionReport]:
        removed = _Totals()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for (batch_id, appended_at, samples, crc, body), reason in damaged:
                self._db.execute(
                    "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (batch_id, appended_at, samples, crc, body, now, reason),
                )
                self._db.execute("DELETE FROM batch WHERE id = ?", (batch_id,))
                removed.batches += 1
                removed.samples += samples
                removed.bytes += len(body) + ROW_OVERHEAD_BYTES
            self._db.execute(
                "DELETE FROM quarantine WHERE id NOT IN (SELECT id FROM quarantine ORDER BY id DESC LIMIT ?)",
                (QUARANTINE_KEEP,),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._corrupt_batches += len(damaged)
        self._remove(removed)
        return (
            CorruptionReport("batch", f"batch {row[0]}: {reason}; moved to quarantine", row[0], samples=row[2])
            for row, reason in damaged
        )

    def _report(self, reports: list[CorruptionReport]) -> None:
        for report in reports:
            _log.warning("outbox %s damaged in %s: %s", report.kind, self.directory, report.detail)
            if self._on_corrupt is not None:
                self._on_corrupt(report)
