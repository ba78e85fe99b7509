"""The records of a CA directory as the package reads them: frozen, typed values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from plantline.pki.keys import KeySpec, spec_of
from plantline.pki.x509build import fingerprint

INTERMEDIATE_PROFILE = "intermediate-ca"


def iso(moment: datetime) -> str:
    """Return `moment` as the UTC ISO 8601 text the records and the JSON output use."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def serial_hex(serial: int) -> str:
    """Return a serial number as the lower-case hex the inventory is keyed by."""
    return format(serial, "x")


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """One certificate of the inventory."""

    serial: str
    identity: str
    profile: str
    generation: int
    subject: str
    sans: tuple[str, ...]
    key_type: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    status: str  # active | superseded | revoked
    issued_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    replaces: str | None
    has_private_key: bool

    def status_at(self, now: datetime) -> str:
        """Return the status, reporting a lapsed certificate as `expired`."""
        if self.status != "revoked" and now >= self.not_after:
            return "expired"
        return self.status

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "identity": self.identity,
            "profile": self.profile,
            "ca_generation": self.generation,
            "subject": self.subject,
            "sans": list(self.sans),
            "key_type": self.key_type,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "sha256_fingerprint": self.fingerprint,
            "status": self.status_at(now),
            "issued_at": iso(self.issued_at),
            "revoked_at": iso(self.revoked_at) if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
            "replaces": self.replaces,
            "key_held_by_ca": self.has_private_key,
        }


@dataclass(frozen=True, slots=True)
class CertRecord:
    """One certificate of the inventory with what the CA keeps of it: the PEM and, maybe, the key."""

    issued: IssuedCertificate
    pem: bytes
    private_key: bytes | None = field(repr=False)  # PKCS#8 under the CA passphrase; None: issued from a CSR

    def certificate(self) -> x509.Certificate:
        """Return the parsed certificate."""
        return x509.load_pem_x509_certificate(self.pem)


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """What `ca check` compares of one inventory row: the facts recorded beside the certificate."""

    serial: str
    generation: int
    fingerprint: str
    pem: bytes


@dataclass(frozen=True, slots=True)
class CaGeneration:
    """One key and certificate of the CA; rotation adds a generation."""

    generation: int
    state: str  # active | previous | retired
    certificate: x509.Certificate
    parents: tuple[x509.Certificate, ...]  # the chain above this CA, up to the root

    @property
    def key_type(self) -> KeySpec:
        return spec_of(self.certificate.public_key())  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "state": self.state,
            "subject": self.certificate.subject.rfc4514_string(),
            "issuer": self.certificate.issuer.rfc4514_string(),
            "serial": serial_hex(self.certificate.serial_number),
            "key_type": str(self.key_type),
            "not_after": iso(self.certificate.not_valid_after_utc),
            "sha256_fingerprint": fingerprint(self.certificate),
            "root": not self.parents,
        }


@dataclass(frozen=True, slots=True)
class CrlInfo:
    """A CRL the CA published."""

    generation: int
    number: int
    this_update: datetime
    next_update: datetime
    revoked: int
    pem: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "ca_generation": self.generation,
            "number": self.number,
            "this_update": iso(self.this_update),
            "next_update": iso(self.next_update),
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class CaSettings:
    """The settings of a CA directory, chosen at `ca init` and changed by rotation and `crl generate`."""

    name: str
    organization: str  # "" when none was given
    encrypted: bool
    rotation: str  # idle | started | reissued
    crl_days: int
    maintenance_windows: tuple[str, ...]
    timezone: str
    crl_url: str = ""  # the CRL Distribution Point put in every leaf; "" for none
