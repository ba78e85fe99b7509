"""Pure X.509 construction: CA and leaf certificates and CRLs, from keys, profiles and `now`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plantline.pki.errors import InvalidInput
from plantline.pki.keys import PrivateKey, PublicKey, signature_hash, spec_of
from plantline.pki.names import San
from plantline.pki.profiles import Profile

# Leaves start a little in the past so a peer whose clock lags does not reject a fresh certificate.
BACKDATE = timedelta(minutes=5)

REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "ca-compromise": x509.ReasonFlags.ca_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "privilege-withdrawn": x509.ReasonFlags.privilege_withdrawn,
}

_EKU = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
_RSA_ONLY_USAGES = frozenset({"key_encipherment", "data_encipherment"})


@dataclass(frozen=True, slots=True)
class Signer:
    """A CA certificate with its private key: what every signature here needs."""

    certificate: x509.Certificate
    key: PrivateKey


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One line of a CRL."""

    serial: int
    revoked_at: datetime
    reason: str


def parse_reason(text: str) -> str:
    """Return the canonical revocation reason, or raise InvalidInput listing the known ones."""
    reason = text.strip().lower().replace("_", "-")
    if reason not in REVOCATION_REASONS:
        raise InvalidInput(
            f"reason: unknown revocation reason {text!r}; expected one of {', '.join(REVOCATION_REASONS)}"
        )
    return reason


def fingerprint(certificate: x509.Certificate) -> str:
    """Return the certificate's SHA-256 fingerprint as lower-case hex."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def san_strings(certificate: x509.Certificate) -> list[str]:
    """Return the certificate's subject alternative names as `dns:`, `ip:` and `uri:` strings."""
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [f"dns:{v}" for v in ext.get_values_for_type(x509.DNSName)]
    out += [f"ip:{v}" for v in ext.get_values_for_type(x509.IPAddress)]
    out += [f"uri:{v}" for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    return out


def _name(common_name: str, organization: str | None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _key_usage(names: frozenset[str], *, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=ca or "digital_signature" in names,
        content_commitment="content_commitment" in names,
        key_encipherment="key_encipherment" in names,
        data_encipherment="data_encipherment" in names,
        key_agreement="key_agreement" in names,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(sans: Sequence[San]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for san in sans:
        if san.kind == "dns":
            out.append(x509.DNSName(san.value))
        elif san.kind == "ip":
            out.append(x509.IPAddress(ipaddress.ip_address(san.value)))
        else:
            out.append(x509.UniformResourceIdentifier(san.value))
    return out


def build_ca_certificate(
    *,
    common_name: str,
    organization: str | None,
    key: PrivateKey,
    parent: Signer | None,
    path_length: int | None,
    serial: int,
    now: datetime,
    validity: timedelta,
) -> x509.Certificate:
    """Return a CA certificate: self-signed when `parent` is None, else signed by the parent.

    A child CA's path length must be below its parent's, and it never outlives the parent.
    """
    not_after = now + validity
    if parent is not None:
        constraints = parent.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.path_length is not None:
            if constraints.path_length == 0:
                raise InvalidInput("parent: the parent CA has path length 0 and cannot sign another CA")
            limit = constraints.path_length - 1
            path_length = limit if path_length is None else path_length
            if path_length > limit:
                raise InvalidInput(f"path_length: must be at most {limit} under this parent")
        not_after = min(not_after, parent.certificate.not_valid_after_utc)
    subject = _name(common_name, organization)
    public = key.public_key()
    signer_key = parent.key if parent else key
    issuer_public: PublicKey = parent.certificate.public_key() if parent else public  # type: ignore[assignment]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.certificate.subject if parent else subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(frozenset(), ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )
    return builder.sign(signer_key, signature_hash(spec_of(signer_key)))


def build_leaf_certificate(
    *,
    identity: str,
    profile: Profile,
    public_key: PublicKey,
    sans: Sequence[San],
    issuer: Signer,
    serial: int,
    now: datetime,
    validity: timedelta | None = None,
    crl_url: str | None = None,
) -> x509.Certificate:
    """Return a leaf certificate for `identity` (its CN) as the profile describes.

    Encipherment key usages are left out for EC keys, where they have no meaning (RFC 5480 3).
    The leaf never outlives its issuer. With `crl_url`, it names where its issuer's CRL is served
    (a CRL Distribution Point), for peers that fetch CRLs themselves.
    """
    usages = profile.key_usage
    if not spec_of(public_key).is_rsa:
        usages = usages - _RSA_ONLY_USAGES
    lifetime = validity if validity is not None else timedelta(days=profile.validity_days)
    not_after = min(now + lifetime, issuer.certificate.not_valid_after_utc)
    organization = issuer.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(identity, str(organization[0].value) if organization else None))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(usages, ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([_EKU[name] for name in sorted(profile.extended_key_usage)]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(issuer.key, signature_hash(spec_of(issuer.key)))


def check_crl_url(url: str, *, field: str) -> str:
    """Return `url` if it can be a CRL Distribution Point (plain HTTP, as RFC 5280 4.2.1.13 advises), else raise."""
    if not re.fullmatch(r"http://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[!-~]*)?", url):
        raise InvalidInput(f"{field}: expected an http:// URL where the CRL is served (not https: a CRL is signed)")
    return url


def build_crl(
    *, issuer: Signer, revoked: Sequence[RevokedEntry], number: int, now: datetime, next_update: timedelta
) -> x509.CertificateRevocationList:
    """Return a CRL listing `revoked`, valid from `now` until `now + next_update`."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now)
        .next_update(now + next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    for entry in revoked:
        revoked_builder = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        if entry.reason != "unspecified":  # RFC 5280 5.3.1: omit the extension for unspecified
            revoked_builder = revoked_builder.add_extension(
                x509.CRLReason(REVOCATION_REASONS[entry.reason]), critical=False
            )
        builder = builder.add_revoked_certificate(revoked_builder.build())
    return builder.sign(issuer.key, signature_hash(spec_of(issuer.key)))
