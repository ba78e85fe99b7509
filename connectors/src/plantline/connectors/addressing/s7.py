"""S7 absolute addresses and values: `parse_s7_address(text, datatype)` and `decode`/`encode_into`.

Pure: no I/O and no snap7 import, so addresses are validated and values decoded without a PLC.

Syntax (classic Siemens absolute addressing, English mnemonics; upper or lower case):

    DB10.DBX4.1     bit 1 of byte 4 of DB10          M10.2  MX10.2   I0.1  IX0.1   Q0.1  QX0.1
    DB10.DBB0       the byte at 0                     MB20   IB0      QB0
    DB10.DBW2       the word (2 bytes) at 2           MW20   IW0      QW0
    DB10.DBD4       the double word (4 bytes) at 4    MD24   ID0      QD0
    DB10.DBL8       8 bytes at 8 (LREAL, LINT)        ML8    IL0      QL0
    DB10.DBS20.32   a STRING[32] at 20 (34 bytes)     MS20.32          (length 1..254, default 254)

`I`/`Q` may also be written with the German `E`/`A`. The `L` (8 bytes) and `S` (string) letters
are this project's extensions: the classic syntax has no letter for them.

The size letter and the tag's declared datatype must agree:

    bool -> BOOL (X)   uint8 -> BYTE (B)   int8 -> SINT (B)   int16 -> INT (W)   uint16 -> WORD (W)
    int32 -> DINT (D)  uint32 -> DWORD (D) float -> REAL (D)  double -> LREAL (L)
    int64 -> LINT (L)  uint64 -> ULINT (L) string -> STRING (S)

Values are big-endian, as S7 stores them. A STRING is a maximum-length byte, a current-length
byte and the characters (one byte each, Latin-1); `datetime` has no S7 mapping here (the S7
DATE_AND_TIME is BCD and is not supported).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from plantline.connectors.samples import Value


class S7Area(enum.IntEnum):
    """A memory area of an S7 CPU, valued by its S7comm area code."""

    I = 0x81  # process inputs (German E)  # noqa: E741 -- the area's own name
    Q = 0x82  # process outputs (German A)
    M = 0x83  # flags / markers (merker)
    DB = 0x84  # data blocks


class S7Type(enum.Enum):
    """An S7 elementary type: (name, size in bytes, struct format or None)."""

    BOOL = ("BOOL", 1, None)
    BYTE = ("BYTE", 1, ">B")
    SINT = ("SINT", 1, ">b")
    INT = ("INT", 2, ">h")
    WORD = ("WORD", 2, ">H")
    DINT = ("DINT", 4, ">i")
    DWORD = ("DWORD", 4, ">I")
    REAL = ("REAL", 4, ">f")
    LREAL = ("LREAL", 8, ">d")
    LINT = ("LINT", 8, ">q")
    ULINT = ("ULINT", 8, ">Q")
    STRING = ("STRING", 0, None)  # size depends on the declared maximum length

    @property
    def width(self) -> int:
        width: int = self.value[1]
        return width

    @property
    def fmt(self) -> str | None:
        fmt: str | None = self.value[2]
        return fmt


# Our config datatypes (config.DataTypeName) -> S7 type.
S7_TYPES: Final[dict[str, S7Type]] = {
    "bool": S7Type.BOOL,
    "uint8": S7Type.BYTE,
    "int8": S7Type.SINT,
    "int16": S7Type.INT,
    "uint16": S7Type.WORD,
    "int32": S7Type.DINT,
    "uint32": S7Type.DWORD,
    "float": S7Type.REAL,
    "double": S7Type.LREAL,
    "int64": S7Type.LINT,
    "uint64": S7Type.ULINT,
    "string": S7Type.STRING,
}
# Size letter -> the width it stands for ("X" a bit, "S" a string).
_LETTER_WIDTH: Final[dict[str, int]] = {"B": 1, "W": 2, "D": 4, "L": 8}
_LETTER_OF: Final[dict[int, str]] = {1: "B", 2: "W", 4: "D", 8: "L"}

MAX_DB = 65535
MAX_BYTE = (1 << 21) - 1  # the S7-ANY address is 24 bits of *bit* address
MAX_STRING = 254
DEFAULT_STRING = 254

_AREA_NAMES: Final[dict[str, S7Area]] = {"I": S7Area.I, "E": S7Area.I, "Q": S7Area.Q, "A": S7Area.Q, "M": S7Area.M}
_DB = re.compile(r"DB(?P<db>\d+)\.DB(?P<letter>[XBWDLS])(?P<byte>\d+)(?:\.(?P<extra>\d+))?")
_OTHER = re.compile(r"(?P<area>[IEQAM])(?P<letter>[XBWDLS]?)(?P<byte>\d+)(?:\.(?P<extra>\d+))?")


class S7AddressError(ValueError):
    """An S7 address that does not parse or does not fit its datatype; the message says why."""


class S7DecodeError(ValueError):
    """Bytes the PLC returned that are not a valid value of the tag's type (e.g. a bad STRING)."""


