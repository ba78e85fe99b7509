"""The CA at work inside one write transaction: it signs certificates and CRLs, then records them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plantline.pki import exports
from plantline.pki.keys import KeySpec, PrivateKey, PublicKey, generate_key, load_private_key, private_key_pem, spec_of
from plantline.pki.names import San, parse_sans
from plantline.pki.profiles import Profile, select
from plantline.pki.records import CaGeneration, CertRecord, CrlInfo, IssuedCertificate, serial_hex
from plantline.pki.store import Inventory
from plantline.pki.x509build import Signer, build_crl, build_leaf_certificate, san_strings


@dataclass(frozen=True, slots=True)
class Issuer:
    """What one write transaction signs and records, in the name of `actor`.

    Every change goes through `inventory`, so it commits or rolls back with the caller's transaction.
    """

    inventory: Inventory
    actor: str
    clock: Callable[[], datetime]
    profiles: Callable[[], dict[str, Profile]]

    def signer(self, gen: CaGeneration, passphrase: bytes | None) -> Signer:
        """Return the generation's certificate with its key, or raise PassphraseError."""
        key = load_private_key(
            self.inventory.ca_key(gen.generation), passphrase, what=f"CA key (generation {gen.generation})"
        )
        return Signer(gen.certificate, key)

    def add_generation(
        self,
        generation: int,
        certificate: x509.Certificate,
        key: PrivateKey,
        parents: Sequence[x509.Certificate],
        now: datetime,
        key_passphrase: bytes | None,
    ) -> None:
        """Record a new active CA generation, its key encrypted under `key_passphrase` (None: in the clear)."""
        self.inventory.add_generation(
            generation=generation,
            state="active",
            certificate=certificate,
            private_key=private_key_pem(key, key_passphrase),
            parents_pem=exports.pem(parents),
            created_at=now,
        )

    def new_serial(self) -> int:
        """Return a random serial number no certificate of the inventory has."""
        while True:
            serial = x509.random_serial_number()
            if not self.inventory.serial_taken(serial_hex(serial)):
                return serial

    def issue(
        self,
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
        """Sign a leaf under the active generation, record it and audit `action`.

        Without `public_key` a key of `key_type` is made here and kept, encrypted under `passphrase`.
        """
        now = self.clock()
        active = self.inventory.active_generation()
        signer = self.signer(active, passphrase)
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
            serial=self.new_serial(),
            now=now,
            validity=timedelta(days=validity_days) if validity_days else None,
            crl_url=self.inventory.settings().crl_url or None,
        )
        issued = self.inventory.add_certificate(
            certificate,
            identity=identity,
            profile=profile.name,
            generation=active.generation,
            private_key=private_key,
            issued_at=now,
            replaces=replaces,
        ).issued
        self.audit(
            now,
            action,
            {"identity": identity, "serial": issued.serial, "profile": profile.name, "replaces": replaces},
        )
        return issued

    def reissue(
        self,
        passphrase: bytes | None,
        current: CertRecord,
        *,
        new_key: bool,
        csr: x509.CertificateSigningRequest | None,
        validity_days: int | None,
        action: str,
    ) -> IssuedCertificate:
        """Supersede `current` with a certificate of the same identity, profile and SANs.

        The key is kept unless `new_key` (a new key made here) or a CSR (the requester's key).
        """
        profile = select(self.profiles(), current.issued.profile)
        old = current.certificate()
        sans = parse_sans(san_strings(old))
        if new_key:
            public_key: PublicKey | None = None
            private_key = None
        elif csr is not None:
            public_key = csr.public_key()  # type: ignore[assignment]
            private_key = None
        else:
            public_key = old.public_key()  # type: ignore[assignment]
            private_key = current.private_key
        spec = KeySpec(current.issued.key_type) if public_key is None else spec_of(public_key)
        profile.check_request(key=spec, issuer_key=self.inventory.active_generation().key_type, sans=sans)
        self.inventory.supersede(current.issued.serial)
        return self.issue(
            passphrase,
            identity=current.issued.identity,
            profile=profile,
            sans=sans,
            key_type=spec,
            public_key=public_key,
            validity_days=validity_days,
            replaces=current.issued.serial,
            action=action,
            private_key=private_key,
        )

    def write_crl(self, generation: int, signer: Signer, now: datetime) -> CrlInfo:
        """Sign the generation's next CRL, valid for the CA's `crl_days`, and record it."""
        entries = self.inventory.revocations(generation)
        last = self.inventory.crl_number(generation)
        number = last + 1 if last is not None else 1
        next_update = timedelta(days=self.inventory.settings().crl_days)
        crl = build_crl(issuer=signer, revoked=entries, number=number, now=now, next_update=next_update)
        info = CrlInfo(
            generation, number, now, now + next_update, len(entries), crl.public_bytes(serialization.Encoding.PEM)
        )
        self.inventory.put_crl(info)
        return info

    def audit(self, now: datetime, action: str, detail: dict[str, Any]) -> None:
        self.inventory.add_audit(at=now, actor=self.actor, action=action, detail=detail)
