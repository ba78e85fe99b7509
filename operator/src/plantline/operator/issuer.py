"""The operator's certificate authority, held in a Kubernetes Secret: pure functions, no I/O.

The CA Secret holds `ca.crt`, `ca.key`, `revoked.json` (every serial the operator revoked) and
the current `crl.pem`; `resources.SecretAuthority` reads and writes it. Here live the decisions
and the signatures: issuing a leaf for a `CertificateRequest` with the same x509 builders and
signing profiles as `plantline-pki`, the facts `plantline.pki.renewal.decide` needs about a
stored certificate, and the CRL. Serial numbers are 159 random bits (RFC 5280 4.1.2.2), so no
counter has to be shared between operator restarts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plantline.operator.api import PlantLineSpec
from plantline.operator.render import CertificateRequest
from plantline.pki.errors import InvalidInput
from plantline.pki.keys import KeySpec, PrivateKey, generate_key, load_private_key, private_key_pem, spec_of
from plantline.pki.names import parse_sans
from plantline.pki.profiles import Profile, builtin_profiles
from plantline.pki.renewal import CertFacts, RenewalPolicy
from plantline.pki.window import MaintenanceWindow, parse_window
from plantline.pki.x509build import (
    RevokedEntry,
    Signer,
    build_ca_certificate,
    build_crl,
    build_leaf_certificate,
    parse_reason,
)

CA_KEY = KeySpec.RSA_3072  # the OPC UA profile needs an RSA issuer; MQTT leaves stay EC
CA_VALIDITY = timedelta(days=3650)
CRL_VALIDITY = timedelta(days=7)
CA_COMMON_NAME = "PlantLine operator CA"


class CaInvalid(Exception):
    """The CA Secret exists but cannot be used; the message names the key and the problem."""


@dataclass(frozen=True, slots=True)
class CaState:
    """The CA as read from its Secret."""

    signer: Signer
    certificate_pem: bytes
    revoked: tuple[RevokedEntry, ...]
    crl_pem: bytes
    crl_number: int

    @property
    def revoked_serials(self) -> frozenset[int]:
        return frozenset(entry.serial for entry in self.revoked)


@dataclass(frozen=True, slots=True)
class Issued:
    """A freshly issued leaf: PEMs for its Secret and the serial for events."""

    certificate_pem: bytes
    key_pem: bytes
    serial: int
    not_after: datetime


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _same_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    def der(public: Any) -> bytes:
        data: bytes = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return data

    return der(certificate.public_key()) == der(key.public_key())


def new_ca(now: datetime, *, key_spec: KeySpec = CA_KEY, common_name: str = CA_COMMON_NAME) -> tuple[bytes, bytes]:
    """Return (certificate PEM, key PEM) of a new self-signed root for the operator."""
    key = generate_key(key_spec)
    certificate = build_ca_certificate(
        common_name=common_name,
        organization="PlantLine",
        key=key,
        parent=None,
        path_length=0,
        serial=x509.random_serial_number(),
        now=now,
        validity=CA_VALIDITY,
    )
    return _pem(certificate), private_key_pem(key, None)


def revoked_to_json(entries: Iterable[RevokedEntry]) -> str:
    return json.dumps(
        [{"serial": f"{e.serial:x}", "revokedAt": e.revoked_at.isoformat(), "reason": e.reason} for e in entries],
        indent=1,
    )


def revoked_from_json(text: str, *, where: str) -> tuple[RevokedEntry, ...]:
    """Return the revoked entries stored in the CA Secret (`where` names it in errors)."""
    try:
        raw = json.loads(text or "[]")
        return tuple(
            RevokedEntry(
                serial=int(e["serial"], 16),
                revoked_at=datetime.fromisoformat(e["revokedAt"]),
                reason=parse_reason(e["reason"]),
            )
            for e in raw
        )
    except (ValueError, KeyError, TypeError, AttributeError, InvalidInput) as exc:
        raise CaInvalid(f"{where}: revoked.json: expected a list of {{serial, revokedAt, reason}}: {exc}") from None


def load_signer(data: dict[str, bytes], *, where: str) -> Signer:
    """Return the CA certificate and key of the CA Secret's data, checked to belong together."""
    try:
        certificate = x509.load_pem_x509_certificate(data["ca.crt"])
    except (KeyError, ValueError) as exc:
        raise CaInvalid(f"{where}: ca.crt: expected a PEM CA certificate ({exc})") from None
    try:
        key = load_private_key(data["ca.key"], None, what=f"{where}: ca.key")
    except KeyError:
        raise CaInvalid(f"{where}: ca.key: missing") from None
    except Exception as exc:  # noqa: BLE001 - the PKI's own error says what is wrong with the key
        raise CaInvalid(str(exc)) from None
    if not _same_key(certificate, key):
        raise CaInvalid(f"{where}: ca.key does not belong to ca.crt")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CaInvalid(f"{where}: ca.crt is not a CA certificate (basicConstraints CA:TRUE missing)")
    return Signer(certificate=certificate, key=key)


