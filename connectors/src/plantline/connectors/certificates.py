"""Certificate facts the OPC UA source and simulator need, and the check of a server's certificate (pure).

`check_server_certificate` is what OPC UA Part 4 (6.1.3, "Determining if a Certificate is
trusted") asks of a client before it opens a secure channel: the certificate is trusted as it is
(`TrustList.servers`), or a chain leads from it to a trusted CA (`TrustList.authorities`), with
every signature, validity period and CRL in the chain checked; its key and signature fit the
security policy; the host the client connects to and the server's ApplicationUri are the
certificate's; and it may serve as a server certificate. A failed check raises
`CertificateRejected` with the OPC UA status code Part 4 gives for it and the reason in words.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

T = TypeVar("T")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)
# Basic256Sha256 (OPC UA Part 7): RSA keys of 2048 to 4096 bits, signed with SHA-256.
_RSA_BITS = (2048, 4096)


def is_pem(content: bytes) -> bool:
    """Return whether certificate or key bytes are PEM (else DER)."""
    return content.lstrip().startswith(b"-----BEGIN")


def _load_all(content: bytes, block: bytes, pem: Callable[[bytes], T], der: Callable[[bytes], T]) -> list[T]:
    """Return each PEM block of type `block` loaded with `pem`, or the one DER object with `der`."""
    if not is_pem(content):
        return [der(content)]
    found = [pem(match.group(0)) for match in _PEM_BLOCK.finditer(content) if match.group(1) == block]
    if not found:
        raise ValueError(f"no PEM {block.decode()} in it")
    return found


def load_certificates(content: bytes) -> list[x509.Certificate]:
    """Return the certificates of PEM bytes (every block) or of one DER certificate; ValueError if none."""
    return _load_all(content, b"CERTIFICATE", x509.load_pem_x509_certificate, x509.load_der_x509_certificate)


def load_der_chain(blob: bytes) -> list[x509.Certificate]:
    """Return the certificates of DER certificates laid end to end (how OPC UA sends a chain); ValueError if bad."""
    found = []
    while blob:
        if len(blob) < 2 or blob[0] != 0x30:  # each one is an ASN.1 SEQUENCE
            raise ValueError("not a DER certificate chain")
        size = blob[1]
        header = 2
        if size & 0x80:  # the long form: the next (size & 0x7F) bytes hold the length
            header += size & 0x7F
            size = int.from_bytes(blob[2:header], "big")
        found.append(x509.load_der_x509_certificate(blob[: header + size]))
        blob = blob[header + size :]
    if not found:
        raise ValueError("no certificate")
    return found


def load_crls(content: bytes) -> list[x509.CertificateRevocationList]:
    """Return the CRLs of PEM bytes (every block) or of one DER CRL; ValueError if none."""
    return _load_all(content, b"X509 CRL", x509.load_pem_x509_crl, x509.load_der_x509_crl)


def _sans(certificate: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def certificate_uri(certificate: x509.Certificate) -> str | None:
    """Return a certificate's first URI SAN (an OPC UA ApplicationUri), or None."""
    san = _sans(certificate)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san is not None else []
    return uris[0] if uris else None


def application_uri(certificate: bytes) -> str | None:
    """Return the first URI SAN of a PEM or DER certificate (an OPC UA ApplicationUri), or None."""
    return certificate_uri(load_certificates(certificate)[0])


def describe_certificate(certificate: x509.Certificate) -> str:
    """Return `subject CN=..., serial 1a2b...` (the serial in hex, as plantline-pki prints it)."""
    return f"subject {certificate.subject.rfc4514_string()}, serial {certificate.serial_number:x}"


def _common_name(name: x509.Name) -> str:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else name.rfc4514_string()


@dataclass(frozen=True)
class TrustList:
    """What a client trusts a server by: CAs with their CRLs, and server certificates trusted as they are."""

    authorities: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    servers: tuple[x509.Certificate, ...] = ()


