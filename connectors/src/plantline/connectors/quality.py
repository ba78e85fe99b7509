"""Each protocol's own status codes mapped onto the one Quality scale (good, uncertain, bad).

The mapping is lossy on purpose: a Sample carries `quality` for consumers that only need the
scale, and the caller keeps the protocol's own code as `Sample.protocol_code`, so nothing the
PLC said is thrown away. One table per protocol, pure functions, no I/O and no protocol
library imports (the bare package must import without asyncua, snap7 or pycomm3).
"""

from __future__ import annotations

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


# -- Siemens S7 (later) ---------------------------------------------------------------------------
#
# `s7_quality(return_code: int) -> Quality` will map the S7 data-item return codes
# (0xFF success; 0x0A object does not exist; 0x05 address out of range; 0x03 access denied; ...)
# and the connection-level errors of the S7 source.


# -- EtherNet/IP CIP (later) ----------------------------------------------------------------------
#
# `cip_quality(general_status: int) -> Quality` will map CIP general status codes
# (0x00 success; 0x04 path segment error; 0x05 path destination unknown; 0x08 service not
# supported; ...) as reported by the Logix source.