def load_ca(data: dict[str, bytes], *, where: str, signer: Signer | None = None) -> CaState:
    """Return the CA from the decoded data of its Secret (`where` names the Secret in errors).

    `signer`, from `load_signer` on the same `ca.crt` and `ca.key`, saves parsing the key again
    (an RSA key takes tens of milliseconds) when only the revocations changed.
    """
    if signer is None:
        signer = load_signer(data, where=where)
    number_text = data.get("crlNumber", b"0").decode() or "0"
    if not number_text.isdigit():  # RFC 5280 5.2.3: CRL numbers only ever increase
        raise CaInvalid(f"{where}: crlNumber: expected a non-negative integer, got {number_text[:20]!r}")
    return CaState(
        signer=signer,
        certificate_pem=data["ca.crt"],
        revoked=revoked_from_json(data.get("revoked.json", b"[]").decode(), where=where),
        crl_pem=data.get("crl.pem", b""),
        crl_number=int(number_text),
    )


def with_revoked(ca: CaState, serials: Sequence[tuple[int, str]], now: datetime) -> tuple[CaState, list[int]]:
    """Return the CA with `serials` (serial, reason) revoked and a fresh CRL, and which were new."""
    known = set(ca.revoked_serials)
    added = []
    for serial, reason in serials:
        if serial not in known:
            known.add(serial)
            added.append(RevokedEntry(serial, now, reason))
    revoked = (*ca.revoked, *added)
    number = ca.crl_number + 1
    crl = build_crl(issuer=ca.signer, revoked=revoked, number=number, now=now, next_update=CRL_VALIDITY)
    crl_pem = crl.public_bytes(serialization.Encoding.PEM)
    return (
        CaState(ca.signer, ca.certificate_pem, revoked, crl_pem, number),
        [entry.serial for entry in added],
    )


def crl_is_fresh(ca: CaState, now: datetime) -> bool:
    """True when the stored CRL exists and stays valid for more than half its lifetime."""
    if not ca.crl_pem:
        return False
    crl = x509.load_pem_x509_crl(ca.crl_pem)
    next_update = crl.next_update_utc
    return next_update is not None and next_update - now > CRL_VALIDITY / 2


def ca_data(ca: CaState, key_pem: bytes) -> dict[str, bytes]:
    """Return the CA Secret's data for `ca` (the key PEM as read, never re-encoded)."""
    return {
        "ca.crt": ca.certificate_pem,
        "ca.key": key_pem,
        "revoked.json": revoked_to_json(ca.revoked).encode(),
        "crl.pem": ca.crl_pem,
        "crlNumber": str(ca.crl_number).encode(),
    }


# -- leaves ---------------------------------------------------------------------------------------


def profile_of(request: CertificateRequest) -> Profile:
    return builtin_profiles()[request.profile]


