"""The certificate authority of one CA directory: the operations the CLI and other components call.

Every operation validates its input before any key is touched or any cryptography runs, then
makes its change in one transaction under the directory lock, then publishes the derived files.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from plantline.pki import exports
from plantline.pki.errors import Conflict, CorruptState, InvalidInput, NotFound, PassphraseError, PolicyViolation
from plantline.pki.exports import CertFormat
from plantline.pki.keys import KeySpec, PublicKey, generate_key, load_private_key, private_key_pem, spec_of
from plantline.pki.names import San, parse_sans, validate_identity
from plantline.pki.profiles import Profile, builtin_profiles, parse_profiles, select
from plantline.pki.renewal import CertFacts, Decision, RenewalPolicy, decide
from plantline.pki.store import CaStore, Published, audit_record, kill_point
from plantline.pki.window import MaintenanceWindow, parse_window
from plantline.pki.x509build import (
    RevokedEntry,
    Signer,
    build_ca_certificate,
    build_crl,
    build_leaf_certificate,
    fingerprint,
    parse_reason,
)

PassphraseSource = Callable[[], bytes]
INTERMEDIATE_PROFILE = "intermediate-ca"
_SERIAL = re.compile(r"(?:0x)?[0-9a-f]{1,40}")


def utcnow() -> datetime:
    """Return the current time in UTC (the default clock)."""
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _serial_hex(serial: int) -> str:
    return format(serial, "x")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64] or "ca"


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
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "sha256_fingerprint": self.fingerprint,
            "status": self.status_at(now),
            "issued_at": _iso(self.issued_at),
            "revoked_at": _iso(self.revoked_at) if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
            "replaces": self.replaces,
            "key_held_by_ca": self.has_private_key,
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> IssuedCertificate:
        return cls(
            serial=row["serial"],
            identity=row["identity"],
            profile=row["profile"],
            generation=row["generation"],
            subject=row["subject"],
            sans=tuple(json.loads(row["sans"])),
            key_type=row["key_type"],
            not_before=_parse_iso(row["not_before"]),
            not_after=_parse_iso(row["not_after"]),
            fingerprint=row["fingerprint"],
            status=row["status"],
            issued_at=_parse_iso(row["issued_at"]),
            revoked_at=_parse_iso(row["revoked_at"]) if row["revoked_at"] else None,
            revocation_reason=row["revocation_reason"],
            replaces=row["replaces"],
            has_private_key=row["private_key"] is not None,
        )


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
            "serial": _serial_hex(self.certificate.serial_number),
            "key_type": str(self.key_type),
            "not_after": _iso(self.certificate.not_valid_after_utc),
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
            "this_update": _iso(self.this_update),
            "next_update": _iso(self.next_update),
            "revoked": self.revoked,
        }


def _load_pems(data: bytes) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(data)) if data.strip() else ()


def _san_strings(certificate: x509.Certificate) -> list[str]:
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [f"dns:{v}" for v in ext.get_values_for_type(x509.DNSName)]
    out += [f"ip:{v}" for v in ext.get_values_for_type(x509.IPAddress)]
    out += [f"uri:{v}" for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    return out


def load_csr(pem: bytes, *, field: str = "csr") -> x509.CertificateSigningRequest:
    """Return a parsed CSR whose self-signature verifies, or raise InvalidInput."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise InvalidInput(f"{field}: not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise InvalidInput(f"{field}: the request's signature does not verify")
    return csr


