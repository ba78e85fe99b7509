"""OPC UA addressing, pure: the endpoint URL of a server, `opc.tcp://HOST[:PORT][/PATH]`.

The configuration validates with this; the OPC UA source hands the URL itself to its client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEME = "opc.tcp"
DEFAULT_PORT = 4840


@dataclass(frozen=True)
class OpcUaEndpoint:
    """Where an OPC UA server listens: host and TCP port."""

    host: str
    port: int = DEFAULT_PORT


def parse_opcua_endpoint(endpoint: str) -> OpcUaEndpoint:
    """Return the host and port of `opc.tcp://HOST[:PORT][/PATH]`; raise ValueError naming the problem."""
    example = f"expected {SCHEME}://HOST:PORT/..."
    parts = urlsplit(endpoint)
    if parts.scheme != SCHEME or not parts.hostname:
        raise ValueError(f"endpoint: {endpoint!r}: {example}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"endpoint: {endpoint!r}: the port is not a number within 1..65535") from None
    return OpcUaEndpoint(parts.hostname, port)
