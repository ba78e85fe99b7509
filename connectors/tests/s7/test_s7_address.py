"""S7 addresses parse to the right area, DB, byte, bit, type and size; bad ones say why."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantline.connectors.addressing.s7 import (
    S7AddressError,
    S7Area,
    S7DecodeError,
    S7Location,
    S7Type,
    decode,
    encode_into,
    parse_s7_address,
)


@pytest.mark.parametrize(
    ("address", "datatype", "expected"),
    [
        ("DB10.DBX4.1", "bool", S7Location(S7Area.DB, 10, 4, 1, S7Type.BOOL, 1)),
        ("DB10.DBB0", "uint8", S7Location(S7Area.DB, 10, 0, None, S7Type.BYTE, 1)),
        ("DB10.DBB1", "int8", S7Location(S7Area.DB, 10, 1, None, S7Type.SINT, 1)),
        ("DB10.DBW2", "int16", S7Location(S7Area.DB, 10, 2, None, S7Type.INT, 2)),
        ("DB10.DBW2", "uint16", S7Location(S7Area.DB, 10, 2, None, S7Type.WORD, 2)),
        ("DB10.DBD4", "int32", S7Location(S7Area.DB, 10, 4, None, S7Type.DINT, 4)),
        ("DB10.DBD4", "uint32", S7Location(S7Area.DB, 10, 4, None, S7Type.DWORD, 4)),
        ("DB10.DBD4", "float", S7Location(S7Area.DB, 10, 4, None, S7Type.REAL, 4)),
        ("DB10.DBL8", "double", S7Location(S7Area.DB, 10, 8, None, S7Type.LREAL, 8)),
        ("DB10.DBL8", "int64", S7Location(S7Area.DB, 10, 8, None, S7Type.LINT, 8)),
        ("DB10.DBL8", "uint64", S7Location(S7Area.DB, 10, 8, None, S7Type.ULINT, 8)),
        ("DB10.DBS20.32", "string", S7Location(S7Area.DB, 10, 20, None, S7Type.STRING, 34)),
        ("DB10.DBS20", "string", S7Location(S7Area.DB, 10, 20, None, S7Type.STRING, 256)),
        ("db1.dbw0", "int16", S7Location(S7Area.DB, 1, 0, None, S7Type.INT, 2)),
        ("DB65535.DBB0", "uint8", S7Location(S7Area.DB, 65535, 0, None, S7Type.BYTE, 1)),
        ("M10.2", "bool", S7Location(S7Area.M, 0, 10, 2, S7Type.BOOL, 1)),
        ("MX10.7", "bool", S7Location(S7Area.M, 0, 10, 7, S7Type.BOOL, 1)),
        ("MW20", "int16", S7Location(S7Area.M, 0, 20, None, S7Type.INT, 2)),
        ("MD24", "float", S7Location(S7Area.M, 0, 24, None, S7Type.REAL, 4)),
        ("MS30.10", "string", S7Location(S7Area.M, 0, 30, None, S7Type.STRING, 12)),
        ("IB0", "uint8", S7Location(S7Area.I, 0, 0, None, S7Type.BYTE, 1)),
        ("I0.1", "bool", S7Location(S7Area.I, 0, 0, 1, S7Type.BOOL, 1)),
        ("EW4", "int16", S7Location(S7Area.I, 0, 4, None, S7Type.INT, 2)),
        ("QX0.1", "bool", S7Location(S7Area.Q, 0, 0, 1, S7Type.BOOL, 1)),
        ("QB3", "int8", S7Location(S7Area.Q, 0, 3, None, S7Type.SINT, 1)),
        ("AD8", "uint32", S7Location(S7Area.Q, 0, 8, None, S7Type.DWORD, 4)),
        (" DB2.DBX2097151.0 ", "bool", S7Location(S7Area.DB, 2, 2097151, 0, S7Type.BOOL, 1)),
    ],
)
def test_addresses_parse(address: str, datatype: str, expected: S7Location) -> None:
    assert parse_s7_address(address, datatype) == expected


@pytest.mark.parametrize(
    ("address", "datatype", "canonical"),
    [
        ("db10.dbx4.1", "bool", "DB10.DBX4.1"),
        ("M10.2", "bool", "MX10.2"),
        ("EW4", "int16", "IW4"),
        ("A0.3", "bool", "QX0.3"),
        ("DB3.DBS0", "string", "DB3.DBS0.254"),
        ("DB10.DBL8", "double", "DB10.DBL8"),
    ],
)
def test_addresses_have_a_canonical_spelling(address: str, datatype: str, canonical: str) -> None:
    location = parse_s7_address(address, datatype)
    assert str(location) == canonical
    assert parse_s7_address(canonical, datatype) == location


@pytest.mark.parametrize(
    ("address", "datatype", "message"),
    [
        ("", "int16", "is not an S7 address"),
        ("DB10", "int16", "is not an S7 address"),
        ("DB10.DBW", "int16", "is not an S7 address"),
        ("DB10.W2", "int16", "is not an S7 address"),
        ("DB10.DBQ2", "int16", "is not an S7 address"),
        ("DB10,DBW2", "int16", "is not an S7 address"),
        ("DB-1.DBW2", "int16", "is not an S7 address"),
        ("T5", "int16", "is not an S7 address"),
        ("C5", "int16", "is not an S7 address"),
        ("PIW256", "int16", "is not an S7 address"),
        ("ns=2;s=Filler.State", "int16", "is not an S7 address"),
        ("DB0.DBW2", "int16", "DB number 0 is out of range (1..65535)"),
        ("DB65536.DBW2", "int16", "DB number 65536 is out of range"),
        ("DB1.DBW2097152", "int16", "byte offset 2097152 is out of range"),
        ("DB10.DBX4", "bool", "a bit address needs the bit number (e.g. DB10.DBX4.0)"),
        ("M10", "bool", "a bit address needs the bit number"),
        ("DB10.DBX4.8", "bool", "bit number 8 is out of range (0..7)"),
        ("DB10.DBW2.1", "int16", "only bit (X) and string (S) addresses take a second number"),
        ("DB10.DBS2.0", "string", "string length 0 is out of range (1..254)"),
        ("DB10.DBS2.255", "string", "string length 255 is out of range"),
        ("DB10.DBW2", "int32", "the size letter 'W' does not fit an S7 DINT; a DINT is addressed with 'D'"),
        ("DB10.DBD2", "int16", "the size letter 'D' does not fit an S7 INT; a INT is addressed with 'W'"),
        ("DB10.DBX2.0", "int16", "the size letter 'X' does not fit an S7 INT"),
        ("DB10.DBB2", "bool", "a BOOL is addressed with 'X'"),
        ("DB10.DBD2", "double", "a LREAL is addressed with 'L'"),
        ("DB10.DBB2", "string", "a STRING is addressed with 'S'"),
        ("DB10.DBS2.10", "int16", "the size letter 'S' does not fit an S7 INT"),
        ("DB10.DBW2", "datetime", "datatype 'datetime' has no S7 mapping"),
    ],
)
def test_bad_addresses_say_what_is_wrong(address: str, datatype: str, message: str) -> None:
    with pytest.raises(S7AddressError) as caught:
        parse_s7_address(address, datatype)
    assert message in str(caught.value)
    assert repr(address) in str(caught.value)


# -- values against bytes packed independently (struct, and hand-written bytes) --------------------


@pytest.mark.parametrize(
    ("address", "datatype", "data", "value"),
    [
        ("DB1.DBX0.0", "bool", b"\x01", True),
        ("DB1.DBX0.1", "bool", b"\x01", False),
        ("DB1.DBX0.7", "bool", b"\x80", True),
        ("DB1.DBB0", "uint8", b"\xff", 255),
        ("DB1.DBB0", "int8", b"\xff", -1),
        ("DB1.DBB0", "int8", b"\x80", -128),
        ("DB1.DBW0", "int16", b"\x80\x00", -32768),
        ("DB1.DBW0", "int16", b"\x04\xd2", 1234),
        ("DB1.DBW0", "uint16", b"\xab\xcd", 0xABCD),
        ("DB1.DBD0", "int32", b"\x80\x00\x00\x00", -(2**31)),
        ("DB1.DBD0", "uint32", b"\x12\x34\x56\x78", 0x12345678),
        ("DB1.DBD0", "float", b"\x3f\xc0\x00\x00", 1.5),
        ("DB1.DBD0", "float", b"\xc2\x28\x00\x00", -42.0),
        ("DB1.DBL0", "double", b"\x40\x09\x21\xfb\x54\x44\x2d\x18", 3.141592653589793),
        ("DB1.DBL0", "int64", b"\xff" * 8, -1),
        ("DB1.DBL0", "uint64", b"\xff" * 8, 2**64 - 1),
        ("DB1.DBS0.8", "string", b"\x08\x05hello\x00\x00\x00", "hello"),
        ("DB1.DBS0.4", "string", b"\x04\x00abcd", ""),
        ("DB1.DBS0.3", "string", b"\x03\x03\xe4\xf6\xfc", "äöü"),  # one byte per character, Latin-1
    ],
)
def test_values_decode_big_endian(address: str, datatype: str, data: bytes, value: object) -> None:
    location = parse_s7_address(address, datatype)
    decoded = decode(location, data)
    assert decoded == value
    assert type(decoded) is type(value)
    buffer = bytearray(b"\x00" * len(data) if datatype != "bool" else data[:1])
    if datatype != "bool":
        encode_into(buffer, location, decoded)
        assert decode(location, bytes(buffer)) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x04\x05abcd", "current length 5 exceeds its maximum 4"),
        (b"\xfe\x05abcd", "STRING of length 5 is longer than the declared 4"),
    ],
)
def test_inconsistent_strings_do_not_decode(data: bytes, message: str) -> None:
    with pytest.raises(S7DecodeError, match=message):
        decode(parse_s7_address("DB1.DBS0.4", "string"), data)


def test_decode_wants_exactly_the_location_size() -> None:
    with pytest.raises(ValueError, match="expected 2 bytes, got 3"):
        decode(parse_s7_address("DB1.DBW0", "int16"), b"\x00\x00\x00")


def test_bits_are_set_and_cleared_in_place() -> None:
    buffer = bytearray(b"\xf0")
    encode_into(buffer, parse_s7_address("DB1.DBX0.0", "bool"), True)
    encode_into(buffer, parse_s7_address("DB1.DBX0.7", "bool"), False)
    assert buffer == bytearray(b"\x71")


@pytest.mark.parametrize(
    ("address", "datatype", "value", "message"),
    [
        ("DB1.DBW0", "int16", 40000, "does not fit an S7 INT"),
        ("DB1.DBW0", "uint16", -1, "does not fit an S7 WORD"),
        ("DB1.DBW0", "int16", 1.5, "needs an int"),
        ("DB1.DBD0", "float", "x", "needs a number"),
        ("DB1.DBD0", "float", 1e40, "does not fit an S7 REAL"),
        ("DB1.DBX0.0", "bool", 1, "a BOOL needs a bool"),
        ("DB1.DBS0.2", "string", "abc", "3 characters do not fit a STRING[2]"),
        ("DB1.DBW9", "int16", 1, "outside the buffer"),
    ],
)
def test_encoding_refuses_values_that_do_not_fit(address: str, datatype: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(str(parse_s7_address(address, datatype)))) as caught:
        encode_into(bytearray(10), parse_s7_address(address, datatype), value)  # type: ignore[arg-type]
    assert message in str(caught.value)


_INTS = {
    "int8": (">b", -(2**7), 2**7 - 1, "B"),
    "uint8": (">B", 0, 2**8 - 1, "B"),
    "int16": (">h", -(2**15), 2**15 - 1, "W"),
    "uint16": (">H", 0, 2**16 - 1, "W"),
    "int32": (">i", -(2**31), 2**31 - 1, "D"),
    "uint32": (">I", 0, 2**32 - 1, "D"),
    "int64": (">q", -(2**63), 2**63 - 1, "L"),
    "uint64": (">Q", 0, 2**64 - 1, "L"),
}


@given(st.sampled_from(sorted(_INTS)), st.data())
def test_integers_round_trip_against_struct(datatype: str, data: st.DataObject) -> None:
    fmt, low, high, letter = _INTS[datatype]
    value = data.draw(st.integers(low, high))
    location = parse_s7_address(f"DB7.DB{letter}10", datatype)
    assert decode(location, struct.pack(fmt, value)) == value
    buffer = bytearray(20)
    encode_into(buffer, location, value)
    assert bytes(buffer[10 : 10 + location.size]) == struct.pack(fmt, value)


@given(st.floats(allow_nan=False, width=32))
def test_reals_round_trip(value: float) -> None:
    location = parse_s7_address("MD0", "float")
    assert decode(location, struct.pack(">f", value)) == value


@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=20))
def test_strings_round_trip(text: str) -> None:
    location = parse_s7_address("DB1.DBS4.20", "string")
    buffer = bytearray(30)
    encode_into(buffer, location, text)
    assert buffer[4:6] == bytes([20, len(text)])
    assert decode(location, bytes(buffer[4:26])) == text
