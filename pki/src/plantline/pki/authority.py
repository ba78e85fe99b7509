"""The certificate authority of one CA directory: the operations the CLI and other components call.

Every operation validates its input before any key is touched or any cryptography runs, then
makes its change in one transaction under the directory lock, then publishes the derived files.
The records are read and changed through the store's `Inventory`; rotation lives in `rotation`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from plantline.pki import exports
from plantline.pki.errors import Conflict, InvalidInput, NotFound, PassphraseError, PolicyViolation
from plantline.pki.exports import CertFormat
from plantline.pki.issuer import Issuer
from plantline.pki.keys import KeySpec, PublicKey, generate_key, load_private_key, private_key_pem, spec_of
from plantline.pki.names import ca_identity, parse_sans, validate_identity
from plantline.pki.profiles import Profile, builtin_profiles, parse_profiles, select
from plantline.pki.publishing import crl_pem, publish, published, trust_bundle
from plantline.pki.records import (
    INTERMEDIATE_PROFILE,
    CaGeneration,
    CaSettings,
    CertRecord,
    CrlInfo,
    IssuedCertificate,
    StoredCertificate,
    serial_hex,
)
from plantline.pki.renewal import CertFacts, Decision, RenewalPolicy, decide
from plantline.pki.rotation import Rotation
from plantline.pki.store import CaStore, Inventory
from plantline.pki.window import MaintenanceWindow, parse_window
from plantline.pki.x509build import Signer, build_ca_certificate, check_crl_url, fingerprint, parse_reason

__all__ = [
    "INTERMEDIATE_PROFILE",
    "Authority",
    "CaGeneration",
    "CrlInfo",
    "IssuedCertificate",
    "PassphraseSource",
    "load_csr",
    "utcnow",
]

PassphraseSource = Callable[[], bytes]
_SERIAL = re.compile(r"(?:0x)?[0-9a-f]{1,40}")


def utcnow() -> datetime:
    """Return the current time in UTC (the default clock)."""
    return datetime.now(UTC)


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
        crl_url: str | None = None,
        actor: str = "plantline.pki",
        clock: Callable[[], datetime] = utcnow,
        force: bool = False,
    ) -> Authority:
        """Create a root CA in `directory`, or an intermediate signed by `parent`.

        With `crl_url`, every leaf it issues names that URL as its CRL Distribution Point: serve the
        published `crl.der` there.
        """
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
        if crl_url is not None:
            check_crl_url(crl_url, field="crl_url")
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
        settings = CaSettings(
            name=name,
            organization=organization or "",
            encrypted=encrypt,
            rotation="idle",
            crl_days=crl_days,
            maintenance_windows=tuple(maintenance_windows),
            timezone=timezone,
            crl_url=crl_url or "",
        )
        with CaStore.creating(directory, force=force) as inventory:
            inventory.create_settings(settings)
            issuer = authority._issuer(inventory)
            issuer.add_generation(1, certificate, key, parents, now, key_passphrase=passphrase if encrypt else None)
            issuer.write_crl(1, Signer(certificate, key), now)
            issuer.audit(
                now,
                "ca.init",
                {
                    "name": name,
                    "key_type": str(key_type),
                    "root": parent is None,
                    "sha256_fingerprint": fingerprint(certificate),
                },
            )
        publish(authority.store)
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
        identity = record_as or ca_identity(name)
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as inventory:
            now = self.clock()
            issuer = self._issuer(inventory)
            active = inventory.active_generation()
            certificate = build_ca_certificate(
                common_name=name,
                organization=organization,
                key=key,
                parent=issuer.signer(active, passphrase),
                path_length=path_length,
                serial=issuer.new_serial(),
                now=now,
                validity=timedelta(days=validity_days),
            )
            previous = inventory.current(identity)
            replaces = previous.issued.serial if previous is not None else None
            if replaces is not None:
                inventory.supersede(replaces)
            inventory.add_certificate(
                certificate,
                identity=identity,
                profile=INTERMEDIATE_PROFILE,
                generation=active.generation,
                private_key=None,
                issued_at=now,
                replaces=replaces,
            )
            issuer.audit(
                now, "ca.sign-subordinate", {"identity": identity, "serial": serial_hex(certificate.serial_number)}
            )
            parents = (active.certificate, *active.parents)
        publish(self.store)
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
        with self.store.reading() as inventory:
            return inventory.meta()

    def generations(self) -> list[CaGeneration]:
        """Return every CA generation, newest first."""
        with self.store.reading() as inventory:
            return inventory.generations()

    def info(self) -> dict[str, Any]:
        """Return a summary of the CA: name, generations, rotation phase, inventory counts."""
        with self.store.reading() as inventory:
            settings = inventory.settings()
            counts = inventory.status_counts()
            generations = inventory.generations()
        return {
            "directory": str(self.directory),
            "name": settings.name,
            "key_encrypted": settings.encrypted,
            "rotation": settings.rotation,
            "crl_days": settings.crl_days,
            "maintenance_windows": list(settings.maintenance_windows),
            "timezone": settings.timezone,
            "crl_url": settings.crl_url or None,
            "generations": [g.to_json() for g in generations],
            "certificates": {k: counts.get(k, 0) for k in ("active", "superseded", "revoked")},
        }

    def certificates(self, *, identity: str | None = None, status: str | None = None) -> list[IssuedCertificate]:
        """Return the inventory, oldest first, optionally filtered."""
        with self.store.reading() as inventory:
            found = [r.issued for r in inventory.certificates(identity=identity, status=status)]
        if status == "expired":
            now = self.clock()
            found = [c for c in found if c.status_at(now) == "expired"]
        return found

    def find(self, target: str) -> IssuedCertificate:
        """Return the certificate with serial `target`, or the current one of identity `target`."""
        with self.store.reading() as inventory:
            return self._find(inventory, target).issued

    def certificate_pem(self, target: str) -> bytes:
        with self.store.reading() as inventory:
            return self._find(inventory, target).pem

    def needs_renewal(self, identity: str, *, policy: RenewalPolicy | None = None) -> Decision:
        """Return the renewal decision for the identity's current certificate."""
        validate_identity(identity)
        now = self.clock()
        with self.store.reading() as inventory:
            history = [r.issued for r in inventory.history(identity)]
            if policy is None:
                profile = select(self.profiles(), history[0].profile) if history else None
                policy = self.default_policy(inventory, profile)
            active_generation = inventory.active_generation().generation
        if not history:
            return decide(now, None, policy)
        current = next((c for c in history if c.status == "active"), history[0])
        facts = CertFacts(
            not_after=current.not_after,
            key=KeySpec(current.key_type),
            revoked=current.status == "revoked",
            issued_by_current_ca=current.generation == active_generation,
        )
        return decide(now, facts, policy)

    def needs_renewal_policy(self, identity: str) -> RenewalPolicy:
        """Return the policy `needs_renewal` applies by default: the profile's window, the CA's hours."""
        with self.store.reading() as inventory:
            profile = inventory.first_profile(identity)
            return self.default_policy(inventory, select(self.profiles(), profile) if profile is not None else None)

    def default_policy(self, inventory: Inventory, profile: Profile | None) -> RenewalPolicy:
        return RenewalPolicy(
            renew_before=timedelta(days=profile.renew_before_days if profile else 30),
            windows=self._windows(inventory.settings()),
        )

    def maintenance_windows(self) -> tuple[MaintenanceWindow, ...]:
        with self.store.reading() as inventory:
            return self._windows(inventory.settings())

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
        with self.store.reading() as inventory:
            chosen.check_request(key=spec, issuer_key=inventory.active_generation().key_type, sans=parsed_sans)
            self._refuse_duplicate(inventory, identity)
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as inventory:
            self._refuse_duplicate(inventory, identity)
            issued = self._issuer(inventory).issue(
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
        publish(self.store)
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
        with self.store.lock(), self.store.transaction() as inventory:
            current = self._current(inventory, identity)
            issued = self._issuer(inventory).reissue(
                passphrase, current, new_key=new_key, csr=csr, validity_days=validity_days, action="cert.renew"
            )
        publish(self.store)
        return issued

    def revoke(self, target: str, *, reason: str = "unspecified") -> list[IssuedCertificate]:
        """Revoke one certificate (by serial) or every unexpired one of an identity, and publish CRLs."""
        canonical_reason = parse_reason(reason)
        with self.store.reading() as inventory:
            self._revocation_targets(inventory, target)
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as inventory:
            now = self.clock()
            issuer = self._issuer(inventory)
            targets = self._revocation_targets(inventory, target)
            serials = [t.issued.serial for t in targets]
            inventory.revoke(serials, at=now, reason=canonical_reason)
            for generation in {t.issued.generation for t in targets}:
                gen = inventory.generation(generation)
                if gen.state != "retired":
                    issuer.write_crl(generation, issuer.signer(gen, passphrase), now)
            issuer.audit(now, "cert.revoke", {"target": target, "serials": serials, "reason": canonical_reason})
            revoked = [self._find(inventory, s).issued for s in serials]
        publish(self.store)
        return revoked

    def generate_crl(self, *, next_update_days: int | None = None) -> list[CrlInfo]:
        """Sign and publish a fresh CRL for every CA generation still trusted."""
        if next_update_days is not None and next_update_days < 1:
            raise InvalidInput("next_update_days: expected at least 1")
        passphrase = self._unlock()
        with self.store.lock(), self.store.transaction() as inventory:
            now = self.clock()
            issuer = self._issuer(inventory)
            if next_update_days is not None:
                inventory.set_crl_days(next_update_days)
            infos = [
                issuer.write_crl(gen.generation, issuer.signer(gen, passphrase), now)
                for gen in inventory.generations()
                if gen.state != "retired"
            ]
            issuer.audit(now, "crl.generate", {"crls": [i.to_json() for i in infos]})
        publish(self.store)
        return infos

    def crls(self) -> list[CrlInfo]:
        with self.store.reading() as inventory:
            return inventory.crls()

    # -- rotation -------------------------------------------------------------------------------

    def rotate_start(
        self, *, key_type: str | None = None, parent: Authority | None = None, validity_days: int | None = None
    ) -> CaGeneration:
        """Phase 1: make a new CA generation that signs from now on; trust both old and new."""
        return self._rotation().start(key_type=key_type, parent=parent, validity_days=validity_days)

    def rotate_reissue(self, *, new_key: bool = False) -> list[IssuedCertificate]:
        """Phase 2: re-issue every active leaf of the previous generation under the new one."""
        return self._rotation().reissue(new_key=new_key)

    def rotate_finalize(self, *, force: bool = False, parent: Authority | None = None) -> CaGeneration:
        """Phase 3: stop trusting the previous generation; its leaves are refused from now on."""
        return self._rotation().finalize(force=force, parent=parent)

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
        with self.store.reading() as inventory:
            record = self._find(inventory, target)
            leaf = record.certificate()
            gen = inventory.generation(record.issued.generation)
            above = (gen.certificate, *gen.parents)
            chain = [c for c in above if c.issuer != c.subject]
            trust = trust_bundle(inventory)
        if fmt is CertFormat.PEM:
            return exports.pem([leaf])
        if fmt is CertFormat.CHAIN:
            return exports.pem([leaf, *chain])
        if fmt is CertFormat.FULLCHAIN:
            return exports.pem([leaf, *above])
        if fmt is CertFormat.DER:
            return exports.der(leaf)
        identity = record.issued.identity
        if record.private_key is None:
            raise PolicyViolation(f"{identity}: the CA does not hold this key (issued from a CSR)")
        if fmt is CertFormat.PKCS12 and not key_passphrase:
            raise InvalidInput("export passphrase: PKCS#12 files are always encrypted; give a passphrase")
        key = load_private_key(record.private_key, self._unlock(), what=f"key of {identity}")
        if fmt is CertFormat.KEY:
            return private_key_pem(key, key_passphrase)
        if fmt is CertFormat.PKCS12:
            return exports.pkcs12_bundle(
                name=identity, key=key, certificate=leaf, chain=chain, passphrase=key_passphrase or b""
            )
        return exports.k8s_tls_secret(
            name=secret_name or f"{identity}-tls",
            namespace=namespace,
            chain_pem=exports.pem([leaf, *chain]),
            key=key,
            ca_pem=trust,
            labels=labels or {},
        )

    def trust_bundle(self) -> bytes:
        """Return every CA certificate peers should trust now (both generations while rotating)."""
        with self.store.reading() as inventory:
            return trust_bundle(inventory)

    def crl_pem(self) -> bytes:
        """Return the current CRLs of every trusted CA generation, concatenated as PEM."""
        with self.store.reading() as inventory:
            return crl_pem(inventory)

    # -- integrity ------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Return the inconsistencies found in the CA directory (an empty list: all is well)."""
        problems = self.store.integrity_problems()
        if problems:
            return problems
        with self.store.reading() as inventory:
            generations = {g.generation: g for g in inventory.generations()}
            if sum(g.state == "active" for g in generations.values()) != 1:
                problems.append("ca: expected exactly one active generation")
            for stored in inventory.stored_certificates():
                problems += _certificate_problems(stored, generations)
            expected = published(inventory).files
            audit_rows = inventory.audit_count()
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
        with self.store.reading() as inventory:
            return inventory.audit_records()

    # -- internals ------------------------------------------------------------------------------

    def _unlock(self) -> bytes | None:
        """Return the passphrase of this CA's keys, asking its source once (None: not encrypted)."""
        with self.store.reading() as inventory:
            encrypted = inventory.settings().encrypted
        if not encrypted:
            return None
        if self._passphrase is None:
            if self._passphrase_source is None:
                raise PassphraseError("passphrase: the CA key is encrypted and no passphrase source was given")
            self._passphrase = self._passphrase_source()
            if not self._passphrase:
                raise PassphraseError("passphrase: empty passphrase for an encrypted CA key")
        return self._passphrase

    def _issuer(self, inventory: Inventory) -> Issuer:
        return Issuer(inventory, actor=self.actor, clock=self.clock, profiles=self.profiles)

    def _rotation(self) -> Rotation:
        return Rotation(self.store, clock=self.clock, unlock=self._unlock, issuer=self._issuer)

    @staticmethod
    def _windows(settings: CaSettings) -> tuple[MaintenanceWindow, ...]:
        return tuple(parse_window(w, timezone=settings.timezone) for w in settings.maintenance_windows)

    @staticmethod
    def _refuse_duplicate(inventory: Inventory, identity: str) -> None:
        current = inventory.current(identity)
        if current is not None:
            raise Conflict(
                f"identity: {identity!r} already has an active certificate (serial {current.issued.serial}); "
                "use `cert renew` or revoke it first"
            )

    @staticmethod
    def _current(inventory: Inventory, identity: str) -> CertRecord:
        current = inventory.current(identity)
        if current is None:
            raise NotFound(f"identity: no active certificate for {identity!r}; issue one with `cert issue`")
        return current

    @staticmethod
    def _find(inventory: Inventory, target: str) -> CertRecord:
        text = target.strip().lower().replace(":", "")
        if _SERIAL.fullmatch(text):
            found = inventory.by_serial(format(int(text.removeprefix("0x"), 16), "x"))
            if found is not None:
                return found
        found = inventory.latest(target)
        if found is None:
            raise NotFound(f"{target!r}: no certificate with this serial or identity")
        return found

    def _revocation_targets(self, inventory: Inventory, target: str) -> list[CertRecord]:
        found = self._find(inventory, target)
        if found.issued.identity == target:
            targets = inventory.unrevoked(target, valid_at=self.clock())
        else:
            targets = [found] if found.issued.status != "revoked" else []
        if not targets:
            raise Conflict(f"{target!r}: nothing left to revoke (already revoked or expired)")
        return targets


def _certificate_problems(stored: StoredCertificate, generations: dict[int, CaGeneration]) -> list[str]:
    """Return what is wrong with one inventory row: an unreadable certificate, facts that disagree with it."""
    try:
        cert = x509.load_pem_x509_certificate(stored.pem)
    except ValueError:
        return [f"cert {stored.serial}: stored certificate does not parse"]
    problems = []
    if fingerprint(cert) != stored.fingerprint or serial_hex(cert.serial_number) != stored.serial:
        problems.append(f"cert {stored.serial}: fingerprint or serial does not match the certificate")
    gen = generations.get(stored.generation)
    if gen is None:
        return [*problems, f"cert {stored.serial}: unknown CA generation {stored.generation}"]
    try:
        cert.verify_directly_issued_by(gen.certificate)
    except (ValueError, TypeError, InvalidSignature):
        problems.append(f"cert {stored.serial}: not signed by CA generation {gen.generation}")
    return problems
