"""Certificates the operator tests put into PlantLines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID


def self_signed_pem(name: str = "plc") -> str:
    """Return a PEM self-signed certificate, as a PLC makes for its own OPC UA server."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
    builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now)
    return (
        builder.not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()).public_bytes(Encoding.PEM).decode()
    )
