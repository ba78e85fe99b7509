"""The files a CA directory publishes for other programs, derived from its records."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plantline.pki import exports
from plantline.pki.store import CaStore, Inventory, Published, kill_point
from plantline.pki.x509build import fingerprint


def trust_bundle(inventory: Inventory) -> bytes:
    """Return every CA certificate peers should trust now: each generation not retired and its parents."""
    seen: dict[str, x509.Certificate] = {}
    for gen in inventory.generations():
        if gen.state != "retired":
            for cert in (gen.certificate, *gen.parents):
                seen.setdefault(fingerprint(cert), cert)
    return exports.pem(list(seen.values()))


def crl_pem(inventory: Inventory) -> bytes:
    """Return the current CRL of every generation not retired, concatenated."""
    return b"".join(i.pem for i in inventory.crls())


def active_crl_der(inventory: Inventory) -> bytes:
    """Return the active generation's CRL in DER: what the CRL Distribution Point of its leaves serves."""
    active = inventory.active_generation().generation
    pem = next((i.pem for i in inventory.crls() if i.generation == active), b"")
    return x509.load_pem_x509_crl(pem).public_bytes(Encoding.DER) if pem else b""


def published(inventory: Inventory) -> Published:
    """Return the derived files as the records say they should be."""
    active = inventory.active_generation()
    return Published(
        {
            "ca.crt": exports.pem([active.certificate]),
            "ca-chain.pem": exports.pem([active.certificate, *active.parents]),
            "trust-bundle.pem": trust_bundle(inventory),
            "crl.pem": crl_pem(inventory),
            "crl.der": active_crl_der(inventory),
        }
    )


def publish(store: CaStore) -> None:
    """Publish the derived files and the audit mirror from the committed state."""
    with store.lock(), store.reading() as inventory:
        store.publish(published(inventory))
        kill_point("before-audit-sync")
        store.sync_audit(inventory)