class Authority:
    """A CA directory and the operations on it."""

    def __init__(
        self,
        directory: Path,
        *,
        passphrase: PassphraseSource | None = None,
        actor: str = "plantline.pki",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = CaStore(directory)
        self._passphrase_source = passphrase
        self._passphrase: bytes | None = None
        self.actor = actor
        self.clock = clock

    @property
    def directory(self) -> Path:
        return self.store.directory

    # -- creating a CA --------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        name: str,
        organization: str | None = None,
        key_type: KeySpec = KeySpec.EC_P256,
        parent: Authority | None = None,
        path_length: int | None = None,
        validity_days: int | None = None,
        passphrase: bytes | None,
        encrypt: bool = True,
        crl_days: int = 7,
        maintenance_windows: Sequence[str] = (),
        timezone: str = "UTC",
        actor: str = "plantline.pki",
        clock: Callable[[], datetime] = utcnow,
        force: bool = False,
    ) -> Authority:
        """Create a root CA in `directory`, or an intermediate signed by `parent`."""
        if not name.strip() or len(name) > 64:
            raise InvalidInput("name: expected 1-64 characters")
        if organization is not None and not (0 < len(organization) <= 64):
            raise InvalidInput("organization: expected 1-64 characters")
        if validity_days is not None and validity_days < 1:
            raise InvalidInput("validity_days: expected at least 1")
        if path_length is not None and path_length < 0:
            raise InvalidInput("path_length: expected 0 or more")
        if crl_days < 1:
            raise InvalidInput("crl_days: expected at least 1")
        for index, text in enumerate(maintenance_windows):
            parse_window(text, timezone=timezone, field=f"maintenance_window[{index}]")
        if encrypt and not passphrase:
            raise PassphraseError(
                "passphrase: a new CA key is encrypted; give a passphrase (or --unsafe-no-encryption)"
            )
        if (directory / "pki.db").exists() and not force:
            raise Conflict(f"{directory}: already holds a CA; pass --force to replace it")
        days = validity_days or (3650 if parent is None else 1825)
        authority = cls(directory, passphrase=lambda: passphrase or b"", actor=actor, clock=clock)
        now = clock()
        key = generate_key(key_type)
        if parent is None:
            certificate = build_ca_certificate(
                common_name=name,
                organization=organization,
                key=key,
                parent=None,
                path_length=1 if path_length is None else path_length,
                serial=x509.random_serial_number(),
                now=now,
                validity=timedelta(days=days),
            )
            parents: tuple[x509.Certificate, ...] = ()
        else:
            certificate, parents = parent.sign_subordinate(
                name=name, organization=organization, key=key, path_length=path_length, validity_days=days
            )
        with CaStore.creating(directory, force=force) as conn:
            meta = {
                "name": name,
                "organization": organization or "",
                "encrypted": "1" if encrypt else "0",
                "rotation": "idle",
                "crl_days": str(crl_days),
                "maintenance_windows": json.dumps(list(maintenance_windows)),
                "timezone": timezone,
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            authority._insert_generation(conn, 1, "active", certificate, key, parents, now, encrypt, passphrase)
            signer = Signer(certificate, key)
            authority._write_crl(conn, 1, signer, now)
            authority._audit(
                conn,
                now,
                "ca.init",
                {
                    "name": name,
                    "key_type": str(key_type),
                    "root": parent is None,
                    "sha256_fingerprint": fingerprint(certificate),
                },
            )
        authority._after_write()
        return authority

    def sign_subordinate(
        self,
        *,
        name: str,
        organization: str | None,
        key: Any,
        path_length: int | None,
        validity_days: int,
        record_as: str | None = None,
    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        """Return a CA certificate for `key` signed by this CA, and the chain above it.

        The certificate is recorded in this CA's inventory (profile `intermediate-ca`), so this
        CA can revoke it later.
        """
        identity = record_as or _slug(name)
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as conn:
            now = self.clock()
            active = self._active(conn)
            signer = self._signer(conn, active, passphrase)
            certificate = build_ca_certificate(
                common_name=name,
                organization=organization,
                key=key,
                parent=signer,
                path_length=path_length,
                serial=self._new_serial(conn),
                now=now,
                validity=timedelta(days=validity_days),
            )
            previous = conn.execute(
                "SELECT serial FROM certs WHERE identity = ? AND status = 'active'", (identity,)
            ).fetchone()
            if previous:
                conn.execute("UPDATE certs SET status = 'superseded' WHERE serial = ?", (previous[0],))
            self._insert_cert(
                conn,
                certificate,
                identity=identity,
                profile=INTERMEDIATE_PROFILE,
                generation=active.generation,
                private_key=None,
                now=now,
                replaces=previous[0] if previous else None,
            )
            self._audit(
                conn,
                now,
                "ca.sign-subordinate",
                {"identity": identity, "serial": _serial_hex(certificate.serial_number)},
            )
            parents = (active.certificate, *active.parents)
        self._after_write()
        return certificate, parents

    # -- reading --------------------------------------------------------------------------------

    def profiles(self) -> dict[str, Profile]:
        """Return the built-in profiles overlaid with the CA directory's own profiles.toml."""
        profiles = builtin_profiles()
        custom = self.directory / "profiles.toml"
        if custom.is_file():
            profiles.update(parse_profiles(custom.read_text(encoding="utf-8"), source=str(custom)))
        return profiles

    def meta(self) -> dict[str, str]:
        with self.store.reading() as conn:
            return self._meta(conn)

    def generations(self) -> list[CaGeneration]:
        """Return every CA generation, newest first."""
        with self.store.reading() as conn:
            return self._generations(conn)

    def info(self) -> dict[str, Any]:
        """Return a summary of the CA: name, generations, rotation phase, inventory counts."""
        with self.store.reading() as conn:
            meta = self._meta(conn)
            counts = dict(conn.execute("SELECT status, COUNT(*) FROM certs GROUP BY status").fetchall())
            return {
                "directory": str(self.directory),
                "name": meta["name"],
                "key_encrypted": meta["encrypted"] == "1",
                "rotation": meta["rotation"],
                "crl_days": int(meta["crl_days"]),
                "maintenance_windows": json.loads(meta["maintenance_windows"]),
                "timezone": meta["timezone"],
                "generations": [g.to_json() for g in self._generations(conn)],
                "certificates": {k: counts.get(k, 0) for k in ("active", "superseded", "revoked")},
            }

    def certificates(self, *, identity: str | None = None, status: str | None = None) -> list[IssuedCertificate]:
        """Return the inventory, oldest first, optionally filtered."""
        query, args = "SELECT * FROM certs WHERE 1 = 1", list[str]()
        if identity is not None:
            query, args = query + " AND identity = ?", [*args, identity]
        if status in ("active", "superseded", "revoked"):
            query, args = query + " AND status = ?", [*args, status]
        with self.store.reading() as conn:
            rows = conn.execute(query + " ORDER BY issued_at, rowid", args).fetchall()
        found = [IssuedCertificate.from_row(r) for r in rows]
        if status == "expired":
            now = self.clock()
            found = [c for c in found if c.status_at(now) == "expired"]
        return found

    def find(self, target: str) -> IssuedCertificate:
        """Return the certificate with serial `target`, or the current one of identity `target`."""
        with self.store.reading() as conn:
            return IssuedCertificate.from_row(self._find_row(conn, target))

    def certificate_pem(self, target: str) -> bytes:
        with self.store.reading() as conn:
            return bytes(self._find_row(conn, target)["certificate"])

    def needs_renewal(self, identity: str, *, policy: RenewalPolicy | None = None) -> Decision:
        """Return the renewal decision for the identity's current certificate."""
        validate_identity(identity)
        now = self.clock()
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM certs WHERE identity = ? ORDER BY issued_at DESC, rowid DESC", (identity,)
            ).fetchall()
            if policy is None:
                profile = select(self.profiles(), rows[0]["profile"]) if rows else None
                policy = self.default_policy(conn, profile)
            active_generation = self._active(conn).generation
        if not rows:
            return decide(now, None, policy)
        row = next((r for r in rows if r["status"] == "active"), rows[0])
        facts = CertFacts(
            not_after=_parse_iso(row["not_after"]),
            key=KeySpec(row["key_type"]),
            revoked=row["status"] == "revoked",
            issued_by_current_ca=row["generation"] == active_generation,
        )
        return decide(now, facts, policy)

    def needs_renewal_policy(self, identity: str) -> RenewalPolicy:
        """Return the policy `needs_renewal` applies by default: the profile's window, the CA's hours."""
        with self.store.reading() as conn:
            row = conn.execute("SELECT profile FROM certs WHERE identity = ? LIMIT 1", (identity,)).fetchone()
            return self.default_policy(conn, select(self.profiles(), row[0]) if row else None)

    def default_policy(self, conn: sqlite3.Connection, profile: Profile | None) -> RenewalPolicy:
        meta = self._meta(conn)
        return RenewalPolicy(
            renew_before=timedelta(days=profile.renew_before_days if profile else 30), windows=self._windows(meta)
        )

    def maintenance_windows(self) -> tuple[MaintenanceWindow, ...]:
        with self.store.reading() as conn:
            return self._windows(self._meta(conn))

    # -- issuing --------------------------------------------------------------------------------

    def issue(
        self,
        identity: str,
        *,
        profile: str,
        sans: Sequence[str] = (),
        key_type: str | None = None,
        csr_pem: bytes | None = None,
        validity_days: int | None = None,
    ) -> IssuedCertificate:
        """Issue a certificate for a new identity (a key is made here unless a CSR is given)."""
        validate_identity(identity)
        chosen = select(self.profiles(), profile)
        parsed_sans = parse_sans(sans)
        csr = load_csr(csr_pem) if csr_pem is not None else None
        if csr is not None and key_type is not None:
            raise InvalidInput("key_type: cannot be chosen with a CSR; the CSR's key is used")
        public: PublicKey | None = csr.public_key() if csr is not None else None  # type: ignore[assignment]
        spec = (
            spec_of(public)
            if public is not None
            else (KeySpec.parse(key_type, field="key_type") if key_type else chosen.default_key)
        )
        if validity_days is not None and validity_days < 1:
            raise InvalidInput("validity_days: expected at least 1")
        with self.store.reading() as conn:
            chosen.check_request(key=spec, issuer_key=self._active(conn).key_type, sans=parsed_sans)
            self._refuse_duplicate(conn, identity)
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as conn:
            self._refuse_duplicate(conn, identity)
            issued = self._issue_in(
                conn,
                passphrase,
                identity=identity,
                profile=chosen,
                sans=parsed_sans,
                key_type=spec,
                public_key=public,
                validity_days=validity_days,
                replaces=None,
                action="cert.issue",
            )
        self._after_write()
        return issued

    def renew(
        self, identity: str, *, new_key: bool = False, csr_pem: bytes | None = None, validity_days: int | None = None
    ) -> IssuedCertificate:
        """Issue the identity a new certificate under the active CA, superseding the current one.

        The key is kept unless `new_key` (a new key made here) or a CSR (the requester's key).
        """
        validate_identity(identity)
        csr = load_csr(csr_pem) if csr_pem is not None else None
        if validity_days is not None and validity_days < 1:
            raise InvalidInput("validity_days: expected at least 1")
        if csr is not None and new_key:
            raise InvalidInput("new_key: cannot be combined with a CSR, which brings its own key")
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as conn:
            current = self._current_row(conn, identity)
            issued = self._reissue(
                conn, passphrase, current, new_key=new_key, csr=csr, validity_days=validity_days, action="cert.renew"
            )
        self._after_write()
        return issued

    def revoke(self, target: str, *, reason: str = "unspecified") -> list[IssuedCertificate]:
        """Revoke one certificate (by serial) or every unexpired one of an identity, and publish CRLs."""
        canonical_reason = parse_reason(reason)
        with self.store.reading() as conn:
            self._revocation_targets(conn, target)
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as conn:
            now = self.clock()
            rows = self._revocation_targets(conn, target)
            serials = [r["serial"] for r in rows]
            conn.executemany(
                "UPDATE certs SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ?",
                [(_iso(now), canonical_reason, s) for s in serials],
            )
            for generation in {r["generation"] for r in rows}:
                gen = self._generation(conn, generation)
                if gen.state != "retired":
                    self._write_crl(conn, generation, self._signer(conn, gen, passphrase), now)
            self._audit(conn, now, "cert.revoke", {"target": target, "serials": serials, "reason": canonical_reason})
            revoked = [IssuedCertificate.from_row(self._find_row(conn, s)) for s in serials]
        self._after_write()
        return revoked

    def generate_crl(self, *, next_update_days: int | None = None) -> list[CrlInfo]:
        """Sign and publish a fresh CRL for every CA generation still trusted."""
        if next_update_days is not None and next_update_days < 1:
            raise InvalidInput("next_update_days: expected at least 1")
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as conn:
            now = self.clock()
            if next_update_days is not None:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'crl_days'", (str(next_update_days),))
            infos = [
                self._write_crl(conn, gen.generation, self._signer(conn, gen, passphrase), now)
                for gen in self._generations(conn)
                if gen.state != "retired"
            ]
            self._audit(conn, now, "crl.generate", {"crls": [i.to_json() for i in infos]})
        self._after_write()
        return infos

    def crls(self) -> list[CrlInfo]:
        with self.store.reading() as conn:
            return self._crls(conn)

    # -- rotation -------------------------------------------------------------------------------

    def rotate_start(
        self, *, key_type: str | None = None, parent: Authority | None = None, validity_days: int | None = None
    ) -> CaGeneration:
        """Phase 1: make a new CA generation that signs from now on; trust both old and new."""
        with self.store.reading() as conn:
            meta = self._meta(conn)
            active = self._active(conn)
        if meta["rotation"] != "idle":
            raise PolicyViolation(
                f"rotation: already in phase {meta['rotation']}; continue with --reissue or --finalize"
            )
        spec = KeySpec.parse(key_type, field="key_type") if key_type else active.key_type
        if active.parents and parent is None:
            raise InvalidInput("parent: this CA is an intermediate; give --parent DIR to sign its new generation")
        if validity_days is not None and validity_days < 1:
            raise InvalidInput("validity_days: expected at least 1")
        old_days = (active.certificate.not_valid_after_utc - active.certificate.not_valid_before_utc).days
        days = validity_days or max(old_days, 1)
        name = f"{meta['name']} G{active.generation + 1}"
        organization = meta["organization"] or None
        passphrase = self._unlock()
        with self.store.reading() as conn:  # a wrong passphrase must fail before the parent signs
            self._signer(conn, active, passphrase)
        key = generate_key(spec)
        constraints = active.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if parent is not None:
            certificate, parents = parent.sign_subordinate(
                name=name,
                organization=organization,
                key=key,
                path_length=constraints.path_length,
                validity_days=days,
                record_as=_slug(meta["name"]),
            )
        else:
            certificate = build_ca_certificate(
                common_name=name,
                organization=organization,
                key=key,
                parent=None,
                path_length=constraints.path_length,
                serial=x509.random_serial_number(),
                now=self.clock(),
                validity=timedelta(days=days),
            )
            parents = ()
        with self.store.lock(), self.store.transaction() as conn:
            now = self.clock()
            current = self._active(conn)
            if self._meta(conn)["rotation"] != "idle" or current.generation != active.generation:
                raise Conflict("rotation: the CA changed while the new generation was made; run again")
            # The new key is stored under the same passphrase: prove it opens the current key first.
            self._signer(conn, current, passphrase)
            new_generation = current.generation + 1
            conn.execute("UPDATE ca SET state = 'previous' WHERE generation = ?", (current.generation,))
            self._insert_generation(
                conn, new_generation, "active", certificate, key, parents, now, self._encrypted(conn), passphrase
            )
            self._write_crl(conn, new_generation, Signer(certificate, key), now)
            conn.execute("UPDATE meta SET value = 'started' WHERE key = 'rotation'")
            self._audit(
                conn,
                now,
                "ca.rotate.start",
                {"generation": new_generation, "sha256_fingerprint": fingerprint(certificate)},
            )
            created = self._generation(conn, new_generation)
        self._after_write()
        return created

    def rotate_reissue(self, *, new_key: bool = False) -> list[IssuedCertificate]:
        """Phase 2: re-issue every active leaf of the previous generation under the new one."""
        with self.store.reading() as conn:
            self._require_rotation(conn, "reissue")
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as conn:
            self._require_rotation(conn, "reissue")
            self._signer(conn, self._active(conn), passphrase)  # a wrong passphrase changes nothing
            active = self._active(conn).generation
            rows = conn.execute(
                "SELECT * FROM certs WHERE status = 'active' AND generation != ? AND profile != ? ORDER BY rowid",
                (active, INTERMEDIATE_PROFILE),
            ).fetchall()
            # A key the CA never held (issued from a CSR) stays with its owner: re-certify it.
            issued = [
                self._reissue(
                    conn,
                    passphrase,
                    row,
                    new_key=new_key and row["private_key"] is not None,
                    csr=None,
                    validity_days=None,
                    action="ca.rotate.reissue",
                )
                for row in rows
            ]
            conn.execute("UPDATE meta SET value = 'reissued' WHERE key = 'rotation'")
        self._after_write()
        return issued

    def rotate_finalize(self, *, force: bool = False, parent: Authority | None = None) -> CaGeneration:
        """Phase 3: stop trusting the previous generation; its leaves are refused from now on."""
        with self.store.reading() as conn:
            self._require_rotation(conn, "finalize")
            previous = next(g for g in self._generations(conn) if g.state == "previous")
            left = self._leftovers(conn, previous.generation)
        if left and not force:
            raise PolicyViolation(
                f"rotation: {len(left)} active certificate(s) still come from the previous CA "
                f"({', '.join(left[:5])}); run `ca rotate --reissue` first or pass --force"
            )
        if previous.parents:
            if parent is None:
                raise InvalidInput(
                    "parent: this CA is an intermediate; give --parent DIR so the parent revokes its old generation"
                )
            old_serial = _serial_hex(previous.certificate.serial_number)
            if parent.find(old_serial).status != "revoked":  # a finalize interrupted after this step runs again
                parent.revoke(old_serial, reason="superseded")
        with self.store.lock(), self.store.transaction() as conn:
            now = self.clock()
            self._require_rotation(conn, "finalize")
            conn.execute("UPDATE ca SET state = 'retired' WHERE state = 'previous'")
            conn.execute("UPDATE meta SET value = 'idle' WHERE key = 'rotation'")
            self._audit(
                conn, now, "ca.rotate.finalize", {"retired_generation": previous.generation, "forced_over": left}
            )
            retired = self._generation(conn, previous.generation)
        self._after_write()
        return retired

    # -- export ---------------------------------------------------------------------------------

    def export(
        self,
        target: str,
        fmt: CertFormat,
        *,
        key_passphrase: bytes | None = None,
        namespace: str | None = None,
        secret_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> bytes:
        """Return the certificate (and, for key formats, its key) in the chosen format.

        `key_passphrase` encrypts an exported key; None writes it in plaintext (the CLI demands
        an explicit unsafe flag for that).
        """
        with self.store.reading() as conn:
            row = self._find_row(conn, target)
            leaf = x509.load_pem_x509_certificate(row["certificate"])
            gen = self._generation(conn, row["generation"])
            above = (gen.certificate, *gen.parents)
            chain = [c for c in above if c.issuer != c.subject]
            trust = self._trust_bundle(conn)
        if fmt is CertFormat.PEM:
            return exports.pem([leaf])
        if fmt is CertFormat.CHAIN:
            return exports.pem([leaf, *chain])
        if fmt is CertFormat.FULLCHAIN:
            return exports.pem([leaf, *above])
        if fmt is CertFormat.DER:
            return exports.der(leaf)
        if row["private_key"] is None:
            raise PolicyViolation(f"{row['identity']}: the CA does not hold this key (issued from a CSR)")
        if fmt is CertFormat.PKCS12 and not key_passphrase:
            raise InvalidInput("export passphrase: PKCS#12 files are always encrypted; give a passphrase")
        key = load_private_key(bytes(row["private_key"]), self._unlock(), what=f"key of {row['identity']}")
        if fmt is CertFormat.KEY:
            return private_key_pem(key, key_passphrase)
        if fmt is CertFormat.PKCS12:
            return exports.pkcs12_bundle(
                name=row["identity"], key=key, certificate=leaf, chain=chain, passphrase=key_passphrase or b""
            )
        return exports.k8s_tls_secret(
            name=secret_name or f"{row['identity']}-tls",
            namespace=namespace,
            chain_pem=exports.pem([leaf, *chain]),
            key=key,
            ca_pem=trust,
            labels=labels or {},
        )

    def trust_bundle(self) -> bytes:
        """Return every CA certificate peers should trust now (both generations while rotating)."""
        with self.store.reading() as conn:
            return self._trust_bundle(conn)

    def crl_pem(self) -> bytes:
        """Return the current CRLs of every trusted CA generation, concatenated as PEM."""
        with self.store.reading() as conn:
            return b"".join(i.pem for i in self._crls(conn))

    # -- integrity ------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Return the inconsistencies found in the CA directory (an empty list: all is well)."""
        problems = self.store.integrity_problems()
        if problems:
            return problems
        with self.store.reading() as conn:
            generations = {g.generation: g for g in self._generations(conn)}
            if sum(g.state == "active" for g in generations.values()) != 1:
                problems.append("ca: expected exactly one active generation")
            for row in conn.execute("SELECT * FROM certs"):
                try:
                    cert = x509.load_pem_x509_certificate(row["certificate"])
                except ValueError:
                    problems.append(f"cert {row['serial']}: stored certificate does not parse")
                    continue
                if fingerprint(cert) != row["fingerprint"] or _serial_hex(cert.serial_number) != row["serial"]:
                    problems.append(f"cert {row['serial']}: fingerprint or serial does not match the certificate")
                gen = generations.get(row["generation"])
                if gen is None:
                    problems.append(f"cert {row['serial']}: unknown CA generation {row['generation']}")
                    continue
                try:
                    cert.verify_directly_issued_by(gen.certificate)
                except (ValueError, TypeError, InvalidSignature):
                    problems.append(f"cert {row['serial']}: not signed by CA generation {gen.generation}")
            expected = self._published(conn).files
            audit_rows = conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        for name, data in expected.items():
            path = self.directory / name
            if not path.is_file() or path.read_bytes() != data:
                problems.append(f"{name}: out of date (the next write will republish it)")
        audit = self.directory / "audit.jsonl"
        lines = audit.read_bytes().count(b"\n") if audit.exists() else 0
        if lines != audit_rows:
            problems.append(f"audit.jsonl: {lines} lines for {audit_rows} audit records")
        return problems

    def audit_log(self) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            return [audit_record(r) for r in conn.execute("SELECT * FROM audit ORDER BY id")]

    # -- internals ------------------------------------------------------------------------------

    def _unlock(self) -> bytes | None:
        """Return the passphrase of this CA's keys, asking its source once (None: not encrypted)."""
        with self.store.reading() as conn:
            encrypted = self._encrypted(conn)
        if not encrypted:
            return None
        if self._passphrase is None:
            if self._passphrase_source is None:
                raise PassphraseError("passphrase: the CA key is encrypted and no passphrase source was given")
            self._passphrase = self._passphrase_source()
            if not self._passphrase:
                raise PassphraseError("passphrase: empty passphrase for an encrypted CA key")
        return self._passphrase

    @staticmethod
    def _encrypted(conn: sqlite3.Connection) -> bool:
        return Authority._meta(conn)["encrypted"] == "1"

    @staticmethod
    def _meta(conn: sqlite3.Connection) -> dict[str, str]:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        for key in ("name", "encrypted", "rotation", "crl_days", "maintenance_windows", "timezone"):
            if key not in meta:
                raise CorruptState(f"pki.db: meta record {key!r} is missing")
        return meta

    @staticmethod
    def _windows(meta: dict[str, str]) -> tuple[MaintenanceWindow, ...]:
        return tuple(parse_window(w, timezone=meta["timezone"]) for w in json.loads(meta["maintenance_windows"]))

    @staticmethod
    def _gen_from_row(row: sqlite3.Row) -> CaGeneration:
        return CaGeneration(
            generation=row["generation"],
            state=row["state"],
            certificate=x509.load_pem_x509_certificate(row["certificate"]),
            parents=_load_pems(bytes(row["parents"])),
        )

    def _generations(self, conn: sqlite3.Connection) -> list[CaGeneration]:
        rows = conn.execute("SELECT * FROM ca ORDER BY generation DESC").fetchall()
        return [self._gen_from_row(r) for r in rows]

    def _generation(self, conn: sqlite3.Connection, generation: int) -> CaGeneration:
        row = conn.execute("SELECT * FROM ca WHERE generation = ?", (generation,)).fetchone()
        if row is None:
            raise CorruptState(f"pki.db: CA generation {generation} is missing")
        return self._gen_from_row(row)

    def _active(self, conn: sqlite3.Connection) -> CaGeneration:
        row = conn.execute("SELECT * FROM ca WHERE state = 'active'").fetchone()
        if row is None:
            raise CorruptState("pki.db: no active CA generation")
        return self._gen_from_row(row)

    def _signer(self, conn: sqlite3.Connection, gen: CaGeneration, passphrase: bytes | None) -> Signer:
        row = conn.execute("SELECT private_key FROM ca WHERE generation = ?", (gen.generation,)).fetchone()
        key = load_private_key(bytes(row[0]), passphrase, what=f"CA key (generation {gen.generation})")
        return Signer(gen.certificate, key)

    def _insert_generation(
        self,
        conn: sqlite3.Connection,
        generation: int,
        state: str,
        certificate: x509.Certificate,
        key: Any,
        parents: Sequence[x509.Certificate],
        now: datetime,
        encrypt: bool,
        passphrase: bytes | None = None,
    ) -> None:
        secret = (passphrase or self._unlock()) if encrypt else None
        conn.execute(
            "INSERT INTO ca VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                generation,
                state,
                certificate.public_bytes(serialization.Encoding.PEM),
                private_key_pem(key, secret),
                exports.pem(parents),
                fingerprint(certificate),
                _iso(now),
            ),
        )

    def _new_serial(self, conn: sqlite3.Connection) -> int:
        while True:
            serial = x509.random_serial_number()
            if conn.execute("SELECT 1 FROM certs WHERE serial = ?", (_serial_hex(serial),)).fetchone() is None:
                return serial

    def _insert_cert(
        self,
        conn: sqlite3.Connection,
        certificate: x509.Certificate,
        *,
        identity: str,
        profile: str,
        generation: int,
        private_key: bytes | None,
        now: datetime,
        replaces: str | None,
    ) -> IssuedCertificate:
        serial = _serial_hex(certificate.serial_number)
        conn.execute(
            "INSERT INTO certs (serial, identity, profile, generation, subject, sans, key_type, not_before,"
            " not_after, certificate, private_key, fingerprint, status, issued_at, replaces)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
            (
                serial,
                identity,
                profile,
                generation,
                certificate.subject.rfc4514_string(),
                json.dumps(_san_strings(certificate)),
                str(spec_of(certificate.public_key())),  # type: ignore[arg-type]
                _iso(certificate.not_valid_before_utc),
                _iso(certificate.not_valid_after_utc),
                certificate.public_bytes(serialization.Encoding.PEM),
                private_key,
                fingerprint(certificate),
                _iso(now),
                replaces,
            ),
        )
        return IssuedCertificate.from_row(self._find_row(conn, serial))

    def _issue_in(
        self,
        conn: sqlite3.Connection,
        passphrase: bytes | None,
        *,
        identity: str,
        profile: Profile,
        sans: Sequence[San],
        key_type: KeySpec,
        public_key: PublicKey | None,
        validity_days: int | None,
        replaces: str | None,
        action: str,
        private_key: bytes | None = None,
    ) -> IssuedCertificate:
        now = self.clock()
        active = self._active(conn)
        signer = self._signer(conn, active, passphrase)
        if public_key is None:
            key = generate_key(key_type)
            public_key = key.public_key()
            private_key = private_key_pem(key, passphrase)
        certificate = build_leaf_certificate(
            identity=identity,
            profile=profile,
            public_key=public_key,
            sans=sans,
            issuer=signer,
            serial=self._new_serial(conn),
            now=now,
            validity=timedelta(days=validity_days) if validity_days else None,
        )
        issued = self._insert_cert(
            conn,
            certificate,
            identity=identity,
            profile=profile.name,
            generation=active.generation,
            private_key=private_key,
            now=now,
            replaces=replaces,
        )
        self._audit(
            conn,
            now,
            action,
            {"identity": identity, "serial": issued.serial, "profile": profile.name, "replaces": replaces},
        )
        return issued

    def _reissue(
        self,
        conn: sqlite3.Connection,
        passphrase: bytes | None,
        current: sqlite3.Row,
        *,
        new_key: bool,
        csr: x509.CertificateSigningRequest | None,
        validity_days: int | None,
        action: str,
    ) -> IssuedCertificate:
        profile = select(self.profiles(), current["profile"])
        old = x509.load_pem_x509_certificate(current["certificate"])
        sans = parse_sans(_san_strings(old))
        if new_key:
            public_key: PublicKey | None = None
            private_key = None
        elif csr is not None:
            public_key = csr.public_key()  # type: ignore[assignment]
            private_key = None
        else:
            public_key = old.public_key()  # type: ignore[assignment]
            private_key = bytes(current["private_key"]) if current["private_key"] is not None else None
        spec = KeySpec(current["key_type"]) if public_key is None else spec_of(public_key)
        profile.check_request(key=spec, issuer_key=self._active(conn).key_type, sans=sans)
        conn.execute("UPDATE certs SET status = 'superseded' WHERE serial = ?", (current["serial"],))
        return self._issue_in(
            conn,
            passphrase,
            identity=current["identity"],
            profile=profile,
            sans=sans,
            key_type=spec,
            public_key=public_key,
            validity_days=validity_days,
            replaces=current["serial"],
            action=action,
            private_key=private_key,
        )

    def _refuse_duplicate(self, conn: sqlite3.Connection, identity: str) -> None:
        row = conn.execute("SELECT serial FROM certs WHERE identity = ? AND status = 'active'", (identity,)).fetchone()
        if row is not None:
            raise Conflict(
                f"identity: {identity!r} already has an active certificate (serial {row[0]}); "
                "use `cert renew` or revoke it first"
            )

    def _current_row(self, conn: sqlite3.Connection, identity: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM certs WHERE identity = ? AND status = 'active'", (identity,)).fetchone()
        if row is None:
            raise NotFound(f"identity: no active certificate for {identity!r}; issue one with `cert issue`")
        return row  # type: ignore[no-any-return]

    def _find_row(self, conn: sqlite3.Connection, target: str) -> sqlite3.Row:
        text = target.strip().lower().replace(":", "")
        if _SERIAL.fullmatch(text):
            serial = format(int(text.removeprefix("0x"), 16), "x")
            row = conn.execute("SELECT * FROM certs WHERE serial = ?", (serial,)).fetchone()
            if row is not None:
                return row  # type: ignore[no-any-return]
        row = conn.execute(
            "SELECT * FROM certs WHERE identity = ? ORDER BY status = 'active' DESC, issued_at DESC, rowid DESC",
            (target,),
        ).fetchone()
        if row is None:
            raise NotFound(f"{target!r}: no certificate with this serial or identity")
        return row  # type: ignore[no-any-return]

    def _revocation_targets(self, conn: sqlite3.Connection, target: str) -> list[sqlite3.Row]:
        row = self._find_row(conn, target)
        if row["identity"] == target:
            now = _iso(self.clock())
            rows = conn.execute(
                "SELECT * FROM certs WHERE identity = ? AND status != 'revoked' AND not_after > ?", (target, now)
            ).fetchall()
        else:
            rows = [row] if row["status"] != "revoked" else []
        if not rows:
            raise Conflict(f"{target!r}: nothing left to revoke (already revoked or expired)")
        return rows

    def _write_crl(self, conn: sqlite3.Connection, generation: int, signer: Signer, now: datetime) -> CrlInfo:
        rows = conn.execute(
            "SELECT serial, revoked_at, revocation_reason FROM certs WHERE generation = ? AND status = 'revoked'"
            " ORDER BY serial",
            (generation,),
        ).fetchall()
        entries = [RevokedEntry(int(r[0], 16), _parse_iso(r[1]), r[2]) for r in rows]
        last = conn.execute("SELECT number FROM crls WHERE generation = ?", (generation,)).fetchone()
        number = (last[0] + 1) if last else 1
        days = int(self._meta(conn)["crl_days"])
        crl = build_crl(issuer=signer, revoked=entries, number=number, now=now, next_update=timedelta(days=days))
        pem = crl.public_bytes(serialization.Encoding.PEM)
        conn.execute(
            "INSERT OR REPLACE INTO crls VALUES (?, ?, ?, ?, ?)",
            (generation, number, pem, _iso(now), _iso(now + timedelta(days=days))),
        )
        return CrlInfo(generation, number, now, now + timedelta(days=days), len(entries), pem)

    def _crls(self, conn: sqlite3.Connection) -> list[CrlInfo]:
        rows = conn.execute(
            "SELECT crls.* FROM crls JOIN ca USING (generation) WHERE ca.state != 'retired' ORDER BY generation DESC"
        ).fetchall()
        infos = []
        for row in rows:
            crl = x509.load_pem_x509_crl(row["crl"])
            infos.append(
                CrlInfo(
                    row["generation"],
                    row["number"],
                    _parse_iso(row["this_update"]),
                    _parse_iso(row["next_update"]),
                    len(crl),
                    bytes(row["crl"]),
                )
            )
        return infos

    def _trust_bundle(self, conn: sqlite3.Connection) -> bytes:
        seen: dict[str, x509.Certificate] = {}
        for gen in self._generations(conn):
            if gen.state != "retired":
                for cert in (gen.certificate, *gen.parents):
                    seen.setdefault(fingerprint(cert), cert)
        return exports.pem(list(seen.values()))

    def _published(self, conn: sqlite3.Connection) -> Published:
        active = self._active(conn)
        return Published(
            {
                "ca.crt": exports.pem([active.certificate]),
                "ca-chain.pem": exports.pem([active.certificate, *active.parents]),
                "trust-bundle.pem": self._trust_bundle(conn),
                "crl.pem": b"".join(i.pem for i in self._crls(conn)),
            }
        )

    def _after_write(self) -> None:
        """Publish the derived files and the audit mirror from the committed state."""
        with self.store.lock(), self.store.reading() as conn:
            self.store.publish(self._published(conn))
            kill_point("before-audit-sync")
            self.store.sync_audit(conn)

    def _audit(self, conn: sqlite3.Connection, now: datetime, action: str, detail: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (_iso(now), self.actor, action, json.dumps(detail, sort_keys=True)),
        )

    def _require_rotation(self, conn: sqlite3.Connection, step: str) -> None:
        phase = self._meta(conn)["rotation"]
        if phase not in ("started", "reissued"):
            raise PolicyViolation(f"rotation: no rotation in progress; start one with `ca rotate` before --{step}")

    def _leftovers(self, conn: sqlite3.Connection, generation: int) -> list[str]:
        rows = conn.execute(
            "SELECT identity FROM certs WHERE generation = ? AND status = 'active' AND profile != ? AND not_after > ?",
            (generation, INTERMEDIATE_PROFILE, _iso(self.clock())),
        ).fetchall()
        return [r[0] for r in rows]
