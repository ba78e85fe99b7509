"""The formats certificates leave the CA in: PEM chains, DER, PKCS#12, a Kubernetes TLS Secret."""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from plantline.pki.errors import InvalidInput
from plantline.pki.keys import PrivateKey, private_key_pem


class CertFormat(enum.StrEnum):
    """What `cert export` can write."""

    PEM = "pem"  # the leaf alone
    CHAIN = "chain"  # leaf + intermediates, what a TLS peer sends
    FULLCHAIN = "fullchain"  # leaf + intermediates + root
    DER = "der"  # the leaf in DER (OPC UA trust lists and application stores)
    KEY = "key"  # the private key, PKCS#8 PEM
    PKCS12 = "pkcs12"  # key + leaf + chain, passphrase-protected
    K8S_SECRET = "k8s-secret"  # a kubernetes.io/tls Secret manifest with ca.crt

    @property
    def holds_key(self) -> bool:
        return self in (CertFormat.KEY, CertFormat.PKCS12, CertFormat.K8S_SECRET)


def pem(certificates: Sequence[x509.Certificate]) -> bytes:
    """Return the certificates concatenated as PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def der(certificate: x509.Certificate) -> bytes:
    """Return one certificate as DER."""
    return certificate.public_bytes(serialization.Encoding.DER)


def pkcs12_bundle(
    *, name: str, key: PrivateKey, certificate: x509.Certificate, chain: Sequence[x509.Certificate], passphrase: bytes
) -> bytes:
    """Return a PKCS#12 file holding the key, the leaf and its chain, encrypted with `passphrase`."""
    if not passphrase:
        raise InvalidInput("export passphrase: PKCS#12 files are always encrypted; give a passphrase")
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, certificate, list(chain), serialization.BestAvailableEncryption(passphrase)
    )


_K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_K8S_LABEL_KEY = re.compile(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def check_k8s_names(*, name: str, namespace: str | None, labels: dict[str, str]) -> None:
    """Raise InvalidInput unless the names are valid Kubernetes object, namespace and label names."""
    if len(name) > 253 or not _K8S_SUBDOMAIN.fullmatch(name):
        raise InvalidInput(
            f"secret name: {name!r} is not a valid Kubernetes name (lower-case letters, digits, '-' and '.'); "
            "choose one with --secret-name"
        )
    if namespace is not None and not _K8S_LABEL.fullmatch(namespace):
        raise InvalidInput(f"namespace: {namespace!r} is not a valid Kubernetes namespace (RFC 1123 label)")
    for key, value in labels.items():
        if not _K8S_LABEL_KEY.fullmatch(key) or not _K8S_LABEL_VALUE.fullmatch(value):
            raise InvalidInput(f"labels: {key!r}={value!r} is not a valid Kubernetes label")


def k8s_tls_secret(
    *, name: str, namespace: str | None, chain_pem: bytes, key: PrivateKey, ca_pem: bytes, labels: dict[str, str]
) -> bytes:
    """Return a `kubernetes.io/tls` Secret manifest (YAML) with tls.crt, tls.key and ca.crt."""

    check_k8s_names(name=name, namespace=namespace, labels=labels)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    lines = ["apiVersion: v1", "kind: Secret", "type: kubernetes.io/tls", "metadata:", f"  name: {name}"]
    if namespace:
        lines.append(f"  namespace: {namespace}")
    if labels:
        lines.append("  labels:")
        lines.extend(f'    {key_}: "{value}"' for key_, value in sorted(labels.items()))
    lines += [
        "data:",
        f"  tls.crt: {b64(chain_pem)}",
        f"  tls.key: {b64(private_key_pem(key, None))}",
        f"  ca.crt: {b64(ca_pem)}",
    ]
    return ("\n".join(lines) + "\n").encode()
