"""What every PlantLine MQTT client sets on its transport, whichever MQTT shell drives it.

The connectors' adapter (`plantline.connectors.mqtt`) and the hosts (the historian) share it, so a
broker endpoint means the same TLS settings and the same socket options everywhere.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from plantline.connectors.config import BrokerEndpoint


def tls_context(broker: BrokerEndpoint) -> ssl.SSLContext | None:
    """Return the mutual-TLS context (TLS 1.2 or newer) for the broker, or None for plain TCP."""
    if broker.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(broker.tls.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(broker.tls.cert_file), str(broker.tls.key_file))
    return context


def set_nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
    """Set TCP_NODELAY on a just-opened socket (paho's `on_socket_open` signature)."""
    # paho never sets it; without it Nagle holds PUBACKs and small publishes back (p99 up to 40 ms).
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