@dataclass(frozen=True)
class S7Location:
    """Where one tag lives in the PLC and how to read it: area, DB, byte, bit, type, byte size."""

    area: S7Area
    db: int  # 0 outside the DB area
    start: int  # byte offset
    bit: int | None  # 0..7 for BOOL, else None
    type: S7Type
    size: int  # bytes to read: the type's width, or 2 + maximum length for a STRING

    @property
    def end(self) -> int:
        """The byte offset just past this tag."""
        return self.start + self.size

    @property
    def string_length(self) -> int:
        """The declared maximum length of a STRING (0 for other types)."""
        return self.size - 2 if self.type is S7Type.STRING else 0

    def __str__(self) -> str:
        """The canonical spelling of the address, e.g. `DB10.DBW2` or `MX10.2`."""
        if self.type is S7Type.BOOL:
            letter, extra = "X", f".{self.bit}"
        elif self.type is S7Type.STRING:
            letter, extra = "S", f".{self.string_length}"
        else:
            letter, extra = _LETTER_OF[self.size], ""
        prefix = f"DB{self.db}.DB" if self.area is S7Area.DB else self.area.name
        return f"{prefix}{letter}{self.start}{extra}"


def _number(text: str, what: str, address: str, high: int, low: int = 0) -> int:
    value = int(text)
    if not low <= value <= high:
        raise S7AddressError(f"{address!r}: {what} {value} is out of range ({low}..{high})")
    return value


def parse_s7_address(address: str, datatype: str) -> S7Location:
    """Return where the tag `address` of config datatype `datatype` lives, or raise S7AddressError."""
    s7_type = S7_TYPES.get(datatype)
    if s7_type is None:
        supported = ", ".join(S7_TYPES)
        raise S7AddressError(f"{address!r}: datatype {datatype!r} has no S7 mapping (supported: {supported})")
    text = address.strip().upper()
    found = _DB.fullmatch(text)
    if found is not None:
        area, db = S7Area.DB, _number(found["db"], "DB number", address, MAX_DB, 1)
    else:
        found = _OTHER.fullmatch(text)
        if found is None:
            examples = "DB10.DBW2, DB10.DBX4.1, DB10.DBS20.32, M10.2, MW20, IB0, QX0.1"
            raise S7AddressError(f"{address!r} is not an S7 address (e.g. {examples})")
        area, db = _AREA_NAMES[found["area"]], 0
    letter = found["letter"] or "X"  # `M10.2` is the bit form
    start = _number(found["byte"], "byte offset", address, MAX_BYTE)
    extra = found["extra"]
    if letter == "X":
        if extra is None:
            raise S7AddressError(f"{address!r}: a bit address needs the bit number (e.g. {text}.0)")
        bit = _number(extra, "bit number", address, 7)
        _check_type(address, s7_type, letter, 1)
        return S7Location(area, db, start, bit, S7Type.BOOL, 1)
    if letter == "S":
        length = DEFAULT_STRING if extra is None else _number(extra, "string length", address, MAX_STRING, 1)
        _check_type(address, s7_type, letter, 0)
        return S7Location(area, db, start, None, S7Type.STRING, length + 2)
    if extra is not None:
        raise S7AddressError(f"{address!r}: only bit (X) and string (S) addresses take a second number")
    width = _LETTER_WIDTH[letter]
    _check_type(address, s7_type, letter, width)
    return S7Location(area, db, start, None, s7_type, width)


def _check_type(address: str, s7_type: S7Type, letter: str, width: int) -> None:
    if letter == "X":
        ok = s7_type is S7Type.BOOL
    elif letter == "S":
        ok = s7_type is S7Type.STRING
    else:
        ok = s7_type not in (S7Type.BOOL, S7Type.STRING) and s7_type.width == width
    if not ok:
        wanted = _expected_letter(s7_type)
        raise S7AddressError(
            f"{address!r}: the size letter {letter!r} does not fit an S7 {s7_type.name}; "
            f"a {s7_type.name} is addressed with {wanted!r}"
        )


def _expected_letter(s7_type: S7Type) -> str:
    if s7_type is S7Type.BOOL:
        return "X"
    if s7_type is S7Type.STRING:
        return "S"
    return _LETTER_OF[s7_type.width]


# -- values ---------------------------------------------------------------------------------------