class CertificateRejected(Exception):
    """A server's certificate failed a check; `code` is the OPC UA status code Part 4 names for it."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def check_server_certificate(
    chain: Sequence[x509.Certificate],
    *,
    trust: TrustList,
    host: str,
    application_uri: str | None,
    now: datetime,
) -> None:
    """Return if the server's certificate (`chain[0]`, then what the server sent above it) is trusted.

    `host` is the host of the endpoint URL the client connects to, `application_uri` the one in
    the server's endpoint description, `now` an aware datetime. Raises CertificateRejected.
    """
    leaf = chain[0]
    directly = leaf in trust.servers or leaf in trust.authorities
    path = [leaf] if directly else _path(leaf, [*trust.authorities, *chain[1:]], trust.authorities)
    for index, certificate in enumerate(path):
        _check_time(certificate, now, leaf=index == 0)
    _check_policy(leaf)
    _check_host(leaf, host)
    _check_uri(leaf, application_uri)
    _check_usage(leaf)
    for index in range(len(path) - 1):
        _check_revocation(path[index], path[index + 1], trust.crls, now, leaf=index == 0)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject or not _is_ca(issuer):
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _path(
    leaf: x509.Certificate, candidates: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """Return leaf, issuers, ending at a trusted CA; raise when no such chain exists."""
    path = [leaf]
    while path[-1] not in anchors:
        current = path[-1]
        issuer = next((c for c in candidates if c not in path and _issued_by(current, c)), None)
        if issuer is not None:
            path.append(issuer)
            continue
        if current.issuer == current.subject:
            where = "it is self-signed" if current is leaf else f"its chain ends at '{_common_name(current.subject)}'"
            raise CertificateRejected("BadCertificateUntrusted", f"{where}, which is not in the trust list")
        raise CertificateRejected(
            "BadCertificateUntrusted",
            f"{'it is' if current is leaf else 'its chain is'} issued by '{_common_name(current.issuer)}',"
            " which is not in the trust list",
        )
    return path


def _check_time(certificate: x509.Certificate, now: datetime, *, leaf: bool) -> None:
    code = "BadCertificateTimeInvalid" if leaf else "BadCertificateIssuerTimeInvalid"
    what = "it" if leaf else f"its issuer '{_common_name(certificate.subject)}'"
    if now < certificate.not_valid_before_utc:
        raise CertificateRejected(
            code, f"{what} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M}Z"
        )
    if now > certificate.not_valid_after_utc:
        raise CertificateRejected(code, f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M}Z")


def _check_policy(leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not _RSA_BITS[0] <= key.key_size <= _RSA_BITS[1]:
        raise CertificateRejected(
            "BadCertificatePolicyCheckFailed", "Basic256Sha256 needs an RSA key of 2048 to 4096 bits"
        )
    if not isinstance(leaf.signature_hash_algorithm, hashes.SHA256):
        raise CertificateRejected("BadCertificatePolicyCheckFailed", "Basic256Sha256 needs a SHA-256 signature")


def _check_host(leaf: x509.Certificate, host: str) -> None:
    san = _sans(leaf)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names = [name.lower() for name in san.get_values_for_type(x509.DNSName)] if san is not None else []
        if host.lower().rstrip(".") in names:
            return
    else:
        if san is not None and address in san.get_values_for_type(x509.IPAddress):
            return
    raise CertificateRejected(
        "BadCertificateHostNameInvalid", f"the host {host} is not among its subject alternative names"
    )


def _check_uri(leaf: x509.Certificate, uri: str | None) -> None:
    san = _sans(leaf)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san is not None else []
    if not uri:
        raise CertificateRejected(
            "BadCertificateUriInvalid", "the server's endpoint description names no ApplicationUri"
        )
    if uri not in uris:
        held = ", ".join(uris) or "none"
        raise CertificateRejected(
            "BadCertificateUriInvalid", f"the server's ApplicationUri {uri} is not the certificate's URI ({held})"
        )


def _check_usage(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not (usage.digital_signature and (usage.key_encipherment or usage.data_encipherment)):
        raise CertificateRejected("BadCertificateUseNotAllowed", "its key usage does not allow signing and encryption")
    try:
        purposes = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in purposes:
        raise CertificateRejected("BadCertificateUseNotAllowed", "its extended key usage does not allow a server")


def _crl_of(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    # A CA's key is RSA or EC: the kinds plantline-pki makes, and the ones OPC UA's policies name.
    if crl.issuer != issuer.subject or not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return crl.is_signature_valid(key)


def _check_revocation(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime,
    *,
    leaf: bool,
) -> None:
    name = _common_name(issuer.subject)
    own = [crl for crl in crls if _crl_of(crl, issuer)]
    unknown = "BadCertificateRevocationUnknown" if leaf else "BadCertificateIssuerRevocationUnknown"
    if not own:
        raise CertificateRejected(unknown, f"the trust list holds no CRL of '{name}'")
    crl = max(own, key=lambda c: c.last_update_utc)
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        raise CertificateRejected(unknown, f"the CRL of '{name}' expired on {crl.next_update_utc:%Y-%m-%d %H:%M}Z")
    if crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None:
        what = "it" if leaf else f"its issuer '{_common_name(certificate.subject)}'"
        code = "BadCertificateRevoked" if leaf else "BadCertificateIssuerRevoked"
        raise CertificateRejected(code, f"{what} is revoked by the CRL of '{name}'")
