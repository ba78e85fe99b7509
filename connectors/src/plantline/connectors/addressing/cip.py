"""EtherNet/IP (Logix) addressing, pure: endpoints, tag addresses and the declared CIP types.

The configuration model validates with these, and the CIP source reads with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

DEFAULT_PORT = 44818
CIP_TYPES: Final[dict[str, str]] = {
    "bool": "BOOL",
    "int8": "SINT",
    "int16": "INT",
    "int32": "DINT",
    "int64": "LINT",
    "uint8": "USINT",
    "uint16": "UINT",
    "uint32": "UDINT",
    "uint64": "ULINT",
    "float": "REAL",
    "double": "LREAL",
    "string": "STRING",
}
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,39}"
_ADDRESS = re.compile(rf"(?P<base>(?:Program:{_NAME}\.)?{_NAME})(?:\[(?P<index>\d{{1,9}})\])?")


@dataclass(frozen=True)
class CipEndpoint:
    """Where a Logix controller is: host, TCP port and the slot of the controller."""

    host: str
    port: int = DEFAULT_PORT
    slot: int | None = None

    @property
    def path(self) -> str:
        """The connection path pycomm3 takes: `HOST:PORT` or `HOST:PORT/SLOT`."""
        return f"{self.host}:{self.port}" + (f"/{self.slot}" if self.slot is not None else "")


def parse_cip_endpoint(endpoint: str) -> CipEndpoint:
    """Return the parts of `cip://HOST[:PORT][/SLOT]`; raise ValueError naming the problem."""
    example = "expected cip://HOST[:PORT][/SLOT]"
    parts = urlsplit(endpoint)
    if parts.scheme != "cip" or not parts.hostname:
        raise ValueError(f"endpoint: {endpoint!r}: {example}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"endpoint: {endpoint!r}: unexpected query, fragment or user; {example}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"endpoint: {endpoint!r}: the port is not a number within 1..65535") from None
    slot_text = parts.path.removeprefix("/")
    if slot_text == "":
        return CipEndpoint(parts.hostname, port)
    if not slot_text.isdigit() or int(slot_text) > 255:
        raise ValueError(f"endpoint: {endpoint!r}: the slot must be a whole number within 0..255")
    return CipEndpoint(parts.hostname, port, int(slot_text))


@dataclass(frozen=True)
class LogixAddress:
    """A Logix tag (`base`), or one element of a one-dimensional array tag (`base[index]`)."""

    base: str
    index: int | None = None

    def __str__(self) -> str:
        return self.base if self.index is None else f"{self.base}[{self.index}]"


def parse_logix_address(address: str) -> LogixAddress:
    """Return the tag name and element index of `address`; raise ValueError saying what is wrong."""
    found = _ADDRESS.fullmatch(address.strip())
    if found is not None:
        index = found["index"]
        return LogixAddress(found["base"], int(index) if index is not None else None)
    if re.fullmatch(rf"{_ADDRESS.pattern}\.\d+", address):
        problem = "bits of integers are not supported (read the integer)"
    elif re.search(r"\[\d+,", address):
        problem = "multi-dimensional array elements are not supported"
    elif "." in address.removeprefix("Program:").split(".", 1)[-1] or re.fullmatch(rf"{_NAME}\.{_NAME}", address):
        problem = "structure members are not supported (their types come from the controller)"
    else:
        problem = "not a Logix tag name (e.g. Filler_state_run, Program:Main.Count, Counts[3])"
    raise ValueError(f"{address!r}: {problem}")
