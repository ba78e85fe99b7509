"""A readable description of a certificate, for `cert inspect`."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from plantline.pki.errors import InvalidInput
from plantline.pki.keys import spec_of
from plantline.pki.x509build import fingerprint, san_strings


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def describe(pem: bytes, *, source: str) -> dict[str, Any]:
    """Return the facts of the first certificate in `pem` as JSON-ready data."""
    try:
        certificate = x509.load_pem_x509_certificates(pem)[0]
    except (ValueError, IndexError):
        raise InvalidInput(f"{source}: not a PEM certificate") from None
    usage = _extension(certificate, x509.KeyUsage)
    eku = _extension(certificate, x509.ExtendedKeyUsage)
    basic = _extension(certificate, x509.BasicConstraints)
    usages = []
    if usage is not None:
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ):
            if getattr(usage, name):
                usages.append(name)
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "key_type": str(spec_of(certificate.public_key())),  # type: ignore[arg-type]
        "signature_algorithm": certificate.signature_algorithm_oid._name,
        "is_ca": bool(basic and basic.ca),
        "path_length": basic.path_length if basic else None,
        "key_usage": usages,
        "extended_key_usage": [oid._name for oid in eku] if eku is not None else [],
        "sans": san_strings(certificate),
        "sha256_fingerprint": fingerprint(certificate),
    }
