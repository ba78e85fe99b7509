"""MQTT addressing, pure: the brokers' TLS port and URL, and the topic namespace of Sparkplug B."""

from __future__ import annotations

SCHEME = "mqtts"
TLS_PORT = 8883  # IANA's port for MQTT over TLS; PlantLine speaks MQTT over mutual TLS only
SPARKPLUG_NAMESPACE = "spBv1.0"  # the first level of every Sparkplug B topic


def broker_url(host: str, port: int) -> str:
    """Return the `mqtts://HOST:PORT` URL of a broker (an IPv6 address in brackets)."""
    return f"{SCHEME}://{f'[{host}]' if ':' in host else host}:{port}"
