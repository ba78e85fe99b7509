"""CA rotation, the three phases of `ca rotate`: start a new generation, re-issue the leaves, finalize.

Each phase is one transaction under the directory lock, so a phase killed half-way runs again whole.
An intermediate CA rotates with its parent: the parent signs the new generation at the start and
revokes the old one at the finalize, both before this CA's own transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509

from plantline.pki.errors import Conflict, InvalidInput, PolicyViolation
from plantline.pki.issuer import Issuer
from plantline.pki.keys import KeySpec, PrivateKey, generate_key
from plantline.pki.names import ca_identity
from plantline.pki.publishing import publish
from plantline.pki.records import INTERMEDIATE_PROFILE, CaGeneration, CaSettings, IssuedCertificate, serial_hex
from plantline.pki.store import CaStore, Inventory
from plantline.pki.x509build import Signer, build_ca_certificate, fingerprint

Chain = tuple[x509.Certificate, ...]


class ParentCa(Protocol):
    """What the rotation of an intermediate CA needs of its parent."""

    def sign_subordinate(
        self,
        *,
        name: str,
        organization: str | None,
        key: Any,
        path_length: int | None,
        validity_days: int,
        record_as: str | None = None,
    ) -> tuple[x509.Certificate, Chain]: ...

    def find(self, target: str) -> IssuedCertificate: ...

    def revoke(self, target: str, *, reason: str = "unspecified") -> list[IssuedCertificate]: ...


def _require_rotation(inventory: Inventory, step: str) -> None:
    if inventory.settings().rotation not in ("started", "reissued"):
        raise PolicyViolation(f"rotation: no rotation in progress; start one with `ca rotate` before --{step}")


@dataclass(frozen=True, slots=True)
class Rotation:
    """The rotation of one CA directory; `unlock` gives its passphrase, `issuer` works in a transaction."""

    store: CaStore
    clock: Callable[[], datetime]
    unlock: Callable[[], bytes | None]
    issuer: Callable[[Inventory], Issuer]

    def start(self, *, key_type: str | None, parent: ParentCa | None, validity_days: int | None) -> CaGeneration:
        """Phase 1: make a new CA generation that signs from now on; trust both old and new."""
        with self.store.reading() as inventory:
            settings = inventory.settings()
            active = inventory.active_generation()
        if settings.rotation != "idle":
            raise PolicyViolation(
                f"rotation: already in phase {settings.rotation}; continue with --reissue or --finalize"
            )
        spec = KeySpec.parse(key_type, field="key_type") if key_type else active.key_type
        if active.parents and parent is None:
            raise InvalidInput("parent: this CA is an intermediate; give --parent DIR to sign its new generation")
        if validity_days is not None and validity_days < 1:
            raise InvalidInput("validity_days: expected at least 1")
        old_days = (active.certificate.not_valid_after_utc - active.certificate.not_valid_before_utc).days
        days = validity_days or max(old_days, 1)
        passphrase = self.unlock()
        with self.store.reading() as inventory:  # a wrong passphrase must fail before the parent signs
            self.issuer(inventory).signer(active, passphrase)
        key = generate_key(spec)
        certificate, parents = self._new_certificate(settings, active, key, parent, days)
        with self.store.lock(), self.store.transaction() as inventory:
            created = self._install(self.issuer(inventory), active, passphrase, Signer(certificate, key), parents)
        publish(self.store)
        return created

    def _new_certificate(
        self, settings: CaSettings, active: CaGeneration, key: PrivateKey, parent: ParentCa | None, days: int
    ) -> tuple[x509.Certificate, Chain]:
        """Return the certificate of the next generation, signed by the parent or, for a root, by `key`."""
        name = f"{settings.name} G{active.generation + 1}"
        organization = settings.organization or None
        constraints = active.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if parent is not None:
            return parent.sign_subordinate(
                name=name,
                organization=organization,
                key=key,
                path_length=constraints.path_length,
                validity_days=days,
                record_as=ca_identity(settings.name),
            )
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
        return certificate, ()

    @staticmethod
    def _install(
        issuer: Issuer, active: CaGeneration, passphrase: bytes | None, new: Signer, parents: Chain
    ) -> CaGeneration:
        """Make `new` the active generation and `active` the previous one; return the new generation."""
        inventory = issuer.inventory
        now = issuer.clock()
        current = inventory.active_generation()
        if inventory.settings().rotation != "idle" or current.generation != active.generation:
            raise Conflict("rotation: the CA changed while the new generation was made; run again")
        # The new key is stored under the same passphrase: prove it opens the current key first.
        issuer.signer(current, passphrase)
        generation = current.generation + 1
        inventory.set_generation_state(current.generation, "previous")
        issuer.add_generation(generation, new.certificate, new.key, parents, now, key_passphrase=passphrase)
        issuer.write_crl(generation, new, now)
        inventory.set_rotation("started")
        issuer.audit(
            now, "ca.rotate.start", {"generation": generation, "sha256_fingerprint": fingerprint(new.certificate)}
        )
        return inventory.generation(generation)

    def reissue(self, *, new_key: bool) -> list[IssuedCertificate]:
        """Phase 2: re-issue every active leaf of the previous generation under the new one."""
        with self.store.reading() as inventory:
            _require_rotation(inventory, "reissue")
        passphrase = self.unlock()
        with self.store.lock(), self.store.transaction() as inventory:
            _require_rotation(inventory, "reissue")
            issuer = self.issuer(inventory)
            issuer.signer(inventory.active_generation(), passphrase)  # a wrong passphrase changes nothing
            active = inventory.active_generation().generation
            leaves = inventory.active_outside(active, except_profile=INTERMEDIATE_PROFILE)
            # A key the CA never held (issued from a CSR) stays with its owner: re-certify it.
            issued = [
                issuer.reissue(
                    passphrase,
                    leaf,
                    new_key=new_key and leaf.private_key is not None,
                    csr=None,
                    validity_days=None,
                    action="ca.rotate.reissue",
                )
                for leaf in leaves
            ]
            inventory.set_rotation("reissued")
        publish(self.store)
        return issued

    def finalize(self, *, force: bool, parent: ParentCa | None) -> CaGeneration:
        """Phase 3: stop trusting the previous generation; its leaves are refused from now on."""
        with self.store.reading() as inventory:
            _require_rotation(inventory, "finalize")
            previous = next(g for g in inventory.generations() if g.state == "previous")
            left = inventory.active_identities(
                previous.generation, valid_at=self.clock(), except_profile=INTERMEDIATE_PROFILE
            )
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
            old_serial = serial_hex(previous.certificate.serial_number)
            if parent.find(old_serial).status != "revoked":  # a finalize interrupted after this step runs again
                parent.revoke(old_serial, reason="superseded")
        with self.store.lock(), self.store.transaction() as inventory:
            now = self.clock()
            _require_rotation(inventory, "finalize")
            inventory.retire_previous()
            inventory.set_rotation("idle")
            self.issuer(inventory).audit(
                now, "ca.rotate.finalize", {"retired_generation": previous.generation, "forced_over": left}
            )
            retired = inventory.generation(previous.generation)
        publish(self.store)
        return retired