def decode(location: S7Location, data: bytes) -> Value:
    """Return the value of `location` from exactly its `size` bytes, big-endian per its S7 type.

    Raises S7DecodeError for a STRING whose length bytes are inconsistent, and ValueError when
    `data` is not `location.size` bytes long (a programming error).
    """
    if len(data) != location.size:
        raise ValueError(f"{location}: expected {location.size} bytes, got {len(data)}")
    if location.type is S7Type.BOOL:
        return bool(data[0] >> (location.bit or 0) & 1)
    if location.type is S7Type.STRING:
        maximum, current = data[0], data[1]
        if current > maximum:
            raise S7DecodeError(f"{location}: STRING current length {current} exceeds its maximum {maximum}")
        if current > location.string_length:
            raise S7DecodeError(
                f"{location}: STRING of length {current} is longer than the declared {location.string_length}"
            )
        return bytes(data[2 : 2 + current]).decode("latin-1")
    fmt = location.type.fmt
    if fmt is None:  # pragma: no cover -- every other type has a format
        raise ValueError(f"{location}: no format for {location.type.name}")
    value: Value = struct.unpack(fmt, data)[0]
    return value


def encode_into(buffer: bytearray, location: S7Location, value: Value, *, base: int = 0) -> None:
    """Write `value` at `location` into `buffer` (whose byte 0 is PLC byte `base`).

    Bits are set or cleared in place, leaving the other bits of their byte; a STRING writes its
    declared maximum length, the current length and the characters. Raises ValueError for a
    value that does not fit the type (wrong Python type, out of range, a too long string).
    """
    at = location.start - base
    if at < 0 or at + location.size > len(buffer):
        raise ValueError(f"{location}: outside the buffer (bytes {base}..{base + len(buffer) - 1})")
    if location.type is S7Type.BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{location}: a BOOL needs a bool, got {value!r}")
        mask = 1 << (location.bit or 0)
        buffer[at] = buffer[at] | mask if value else buffer[at] & ~mask
        return
    if location.type is S7Type.STRING:
        if not isinstance(value, str):
            raise ValueError(f"{location}: a STRING needs a str, got {value!r}")
        raw = value.encode("latin-1")
        if len(raw) > location.string_length:
            raise ValueError(f"{location}: {len(raw)} characters do not fit a STRING[{location.string_length}]")
        buffer[at : at + location.size] = bytes([location.string_length, len(raw)]) + raw.ljust(
            location.string_length, b"\x00"
        )
        return
    fmt = location.type.fmt
    if fmt is None or isinstance(value, bool | str):
        raise ValueError(f"{location}: an S7 {location.type.name} needs a number, got {value!r}")
    if location.type not in (S7Type.REAL, S7Type.LREAL) and not isinstance(value, int):
        raise ValueError(f"{location}: an S7 {location.type.name} needs an int, got {value!r}")
    try:
        buffer[at : at + location.size] = struct.pack(fmt, value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{location}: {value!r} does not fit an S7 {location.type.name}: {exc}") from None


# -- endpoints ---------------------------------------------------------------------------------

DEFAULT_PORT = 102
DEFAULT_RACK = 0
DEFAULT_SLOT = 1
DEFAULT_PDU = 480
_RANGES = {"rack": (0, 7), "slot": (0, 31), "pdu": (240, 960)}


@dataclass(frozen=True)
class S7Endpoint:
    """Where an S7 CPU is: host, TCP port, rack and slot, and the PDU size to ask for."""

    host: str
    port: int = DEFAULT_PORT
    rack: int = DEFAULT_RACK
    slot: int = DEFAULT_SLOT
    pdu: int = DEFAULT_PDU


def parse_s7_endpoint(endpoint: str) -> S7Endpoint:
    """Return the parts of `s7://HOST[:PORT][?rack=R&slot=S&pdu=N]`; raise ValueError naming the problem."""
    example = "expected s7://HOST[:PORT][?rack=0&slot=1&pdu=480]"
    parts = urlsplit(endpoint)
    if parts.scheme != "s7" or not parts.hostname:
        raise ValueError(f"endpoint: {endpoint!r}: {example}")
    if parts.path not in ("", "/") or parts.fragment or parts.username or parts.password:
        raise ValueError(f"endpoint: {endpoint!r}: unexpected path, fragment or user; {example}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"endpoint: {endpoint!r}: the port is not a number within 1..65535") from None
    options: dict[str, int] = {}
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"endpoint: {endpoint!r}: the query does not parse; {example}") from None
    for key, text in query:
        if key not in _RANGES:
            raise ValueError(f"endpoint: {endpoint!r}: unknown option {key!r} (rack, slot, pdu)")
        if key in options:
            raise ValueError(f"endpoint: {endpoint!r}: {key} is given twice")
        low, high = _RANGES[key]
        if not text.isdigit() or not low <= int(text) <= high:
            raise ValueError(f"endpoint: {endpoint!r}: {key} must be a whole number within {low}..{high}")
        options[key] = int(text)
    return S7Endpoint(parts.hostname, port, **options)
