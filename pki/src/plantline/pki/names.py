"""How certificates are named: identities (the CN, MQTT username, file stem) and SANs."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from plantline.pki.errors import InvalidInput

# An identity becomes the certificate CN, the MQTT username (so it can never contain the MQTT
# wildcards + and #, nor /), a Kubernetes Secret name part and a file name.
_IDENTITY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")

SanKind = Literal["dns", "ip", "uri"]


@dataclass(frozen=True, slots=True)
class San:
    """One subject alternative name."""

    kind: SanKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def validate_identity(identity: str, *, field: str = "identity") -> str:
    """Return the identity unchanged if it is a valid name, else raise InvalidInput naming `field`."""
    if not _IDENTITY.fullmatch(identity):
        raise InvalidInput(
            f"{field}: {identity!r} is not a valid identity; expected 1-64 characters of letters, "
            "digits, '.', '_' or '-', starting and ending with a letter or digit"
        )
    return identity


def ca_identity(name: str) -> str:
    """Return the identity under which a parent CA records the certificate of a CA named `name`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64] or "ca"


def _dns(value: str, field: str) -> San:
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if labels and labels[0] == "*":  # one leading wildcard label, as RFC 6125 allows
        labels = labels[1:]
        if not labels:
            raise InvalidInput(f"{field}: {value!r} is a bare wildcard; expected '*.example.com'")
    if not name or len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid DNS name; expected labels of 1-63 letters, digits "
            "or '-' separated by dots"
        )
    return San("dns", name.lower())


def _ip(value: str, field: str) -> San:
    try:
        return San("ip", str(ipaddress.ip_address(value)))
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a valid IPv4 or IPv6 address") from None


def _uri(value: str, field: str) -> San:
    scheme, _, rest = value.partition(":")
    if not _URI_SCHEME.fullmatch(scheme) or not rest or any(c.isspace() for c in value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid URI; expected 'scheme:rest' without spaces, "
            "e.g. urn:plantline:site1:filler"
        )
    if rest.startswith("//") and not urlsplit(value).netloc:
        raise InvalidInput(f"{field}: {value!r} has an empty authority after '//'")
    return San("uri", value)


def parse_san(text: str, *, field: str = "san") -> San:
    """Return the SAN written as `dns:NAME`, `ip:ADDR`, `uri:URI`, or a bare name or address."""
    text = text.strip()
    kind, sep, value = text.partition(":")
    kind = kind.lower()
    if sep and kind in ("dns", "ip", "uri"):
        if kind == "dns":
            return _dns(value, field)
        if kind == "ip":
            return _ip(value, field)
        return _uri(value, field)
    try:
        return San("ip", str(ipaddress.ip_address(text)))
    except ValueError:
        pass
    if ":" in text:
        raise InvalidInput(f"{field}: {text!r} has an unknown prefix; expected dns:NAME, ip:ADDRESS or uri:URI")
    return _dns(text, field)


def parse_sans(texts: Sequence[str], *, field: str = "san") -> tuple[San, ...]:
    """Return the parsed SANs in order, without repeats; errors name `field[i]`."""
    seen: dict[San, None] = {}
    for index, text in enumerate(texts):
        seen.setdefault(parse_san(text, field=f"{field}[{index}]"), None)
    return tuple(seen)
