"""OPC UA session security for the OPC UA source: the server verified first, refusals recognised.

    client = Client(url, timeout=10, watchdog_intervall=10)
    warning = await secure(client, device, now)     # raises ServerRejected, or returns an opt-in's warning
    await client.connect()                           # raises ChannelRefused when the server refuses us
    ...
    refusal = refusal_of(exc, device, identity)      # a Refusal, or None for an outage

Verifying the server (OPC UA Part 4, 6.1.3). Before a secured session, `secure` asks the server
for its endpoints over an unsecured channel (GetEndpoints, which every server allows), picks the
one with the configured policy and mode, and checks the certificate it names with
`check_server_certificate` against the trust list, read afresh at every attempt from
`opcua.trusted_ca_file`, `crl_file` and `server_certificate_file` (so a new CRL applies at the
next attempt). Only then does asyncua open the channel with that certificate; it refuses a
server that presents another one in CreateSession. With `opcua.accept_unknown_server` a server
that fails the check is used anyway, and the reason comes back as a warning.

The server refusing us. A server that does not accept the connector's certificate answers
OpenSecureChannel with a ServiceFault (node-opcua sends BadSecurityChecksFailed whatever the
reason, as Part 4 advises, so the reason stays in the server's log) or closes the channel.
asyncua 2.1 does not expect a fault there: it logs a traceback for a NotEnoughData while
parsing the fault as a response, then fails with a bare AssertionError. `Client` recognises the
fault and raises `ChannelRefused` with its status code instead; closing the channel during the
handshake gives `ChannelRefused` without one. Faults later in the handshake (CreateSession,
ActivateSession: a wrong ApplicationUri, user or password) reach asyncua as status codes;
`refusal_of` turns those that cannot go away by waiting into a `Refusal` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from asyncua import ua
from asyncua.client.client import Client as AsyncuaClient
from asyncua.client.ua_client import UASocketProtocol
from asyncua.common.utils import Buffer
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256, SecurityPolicyNone
from asyncua.crypto.uacrypto import CertProperties
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plantline.connectors.certificates import (
    CertificateRejected,
    TrustList,
    certificate_uri,
    check_server_certificate,
    describe_certificate,
    is_pem,
    load_certificates,
    load_crls,
    load_der_chain,
)
from plantline.connectors.config import Device, OpcUaOptions
from plantline.connectors.sources import Refusal

T = TypeVar("T")
_SERVICE_FAULT = ua.FourByteNodeId(ua.Int32(ObjectIds.ServiceFault_Encoding_DefaultBinary))
# The fault asyncua cannot parse is logged by it as an exception; `Client` reports it in one line instead.
_QUIET = logging.getLogger(__name__ + ".asyncua")
_QUIET.addFilter(lambda record: record.levelno > logging.ERROR)

# Status codes a server answers with when it will not talk to this connector as configured:
# waiting will not change its mind, a certificate, a trust list or a setting will.
_CERTIFICATE_REFUSED = frozenset(
    getattr(StatusCodes, name)
    for name in (
        "BadSecurityChecksFailed",
        "BadCertificateInvalid",
        "BadCertificateUntrusted",
        "BadCertificateRevoked",
        "BadCertificateIssuerRevoked",
        "BadCertificateRevocationUnknown",
        "BadCertificateIssuerRevocationUnknown",
        "BadCertificateTimeInvalid",
        "BadCertificateIssuerTimeInvalid",
        "BadCertificateUriInvalid",
        "BadCertificateUseNotAllowed",
        "BadCertificateIssuerUseNotAllowed",
        "BadCertificateChainIncomplete",
        "BadCertificatePolicyCheckFailed",
        "BadSecurityPolicyRejected",
        "BadSecurityModeRejected",
    )
)
_USER_REFUSED = frozenset(
    (StatusCodes.BadIdentityTokenInvalid, StatusCodes.BadIdentityTokenRejected, StatusCodes.BadUserAccessDenied)
)


class ServerRejected(Exception):
    """The connector does not trust the server (or cannot speak to it as configured); `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChannelRefused(Exception):
    """The server answered OpenSecureChannel with a fault, or closed the channel during the handshake."""

    def __init__(self, status: int | None) -> None:
        self.code = ua.StatusCode(ua.UInt32(status)).name if status is not None else None
        super().__init__(self.code or "the server closed the secure channel during the handshake")


def _fault_status(body: Buffer) -> int | None:
    """Return the ServiceResult of a ServiceFault body, None if the body is not a ServiceFault."""
    data = body.copy()
    try:
        if nodeid_from_binary(data) != _SERVICE_FAULT:
            return None
        header = struct_from_binary(ua.ResponseHeader, data)
    except Exception:  # noqa: BLE001  # not a ServiceFault we can read: leave it to asyncua
        return None
    return int(header.ServiceResult.value)


class _FaultAwareProtocol(UASocketProtocol):
    """asyncua's socket protocol, failing OpenSecureChannel with the ServiceFault the server answered."""

    def _call_callback(self, request_id: int, body: Buffer | ua.Acknowledge) -> None:
        opening = isinstance(self._open_secure_channel_exchange, ua.OpenSecureChannelParameters)
        status = _fault_status(body) if opening and isinstance(body, Buffer) else None
        future = self._callbackmap.get(request_id) if status is not None else None
        if future is None:
            super()._call_callback(request_id, body)
            return
        del self._callbackmap[request_id]
        self.logger = _QUIET  # asyncua goes on to parse the fault as a response and logs that failure
        if not future.done():
            future.set_exception(ChannelRefused(status))


class Client(AsyncuaClient):
    """asyncua's Client, raising ChannelRefused when the server refuses to open a secure channel."""

    async def connect_socket(self) -> None:
        await super().connect_socket()
        protocol = self.uaclient.protocol
        if protocol is not None and type(protocol) is UASocketProtocol:
            protocol.__class__ = _FaultAwareProtocol  # asyncua builds it; only its fault handling changes

    async def open_secure_channel(self, renew: bool = False) -> None:
        try:
            await super().open_secure_channel(renew)
        except (ConnectionError, AssertionError) as exc:
            # The socket closed under the handshake (or asyncua met an answer it cannot parse).
            raise ChannelRefused(None) from exc


# -- verifying the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The connector's application instance certificate and key, read for one attempt."""

    certificate: x509.Certificate
    issuers: tuple[x509.Certificate, ...]  # the rest of the chain in the certificate file, sent along
    key_bytes: bytes

    @property
    def uri(self) -> str | None:
        return certificate_uri(self.certificate)

    def __str__(self) -> str:
        return f"the connector's certificate ({describe_certificate(self.certificate)})"


def _read(options: OpcUaOptions, field: str) -> bytes:
    path: Path | None = getattr(options, field)
    if path is None:
        return b""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ServerRejected("BadConfigurationError", f"cannot read opcua.{field} {path}: {exc.strerror}") from None


def read_identity(options: OpcUaOptions) -> Identity:
    """Return the connector's certificate and key (raises ServerRejected naming an unreadable file)."""
    certificate_bytes, key_bytes = _read(options, "certificate_file"), _read(options, "private_key_file")
    try:
        chain = load_certificates(certificate_bytes)
    except ValueError as exc:
        raise ServerRejected("BadConfigurationError", f"opcua.certificate_file is not a certificate: {exc}") from None
    return Identity(chain[0], tuple(chain[1:]), key_bytes)


def _parsed(options: OpcUaOptions, field: str, load: Callable[[bytes], list[T]]) -> tuple[T, ...]:
    content = _read(options, field)
    if not content:
        return ()
    try:
        return tuple(load(content))
    except ValueError as exc:
        raise ServerRejected("BadConfigurationError", f"opcua.{field}: {exc}") from None


def read_trust_list(options: OpcUaOptions) -> TrustList:
    """Return the trust list of the device's files, read now (raises ServerRejected naming a bad file)."""
    return TrustList(
        authorities=_parsed(options, "trusted_ca_file", load_certificates),
        crls=_parsed(options, "crl_file", load_crls),
        servers=_parsed(options, "server_certificate_file", load_certificates),
    )


def _der(certificate: x509.Certificate) -> CertProperties:
    return CertProperties(certificate.public_bytes(Encoding.DER), extension="der")


def _properties(content: bytes) -> CertProperties:
    # asyncua picks the parser from the file extension (only ".pem" is PEM), so a PEM key named
    # `client.key` would be parsed as DER: hand it the bytes and say what they are.
    return CertProperties(content, extension="pem" if is_pem(content) else "der")


def _mode(options: OpcUaOptions) -> ua.MessageSecurityMode:
    return ua.MessageSecurityMode[options.security_mode.replace("None", "None_")]


async def server_endpoint(client: AsyncuaClient, device: Device) -> ua.EndpointDescription:
    """Return the server's endpoint with the device's policy and mode (raises ServerRejected if none)."""
    options = device.opcua
    mode = _mode(options)
    policy = SecurityPolicyBasic256Sha256.URI if options.secured else SecurityPolicyNone.URI
    endpoints = await client.connect_and_get_server_endpoints()
    for endpoint in endpoints:
        if endpoint.SecurityMode == mode and endpoint.SecurityPolicyUri == policy:
            return endpoint
    offered = sorted({f"{e.SecurityPolicyUri.rpartition('#')[2]}/{e.SecurityMode.name.rstrip('_')}" for e in endpoints})
    raise ServerRejected(
        "BadSecurityPolicyRejected",
        f"the OPC UA server at {device.endpoint} offers no {options.security_policy}/{options.security_mode}"
        f" endpoint (it offers {', '.join(offered) or 'none'})",
    )


async def secure(client: AsyncuaClient, device: Device, identity: Identity, now: datetime) -> str | None:
    """Verify the server and set the client's security; return a warning when an opt-in accepted it.

    Raises ServerRejected when the server fails the check (or offers no such endpoint).
    """
    options = device.opcua
    if options.application_uri is not None and options.application_uri != identity.uri:
        raise ServerRejected(
            "BadCertificateUriInvalid",
            f"{identity} carries the URI {identity.uri}, not opcua.application_uri {options.application_uri}",
        )
    client.application_uri = options.application_uri or identity.uri or client.application_uri
    endpoint = await server_endpoint(client, device)
    warning = None
    try:
        chain = load_der_chain(endpoint.ServerCertificate or b"")
    except ValueError as exc:
        raise ServerRejected("BadCertificateInvalid", f"the OPC UA server at {device.endpoint}: {exc}") from None
    try:
        check_server_certificate(
            chain,
            trust=read_trust_list(options),
            host=urlsplit(device.endpoint).hostname or "",
            application_uri=endpoint.Server.ApplicationUri,
            now=now,
        )
    except CertificateRejected as exc:
        server = f"the OPC UA server at {device.endpoint}"
        problem = f"its certificate ({describe_certificate(chain[0])}) fails the check: {exc.reason} ({exc.code})"
        if not options.accept_unknown_server:
            raise ServerRejected(exc.code, f"refusing {server}: {problem}; {_TRUST_HINT}") from None
        warning = f"accepting {server} although {problem}, as opcua.accept_unknown_server allows"
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        _der(identity.certificate),
        _properties(identity.key_bytes),
        server_certificate=_der(chain[0]),
        mode=_mode(options),
        # Sent with the certificate, so a server that trusts only the root can build the chain.
        certificate_chain=[_der(issuer) for issuer in identity.issuers],
    )
    return warning


_TRUST_HINT = (
    "trust its CA with opcua.trusted_ca_file and crl_file, or the certificate itself with"
    " opcua.server_certificate_file (or set opcua.accept_unknown_server)"
)


# -- refusals ---------------------------------------------------------------------------------------

_SERVER_HINT = (
    "check the server's trust list: it must hold the CA that issued this certificate (or the certificate"
    " itself), and a current CRL of each CA of its chain, none revoking it"
)


def refusal_of(exc: Exception, device: Device, identity: Identity | None) -> Refusal | None:
    """Return the Refusal a failed connection attempt is, or None when it may work next time."""
    ours = str(identity) if identity is not None else "the connector's session"
    server = f"the OPC UA server at {device.endpoint}"
    if isinstance(exc, ServerRejected):
        return Refusal("connector", exc.code, exc.message)
    if isinstance(exc, ChannelRefused):
        answer = (
            f"answered OpenSecureChannel with {exc.code}"
            if exc.code
            else "closed the secure channel during the handshake"
        )
        return Refusal(
            "device", exc.code or "BadSecureChannelClosed", f"{server} refused {ours}: it {answer}; {_SERVER_HINT}"
        )
    if not isinstance(exc, UaStatusCodeError):
        return None
    name = ua.StatusCode(ua.UInt32(exc.code)).name
    if exc.code in _USER_REFUSED:
        user = device.opcua.username or "(anonymous)"
        return Refusal(
            "device", name, f"{server} refused the user {user} ({name}); check opcua.username and password_file"
        )
    if exc.code in (StatusCodes.BadSecurityPolicyRejected, StatusCodes.BadSecurityModeRejected):
        wanted = f"{device.opcua.security_policy}/{device.opcua.security_mode}"
        return Refusal(
            "device",
            name,
            f"{server} refuses {wanted} ({name}); set opcua.security_policy and security_mode to what it offers",
        )
    if exc.code in _CERTIFICATE_REFUSED:
        return Refusal("device", name, f"{server} refused {ours} ({name}); {_SERVER_HINT}")
    return None
