"""Each protocol's own status codes mapped onto the one Quality scale (good, uncertain, bad).

The mapping is lossy on purpose: a Sample carries `quality` for consumers that only need the
scale, and the caller keeps the protocol's own code as `Sample.protocol_code`, so nothing the
PLC said is thrown away. One table per protocol, pure functions, no I/O and no protocol
library imports (the bare package must import without asyncua, snap7 or pycomm3).
"""

from __future__ import annotations

from collections.abc import Mapping

from plantline.connectors.samples import Quality

# -- OPC UA (Part 4, 7.39 StatusCode) ------------------------------------------------------------
#
# A StatusCode is a UInt32. Bits 31..30 are the severity: 00 Good, 01 Uncertain, 10 Bad, and 11
# is reserved, which the spec says clients shall treat as Bad. Bits 29..16 are the sub-code
# (e.g. CommunicationError), the low 16 bits are structure-changed, semantics-changed and the
# info bits (e.g. the Overflow bit a server sets when a monitored-item queue discarded values).
# None of the lower bits changes the quality; they travel in `protocol_code`.

OPCUA_SEVERITY_MASK = 0xC000_0000
OPCUA_SEVERITY_GOOD = 0x0000_0000
OPCUA_SEVERITY_UNCERTAIN = 0x4000_0000
_UINT32_MAX = 0xFFFF_FFFF


def opcua_quality(status_code: int) -> Quality:
    """Return the quality an OPC UA StatusCode stands for, from its severity bits.

    Raises ValueError for a number that is not a UInt32, since that is a programming error,
    not something a server can send.
    """
    if not 0 <= status_code <= _UINT32_MAX:
        raise ValueError(f"an OPC UA StatusCode is a UInt32, got {status_code!r}")
    severity = status_code & OPCUA_SEVERITY_MASK
    if severity == OPCUA_SEVERITY_GOOD:
        return Quality.GOOD
    if severity == OPCUA_SEVERITY_UNCERTAIN:
        return Quality.UNCERTAIN
    return Quality.BAD  # 10 Bad, and 11 (reserved) which Part 4 says to treat as Bad


# -- Siemens S7 (S7comm "classic", as python-snap7 speaks it) ------------------------------------
#
# A read job answers with one data item per requested variable, each with a one-byte return code
# (0xFF success; 0x0A object does not exist, e.g. a DB that is not loaded; 0x05 address out of
# range; 0x03 access denied; ...). A job the CPU refuses as a whole carries an error class and
# code in its header instead (class 0x81..0x87); the S7 source reports such a refusal for every
# variable of the job, as `(class << 8) | code`, so the two kinds never overlap: item return codes
# are < 0x100, header errors are >= 0x100. S7 has no "uncertain" status: data the CPU returns is
# current, and anything else comes without data and is bad. Connection-level failures (refused,
# reset, timed out) yield no samples at all: the source goes to BACKOFF, and the runtime reports
# the device dead.

S7_ITEM_OK = 0xFF
S7_ITEM_RETURN_CODES: Mapping[int, str] = {
    0x00: "reserved (no data)",
    0x01: "hardware fault",
    0x03: "access to the object not allowed",
    0x05: "address out of range",
    0x06: "data type not supported",
    0x07: "data type inconsistent (size mismatch)",
    0x0A: "object does not exist (e.g. the DB is not loaded in the CPU)",
    S7_ITEM_OK: "success",
}
S7_HEADER_ERROR_CLASSES: Mapping[int, str] = {
    0x81: "application relationship error",
    0x82: "object definition error",
    0x83: "no resources available",
    0x84: "error on service processing",
    0x85: "error on supplies",
    0x87: "access error",
}
_S7_HEADER_CODE_MAX = 0xFFFF


def s7_quality(code: int) -> Quality:
    """Return the quality of an S7 item return code or `(error class << 8) | error code`.

    0xFF (success) is good; every other code is bad (see above: S7 has no uncertain data).
    Raises ValueError for a number that is neither (not within 0..0xFFFF).
    """
    if not 0 <= code <= _S7_HEADER_CODE_MAX:
        raise ValueError(f"an S7 return code is a byte, a header error two bytes; got {code!r}")
    return Quality.GOOD if code == S7_ITEM_OK else Quality.BAD


def s7_describe(code: int) -> str:
    """Return a readable text for an S7 item return code or header error, with the code in hex."""
    if code <= 0xFF:
        text = S7_ITEM_RETURN_CODES.get(code, "unknown item return code")
        return f"item return code 0x{code:02X}: {text}"
    error_class, error_code = code >> 8, code & 0xFF
    text = S7_HEADER_ERROR_CLASSES.get(error_class, "unknown error class")
    return f"job refused, error class 0x{error_class:02X} ({text}), code 0x{error_code:02X}"


# -- EtherNet/IP CIP (Logix) ----------------------------------------------------------------------
#
# Every CIP reply carries a one-byte general status (CIP Vol. 1, Appendix B), per embedded
# service in a Multiple Service Packet, so each tag of a batched read has its own. 0x00 is
# success. 0x06 ("partial transfer": only part of the data fitted the reply) is the one status
# that comes with data, which is incomplete: uncertain. Everything else comes without data:
# bad. The extended status that may follow travels in the log message, the general status in
# `protocol_code`.

CIP_SUCCESS = 0x00
CIP_PARTIAL_TRANSFER = 0x06
CIP_GENERAL_STATUS: Mapping[int, str] = {
    0x00: "success",
    0x01: "connection failure",
    0x02: "resource unavailable",
    0x03: "invalid parameter value",
    0x04: "path segment error (the tag name or request path does not parse)",
    0x05: "path destination unknown (no such tag, or no such element)",
    0x06: "partial transfer (only part of the data was returned)",
    0x07: "connection lost",
    0x08: "service not supported",
    0x09: "invalid attribute value",
    0x0A: "attribute list error",
    0x0B: "already in requested mode/state",
    0x0C: "object state conflict",
    0x0D: "object already exists",
    0x0E: "attribute not settable",
    0x0F: "privilege violation",
    0x10: "device state conflict",
    0x11: "reply data too large",
    0x12: "fragmentation of a primitive value",
    0x13: "not enough data",
    0x14: "attribute not supported",
    0x15: "too much data",
    0x16: "object does not exist",
    0x1E: "embedded service error",
    0x1F: "vendor specific error",
    0x20: "invalid parameter",
    0x26: "path size invalid",
    0xFF: "general error (Logix: see the extended status, e.g. access beyond the end of the object)",
}


def cip_quality(general_status: int) -> Quality:
    """Return the quality of a CIP general status: 0x00 good, 0x06 uncertain, anything else bad.

    Raises ValueError for a number that is not a byte.
    """
    if not 0 <= general_status <= 0xFF:
        raise ValueError(f"a CIP general status is a byte, got {general_status!r}")
    if general_status == CIP_SUCCESS:
        return Quality.GOOD
    if general_status == CIP_PARTIAL_TRANSFER:
        return Quality.UNCERTAIN
    return Quality.BAD


def cip_describe(general_status: int) -> str:
    """Return a readable text for a CIP general status, with the status in hex."""
    text = CIP_GENERAL_STATUS.get(general_status, "unknown general status")
    return f"CIP general status 0x{general_status:02X}: {text}"
