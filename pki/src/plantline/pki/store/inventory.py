"""The CA's records in its SQLite database: every query the package makes, with typed arguments and results.

An `Inventory` wraps one connection that `CaStore` opened; it never begins, commits or rolls back,
so a change made through it lands in the transaction the caller holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plantline.pki.errors import CorruptState
from plantline.pki.keys import spec_of
from plantline.pki.records import (
    CaGeneration,
    CaSettings,
    CertRecord,
    CrlInfo,
    IssuedCertificate,
    StoredCertificate,
    iso,
    serial_hex,
)
from plantline.pki.x509build import RevokedEntry, fingerprint, san_strings

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ca (
    generation INTEGER PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('active', 'previous', 'retired')),
    certificate BLOB NOT NULL,
    private_key BLOB NOT NULL,
    parents BLOB NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX ca_one_active ON ca (state) WHERE state = 'active';
CREATE TABLE certs (
    serial TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    profile TEXT NOT NULL,
    generation INTEGER NOT NULL REFERENCES ca (generation),
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    key_type TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    certificate BLOB NOT NULL,
    private_key BLOB,
    fingerprint TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    issued_at TEXT NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT,
    replaces TEXT
);
CREATE INDEX certs_identity ON certs (identity);
CREATE UNIQUE INDEX certs_one_active_per_identity ON certs (identity) WHERE status = 'active';
CREATE TABLE crls (
    generation INTEGER PRIMARY KEY REFERENCES ca (generation),
    number INTEGER NOT NULL,
    crl BLOB NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

_REQUIRED_META = ("name", "encrypted", "rotation", "crl_days", "maintenance_windows", "timezone")
_STATUSES = ("active", "superseded", "revoked")


def _cert_record(row: sqlite3.Row) -> CertRecord:
    issued = IssuedCertificate(
        serial=row["serial"],
        identity=row["identity"],
        profile=row["profile"],
        generation=row["generation"],
        subject=row["subject"],
        sans=tuple(json.loads(row["sans"])),
        key_type=row["key_type"],
        not_before=datetime.fromisoformat(row["not_before"]),
        not_after=datetime.fromisoformat(row["not_after"]),
        fingerprint=row["fingerprint"],
        status=row["status"],
        issued_at=datetime.fromisoformat(row["issued_at"]),
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
        revocation_reason=row["revocation_reason"],
        replaces=row["replaces"],
        has_private_key=row["private_key"] is not None,
    )
    key = row["private_key"]
    return CertRecord(issued, bytes(row["certificate"]), bytes(key) if key is not None else None)


def _generation(row: sqlite3.Row) -> CaGeneration:
    parents = bytes(row["parents"])
    return CaGeneration(
        generation=row["generation"],
        state=row["state"],
        certificate=x509.load_pem_x509_certificate(row["certificate"]),
        parents=tuple(x509.load_pem_x509_certificates(parents)) if parents.strip() else (),
    )


def _audit_record(row: sqlite3.Row) -> dict[str, Any]:
    """Return one audit row as the JSON object written to audit.jsonl."""
    return {
        "id": row["id"],
        "at": row["at"],
        "actor": row["actor"],
        "action": row["action"],
        **json.loads(row["detail"]),
    }


class Inventory:
    """The records of one CA directory, read and changed through one open connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    # -- schema ---------------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create the tables of an empty database (SQLite runs this outside a transaction)."""
        self._conn.executescript(SCHEMA)

    def record_schema_version(self) -> None:
        self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def schema_version(self) -> str | None:
        """Return the schema version the database records, None if it records none."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def integrity_check(self) -> list[str]:
        """Return what SQLite's full integrity check reports, `ok` when all is well."""
        return [str(row[0]) for row in self._conn.execute("PRAGMA integrity_check").fetchall()]

    # -- settings -------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Return the settings as stored, or raise CorruptState if one the CA needs is missing."""
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        for key in _REQUIRED_META:
            if key not in meta:
                raise CorruptState(f"pki.db: meta record {key!r} is missing")
        return meta

    def settings(self) -> CaSettings:
        meta = self.meta()
        return CaSettings(
            name=meta["name"],
            organization=meta.get("organization", ""),
            encrypted=meta["encrypted"] == "1",
            rotation=meta["rotation"],
            crl_days=int(meta["crl_days"]),
            maintenance_windows=tuple(json.loads(meta["maintenance_windows"])),
            timezone=meta["timezone"],
            crl_url=meta.get("crl_url", ""),
        )

    def create_settings(self, settings: CaSettings) -> None:
        values = {
            "name": settings.name,
            "organization": settings.organization,
            "encrypted": "1" if settings.encrypted else "0",
            "rotation": settings.rotation,
            "crl_days": str(settings.crl_days),
            "maintenance_windows": json.dumps(list(settings.maintenance_windows)),
            "timezone": settings.timezone,
            "crl_url": settings.crl_url,
        }
        self._conn.executemany("INSERT INTO meta VALUES (?, ?)", values.items())

    def set_rotation(self, phase: str) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'rotation'", (phase,))

    def set_crl_days(self, days: int) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'crl_days'", (str(days),))

    # -- CA generations -------------------------------------------------------------------------

    def generations(self) -> list[CaGeneration]:
        """Return every CA generation, newest first."""
        rows = self._conn.execute("SELECT * FROM ca ORDER BY generation DESC").fetchall()
        return [_generation(r) for r in rows]

    def generation(self, generation: int) -> CaGeneration:
        row = self._conn.execute("SELECT * FROM ca WHERE generation = ?", (generation,)).fetchone()
        if row is None:
            raise CorruptState(f"pki.db: CA generation {generation} is missing")
        return _generation(row)

    def active_generation(self) -> CaGeneration:
        row = self._conn.execute("SELECT * FROM ca WHERE state = 'active'").fetchone()
        if row is None:
            raise CorruptState("pki.db: no active CA generation")
        return _generation(row)

    def ca_key(self, generation: int) -> bytes:
        """Return the generation's private key as stored (PKCS#8, encrypted unless the CA is not)."""
        row = self._conn.execute("SELECT private_key FROM ca WHERE generation = ?", (generation,)).fetchone()
        return bytes(row[0])

    def add_generation(
        self,
        *,
        generation: int,
        state: str,
        certificate: x509.Certificate,
        private_key: bytes,
        parents_pem: bytes,
        created_at: datetime,
    ) -> None:
        self._conn.execute(
            "INSERT INTO ca VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                generation,
                state,
                certificate.public_bytes(serialization.Encoding.PEM),
                private_key,
                parents_pem,
                fingerprint(certificate),
                iso(created_at),
            ),
        )

    def set_generation_state(self, generation: int, state: str) -> None:
        self._conn.execute("UPDATE ca SET state = ? WHERE generation = ?", (state, generation))

    def retire_previous(self) -> None:
        """Mark the previous generation (the one a rotation replaced) retired."""
        self._conn.execute("UPDATE ca SET state = 'retired' WHERE state = 'previous'")

    # -- certificates ---------------------------------------------------------------------------

    def serial_taken(self, serial: str) -> bool:
        return self._conn.execute("SELECT 1 FROM certs WHERE serial = ?", (serial,)).fetchone() is not None

    def add_certificate(
        self,
        certificate: x509.Certificate,
        *,
        identity: str,
        profile: str,
        generation: int,
        private_key: bytes | None,
        issued_at: datetime,
        replaces: str | None,
    ) -> CertRecord:
        """Record a certificate the CA just signed as the identity's active one, and return its record."""
        serial = serial_hex(certificate.serial_number)
        self._conn.execute(
            "INSERT INTO certs (serial, identity, profile, generation, subject, sans, key_type, not_before,"
            " not_after, certificate, private_key, fingerprint, status, issued_at, replaces)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
            (
                serial,
                identity,
                profile,
                generation,
                certificate.subject.rfc4514_string(),
                json.dumps(san_strings(certificate)),
                str(spec_of(certificate.public_key())),  # type: ignore[arg-type]
                iso(certificate.not_valid_before_utc),
                iso(certificate.not_valid_after_utc),
                certificate.public_bytes(serialization.Encoding.PEM),
                private_key,
                fingerprint(certificate),
                iso(issued_at),
                replaces,
            ),
        )
        record = self.by_serial(serial)
        if record is None:
            raise CorruptState(f"pki.db: certificate {serial} vanished as it was recorded")
        return record

    def by_serial(self, serial: str) -> CertRecord | None:
        row = self._conn.execute("SELECT * FROM certs WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else _cert_record(row)

    def current(self, identity: str) -> CertRecord | None:
        """Return the identity's active certificate, None if it has none."""
        row = self._conn.execute("SELECT * FROM certs WHERE identity = ? AND status = 'active'", (identity,)).fetchone()
        return None if row is None else _cert_record(row)

    def latest(self, identity: str) -> CertRecord | None:
        """Return the identity's active certificate, else its newest one, None if it has none."""
        row = self._conn.execute(
            "SELECT * FROM certs WHERE identity = ? ORDER BY status = 'active' DESC, issued_at DESC, rowid DESC",
            (identity,),
        ).fetchone()
        return None if row is None else _cert_record(row)

    def history(self, identity: str) -> list[CertRecord]:
        """Return every certificate of the identity, newest first."""
        rows = self._conn.execute(
            "SELECT * FROM certs WHERE identity = ? ORDER BY issued_at DESC, rowid DESC", (identity,)
        ).fetchall()
        return [_cert_record(r) for r in rows]

    def first_profile(self, identity: str) -> str | None:
        """Return the profile of one certificate of the identity, None if it has none."""
        row = self._conn.execute("SELECT profile FROM certs WHERE identity = ? LIMIT 1", (identity,)).fetchone()
        return None if row is None else str(row[0])

    def certificates(self, *, identity: str | None = None, status: str | None = None) -> list[CertRecord]:
        """Return the inventory oldest first, of one identity and one stored status if given."""
        query, args = "SELECT * FROM certs WHERE 1 = 1", list[str]()
        if identity is not None:
            query, args = query + " AND identity = ?", [*args, identity]
        if status in _STATUSES:
            query, args = query + " AND status = ?", [*args, status]
        rows = self._conn.execute(query + " ORDER BY issued_at, rowid", args).fetchall()
        return [_cert_record(r) for r in rows]

    def status_counts(self) -> dict[str, int]:
        """Return how many certificates have each stored status (a status none has is absent)."""
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM certs GROUP BY status").fetchall())

    def unrevoked(self, identity: str, *, valid_at: datetime) -> list[CertRecord]:
        """Return the identity's certificates neither revoked nor expired at `valid_at`."""
        rows = self._conn.execute(
            "SELECT * FROM certs WHERE identity = ? AND status != 'revoked' AND not_after > ?",
            (identity, iso(valid_at)),
        ).fetchall()
        return [_cert_record(r) for r in rows]

    def active_outside(self, generation: int, *, except_profile: str) -> list[CertRecord]:
        """Return the active certificates other generations signed, oldest first, leaving out one profile."""
        rows = self._conn.execute(
            "SELECT * FROM certs WHERE status = 'active' AND generation != ? AND profile != ? ORDER BY rowid",
            (generation, except_profile),
        ).fetchall()
        return [_cert_record(r) for r in rows]

    def active_identities(self, generation: int, *, valid_at: datetime, except_profile: str) -> list[str]:
        """Return the identities whose active certificate `generation` signed and which is unexpired."""
        rows = self._conn.execute(
            "SELECT identity FROM certs WHERE generation = ? AND status = 'active' AND profile != ? AND not_after > ?",
            (generation, except_profile, iso(valid_at)),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def stored_certificates(self) -> list[StoredCertificate]:
        rows = self._conn.execute("SELECT serial, generation, fingerprint, certificate FROM certs").fetchall()
        return [StoredCertificate(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def supersede(self, serial: str) -> None:
        self._conn.execute("UPDATE certs SET status = 'superseded' WHERE serial = ?", (serial,))

    def revoke(self, serials: Iterable[str], *, at: datetime, reason: str) -> None:
        self._conn.executemany(
            "UPDATE certs SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ?",
            [(iso(at), reason, s) for s in serials],
        )

    # -- CRLs -----------------------------------------------------------------------------------

    def revocations(self, generation: int) -> list[RevokedEntry]:
        """Return the entries of the generation's CRL: its revoked certificates, by serial."""
        rows = self._conn.execute(
            "SELECT serial, revoked_at, revocation_reason FROM certs WHERE generation = ? AND status = 'revoked'"
            " ORDER BY serial",
            (generation,),
        ).fetchall()
        return [RevokedEntry(int(r[0], 16), datetime.fromisoformat(r[1]), r[2]) for r in rows]

    def crl_number(self, generation: int) -> int | None:
        """Return the number of the generation's last CRL, None before its first."""
        row = self._conn.execute("SELECT number FROM crls WHERE generation = ?", (generation,)).fetchone()
        return None if row is None else int(row[0])

    def put_crl(self, crl: CrlInfo) -> None:
        """Record `crl` as the generation's current CRL, replacing the one before."""
        self._conn.execute(
            "INSERT OR REPLACE INTO crls VALUES (?, ?, ?, ?, ?)",
            (crl.generation, crl.number, crl.pem, iso(crl.this_update), iso(crl.next_update)),
        )

    def crls(self) -> list[CrlInfo]:
        """Return the current CRL of every generation not retired, newest generation first."""
        rows = self._conn.execute(
            "SELECT crls.* FROM crls JOIN ca USING (generation) WHERE ca.state != 'retired' ORDER BY generation DESC"
        ).fetchall()
        return [
            CrlInfo(
                row["generation"],
                row["number"],
                datetime.fromisoformat(row["this_update"]),
                datetime.fromisoformat(row["next_update"]),
                len(x509.load_pem_x509_crl(row["crl"])),
                bytes(row["crl"]),
            )
            for row in rows
        ]

    # -- audit ----------------------------------------------------------------------------------

    def add_audit(self, *, at: datetime, actor: str, action: str, detail: Mapping[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (iso(at), actor, action, json.dumps(detail, sort_keys=True)),
        )

    def audit_records(self, *, after: int = 0) -> list[dict[str, Any]]:
        """Return the audit records with an id above `after`, in order, as audit.jsonl holds them."""
        rows = self._conn.execute("SELECT * FROM audit WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [_audit_record(r) for r in rows]

    def audit_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