def policy(spec: PlantLineSpec, request: CertificateRequest) -> RenewalPolicy:
    """Return the renewal policy of one request: the line's margin and maintenance window."""
    profile = profile_of(request)
    windows: tuple[MaintenanceWindow, ...] = ()
    if spec.pki.maintenance_window is not None:
        timezone = spec.kpi.shift_calendar.timezone if spec.kpi.shift_calendar else "UTC"
        windows = (parse_window(spec.pki.maintenance_window, timezone=timezone, field="spec.pki.maintenanceWindow"),)
    days = request.renew_before_days if request.renew_before_days is not None else profile.renew_before_days
    return RenewalPolicy(renew_before=timedelta(days=days), windows=windows)


def issue(
    ca: CaState, request: CertificateRequest, now: datetime, *, key_pem: bytes | None = None, crl_url: str | None = None
) -> Issued:
    """Issue a leaf for `request`; with `key_pem`, for that existing key (a renewal), else a new one.

    With `crl_url`, the leaf names it as its CRL Distribution Point.
    """
    profile = profile_of(request)
    key: PrivateKey = (
        load_private_key(key_pem, None, what=f"{request.identity}: tls.key")
        if key_pem is not None
        else generate_key(profile.default_key)
    )
    sans = parse_sans(list(request.sans))
    profile.check_request(key=spec_of(key), issuer_key=spec_of(ca.signer.key), sans=sans)
    validity = timedelta(days=request.validity_days) if request.validity_days is not None else None
    serial = x509.random_serial_number()
    certificate = build_leaf_certificate(
        identity=request.identity,
        profile=profile,
        public_key=key.public_key(),
        sans=sans,
        issuer=ca.signer,
        serial=serial,
        now=now,
        validity=validity,
        crl_url=crl_url,
    )
    return Issued(
        certificate_pem=_pem(certificate),
        key_pem=key_pem if key_pem is not None else private_key_pem(key, None),
        serial=serial,
        not_after=certificate.not_valid_after_utc,
    )


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What the reconcile needs about a stored leaf: the renewal facts and whether it still fits."""

    facts: CertFacts
    serial: int
    fits_request: bool  # same identity and SANs as requested now


def _san_strings(certificate: x509.Certificate) -> set[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    out = {f"dns:{n}" for n in names.get_values_for_type(x509.DNSName)}
    out |= {f"ip:{n}" for n in names.get_values_for_type(x509.IPAddress)}
    out |= {f"uri:{n}" for n in names.get_values_for_type(x509.UniformResourceIdentifier)}
    return out


def stored_facts(
    ca: CaState, request: CertificateRequest, certificate_pem: bytes, key_pem: bytes
) -> StoredFacts | None:
    """Return the facts of a stored certificate, or None when the Secret's content is unusable."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        key = load_private_key(key_pem, None, what="tls.key")
    except Exception:  # noqa: BLE001 - any unreadable content means: issue a new one
        return None
    if not _same_key(certificate, key):
        return None
    try:
        certificate.verify_directly_issued_by(ca.signer.certificate)
        by_current = True
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        by_current = False
    common_names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    same_identity = bool(common_names) and common_names[0].value == request.identity
    wanted = {str(san) for san in parse_sans(list(request.sans))}
    return StoredFacts(
        facts=CertFacts(
            not_after=certificate.not_valid_after_utc,
            key=spec_of(key),
            revoked=certificate.serial_number in ca.revoked_serials,
            issued_by_current_ca=by_current,
        ),
        serial=certificate.serial_number,
        fits_request=same_identity and _san_strings(certificate) == wanted,
    )


def serial_of(certificate_pem: bytes) -> int | None:
    try:
        return x509.load_pem_x509_certificate(certificate_pem).serial_number
    except ValueError:
        return None


def not_after_of(certificate_pem: bytes) -> datetime | None:
    """Return when a PEM certificate expires (UTC), None when it is unreadable."""
    try:
        return x509.load_pem_x509_certificate(certificate_pem).not_valid_after_utc
    except ValueError:
        return None


__all__ = [
    "CaInvalid",
    "CaState",
    "Issued",
    "StoredFacts",
    "ca_data",
    "crl_is_fresh",
    "issue",
    "load_ca",
    "load_signer",
    "new_ca",
    "not_after_of",
    "policy",
    "serial_of",
    "stored_facts",
    "with_revoked",
]
