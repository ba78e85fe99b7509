"""Key algorithms, key generation, and private-key (de)serialisation with encryption at rest."""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plantline.pki.errors import InvalidInput, PassphraseError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class KeySpec(enum.StrEnum):
    """A key algorithm and size the CA can create or accept."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")

    @classmethod
    def parse(cls, text: str, *, field: str) -> KeySpec:
        """Return the spec named by `text`, or raise InvalidInput naming `field`."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(spec.value for spec in cls)
            raise InvalidInput(f"{field}: unknown key type {text!r}; expected one of {choices}") from None


_CURVES: dict[KeySpec, ec.EllipticCurve] = {KeySpec.EC_P256: ec.SECP256R1(), KeySpec.EC_P384: ec.SECP384R1()}
_RSA_BITS: dict[KeySpec, int] = {KeySpec.RSA_2048: 2048, KeySpec.RSA_3072: 3072, KeySpec.RSA_4096: 4096}


def generate_key(spec: KeySpec) -> PrivateKey:
    """Return a new private key of the given spec."""
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec])
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[spec])


def spec_of(key: PrivateKey | PublicKey) -> KeySpec:
    """Return the KeySpec describing an existing key, or raise InvalidInput for other algorithms."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for spec, curve in _CURVES.items():
            if key.curve.name == curve.name:
                return spec
        raise InvalidInput(f"key: unsupported elliptic curve {key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        for spec, bits in _RSA_BITS.items():
            if key.key_size == bits:
                return spec
        raise InvalidInput(f"key: unsupported RSA key size {key.key_size}")
    raise InvalidInput(f"key: unsupported key type {type(key).__name__}")  # pragma: no cover


def signature_hash(spec: KeySpec) -> hashes.SHA256 | hashes.SHA384:
    """Return the digest a CA with this key signs with (SHA-384 for P-384, else SHA-256)."""
    return hashes.SHA384() if spec is KeySpec.EC_P384 else hashes.SHA256()


def private_key_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """Return the key as PKCS#8 PEM, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_private_key(pem: bytes, passphrase: bytes | None, *, what: str) -> PrivateKey:
    """Return the key decoded from PEM; a wrong or missing passphrase raises PassphraseError."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError as exc:
        # cryptography raises TypeError when a passphrase is missing for an encrypted key,
        # or given for a plaintext one.
        if passphrase is None:
            raise PassphraseError(f"{what}: the key is encrypted and no passphrase was given") from exc
        raise PassphraseError(f"{what}: the key is not encrypted but a passphrase was given") from exc
    except ValueError as exc:
        raise PassphraseError(f"{what}: wrong passphrase, or the key is damaged") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidInput(f"{what}: unsupported key type {type(key).__name__}")
    return key


def public_key_der(key: PublicKey) -> bytes:
    """Return the SubjectPublicKeyInfo DER of a public key (used to compare keys)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
