"""Certificate facts the OPC UA source and simulator both need (pure)."""

from __future__ import annotations

from cryptography import x509


def is_pem(content: bytes) -> bool:
    """Return whether certificate or key bytes are PEM (else DER)."""
    return content.lstrip().startswith(b"-----BEGIN")


def application_uri(certificate: bytes) -> str | None:
    """Return the first URI SAN of a PEM or DER certificate (an OPC UA ApplicationUri), or None."""
    cert = (
        x509.load_pem_x509_certificate(certificate)
        if is_pem(certificate)
        else x509.load_der_x509_certificate(certificate)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
