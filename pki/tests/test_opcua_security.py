"""OPC UA application certificates from the CLI work with a real asyncua server and client.

The CA, the server and client certificates and their keys are all made by `plantline-pki` (as a
subprocess), exported in the formats OPC UA applications load (DER certificates, PKCS#8 keys,
the CA and its CRL in DER for the trust list), and then used by an asyncua server and client
talking Basic256Sha256 with SignAndEncrypt over loopback. The server accepts only clients whose
certificate chains to our CA; a client from another RSA CA, with the same ApplicationUri, is
refused with BadCertificateUntrusted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.uacrypto import CertProperties
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from conftest import PkiCli, run_cli
from plantline_testing import free_port

pytestmark = pytest.mark.peer

SERVER_URI = "urn:plantline:test:server"
CLIENT_URI = "urn:plantline:test:client"
NAMESPACE = "urn:plantline:test:namespace"
# Every await gets this long; the whole exchange takes well under a second on loopback.
STEP_TIMEOUT = 15.0

T = TypeVar("T")
Validator = Callable[[x509.Certificate, ua.ApplicationDescription], Awaitable[None]]


async def within(awaitable: Awaitable[T], seconds: float = STEP_TIMEOUT) -> T:
    """Await with a deadline, so a hung handshake fails the test quickly instead of stalling."""
    return await asyncio.wait_for(awaitable, timeout=seconds)


@dataclass(frozen=True)
class Application:
    """An exported application instance certificate and its plaintext key."""

    certificate: Path  # DER
    key: Path  # PKCS#8 PEM


@dataclass(frozen=True)
class Material:
    """Everything the CLI produced for the OPC UA tests."""

    ca_dir: Path
    ca_der: Path
    trust_dir: Path  # holds only our CA certificate (DER)
    crl_dir: Path  # holds our CA's CRL (DER)
    server: Application
    client: Application
    rogue_client: Application  # same ApplicationUri, issued by another RSA CA


def _issue_and_export(ca_dir: Path, identity: str, sans: list[str], out: Path) -> Application:
    ca = ["--ca", str(ca_dir)]
    san_args = [arg for san in sans for arg in ("--san", san)]
    run_cli("cert", "issue", identity, *ca, "--profile", "opcua-application", *san_args)
    certificate, key = out / f"{identity}.der", out / f"{identity}.key"
    run_cli("cert", "export", identity, *ca, "--format", "der", "--out", str(certificate))
    run_cli(
        "cert",
        "export",
        identity,
        *ca,
        "--format",
        "key",
        "--out",
        str(key),
        "--unsafe-plaintext-key",
    )
    return Application(certificate, key)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    """An RSA-2048 CA with a server and a client certificate, and a rogue CA with its own client."""
    base = tmp_path_factory.mktemp("opcua")
    ca_dir, rogue_dir = base / "opcua-ca", base / "rogue-ca"
    trust_dir, crl_dir, out = base / "trusted", base / "crl", base / "out"
    for directory in (trust_dir, crl_dir, out):
        directory.mkdir()
    run_cli("ca", "init", str(ca_dir), "--name", "OPC UA CA", "--key-type", "rsa-2048")
    run_cli("ca", "init", str(rogue_dir), "--name", "Rogue OPC UA CA", "--key-type", "rsa-2048")
    server = _issue_and_export(
        ca_dir,
        "test-server",
        [f"uri:{SERVER_URI}", "localhost", "127.0.0.1"],
        out,
    )
    client = _issue_and_export(ca_dir, "test-client", [f"uri:{CLIENT_URI}"], out)
    rogue_out = out / "rogue"
    rogue_out.mkdir()
    rogue_client = _issue_and_export(rogue_dir, "test-client", [f"uri:{CLIENT_URI}"], rogue_out)
    ca_der = trust_dir / "opcua-ca.der"
    run_cli("ca", "export", "--ca", str(ca_dir), "--format", "der", "--out", str(ca_der))
    crl = crl_dir / "opcua-ca.crl.der"
    run_cli("ca", "export", "--ca", str(ca_dir), "--format", "crl-der", "--out", str(crl))
    return Material(ca_dir, ca_der, trust_dir, crl_dir, server, client, rogue_client)


# -- what the exported certificates carry ---------------------------------------------------------


def _load_der(path: Path) -> x509.Certificate:
    return x509.load_der_x509_certificate(path.read_bytes())


@pytest.mark.parametrize(
    ("role", "uri", "dns", "ips"),
    [
        ("server", SERVER_URI, ["localhost"], ["127.0.0.1"]),
        ("client", CLIENT_URI, [], []),
    ],
)
def test_exported_certificates_carry_what_opc_ua_requires(
    material: Material, role: str, uri: str, dns: list[str], ips: list[str]
) -> None:
    app: Application = getattr(material, role)
    certificate = _load_der(app.certificate)
    ca = _load_der(material.ca_der)

    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert san.get_values_for_type(x509.DNSName) == dns
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ips

    usage_ext = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    usage = usage_ext.value
    assert usage_ext.critical
    assert usage.digital_signature
    assert usage.content_commitment  # nonRepudiation
    assert usage.key_encipherment
    assert usage.data_encipherment
    assert not usage.key_cert_sign
    assert not usage.crl_sign

    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku

    basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False

    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert certificate.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256

    # Issued by our RSA CA, and the exported key is the certificate's key.
    assert certificate.issuer == ca.subject
    certificate.verify_directly_issued_by(ca)
    ca_public = ca.public_key()
    assert isinstance(ca_public, rsa.RSAPublicKey)
    assert ca_public.key_size == 2048
    key = serialization.load_pem_private_key(app.key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == public.public_bytes(
        serialization.Encoding.DER, spki
    )


def test_opcua_application_from_an_ec_ca_is_refused(pki: PkiCli, root_ca: Path) -> None:
    result = pki(
        "cert",
        "issue",
        "ec-opcua",
        "--ca",
        str(root_ca),
        "--profile",
        "opcua-application",
        "--san",
        f"uri:{SERVER_URI}",
        check=False,
    )
    assert result.returncode == 9, result.stderr
    assert "PKI_POLICY" in result.stderr
    assert "opcua-application" in result.stderr
    assert "needs an issuing CA with a rsa-2048, rsa-3072, rsa-4096 key" in result.stderr
    assert "this CA has ec-p256" in result.stderr
    listed = pki("cert", "list", "--ca", str(root_ca), "--format", "json")
    assert listed.stdout.strip() == "[]"  # nothing was issued


# -- a real asyncua server and client -------------------------------------------------------------


@dataclass
class RunningServer:
    server: Server
    url: str
    setpoint: ua.NodeId
    seen_client_certificates: list[x509.Certificate]


async def _trust_store(material: Material) -> TrustStore:
    store = TrustStore([material.trust_dir], [material.crl_dir])
    await within(store.load())
    return store


@asynccontextmanager
async def opcua_server(material: Material) -> AsyncIterator[RunningServer]:
    """Run an asyncua server offering only Basic256Sha256 SignAndEncrypt, trusting only our CA."""
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/"
    server = Server()
    await within(server.init())
    server.set_endpoint(url)
    server.set_server_name("PlantLine test server")
    await within(server.set_application_uri(SERVER_URI))
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await within(server.load_certificate(str(material.server.certificate), format="der"))
    await within(server.load_private_key(str(material.server.key), format="pem"))

    checker = CertificateValidator(
        CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT,
        await _trust_store(material),
    )
    seen: list[x509.Certificate] = []

    async def validate(certificate: x509.Certificate, app: ua.ApplicationDescription) -> None:
        seen.append(certificate)
        await checker.validate(certificate, app)

    server.set_certificate_validator(validate)

    index = await within(server.register_namespace(NAMESPACE))
    line = await within(server.nodes.objects.add_object(index, "Line1"))
    setpoint = await within(line.add_variable(index, "Setpoint", ua.Variant(1.5, ua.VariantType.Double)))
    await within(setpoint.set_writable())
    await within(server.start())
    try:
        yield RunningServer(server, url, setpoint.nodeid, seen)
    finally:
        await within(server.stop())


async def _secure_client(url: str, app: Application, server_certificate: Path, validator: Validator | None) -> Client:
    client = Client(url, timeout=STEP_TIMEOUT, watchdog_intervall=10.0)
    client.application_uri = CLIENT_URI
    client.name = "PlantLine test client"
    await within(
        client.set_security(
            SecurityPolicyBasic256Sha256,
            str(app.certificate),
            CertProperties(str(app.key), extension="pem"),
            server_certificate=str(server_certificate),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
    )
    client.certificate_validator = validator
    return client


@asynccontextmanager
async def connected(client: Client) -> AsyncIterator[Client]:
    await within(client.connect())
    try:
        yield client
    finally:
        await within(client.disconnect())


async def _exchange(material: Material) -> dict[str, Any]:
    async with opcua_server(material) as running:
        # The client checks the server's certificate against the same trust list.
        server_check = CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER,
            await _trust_store(material),
        )
        client = await _secure_client(running.url, material.client, material.server.certificate, server_check.validate)
        async with connected(client):
            endpoints = await within(client.get_endpoints())
            node = client.get_node(running.setpoint)
            before = await within(node.read_value())
            await within(node.write_value(ua.Variant(42.25, ua.VariantType.Double)))
            after_client = await within(node.read_value())
            policy = client.security_policy
        after_server = await within(running.server.get_node(running.setpoint).read_value())
        return {
            "endpoints": [(e.SecurityPolicyUri, e.SecurityMode) for e in endpoints],
            "policy_uri": policy.URI,
            "mode": policy.Mode,
            "before": before,
            "after_client": after_client,
            "after_server": after_server,
            "seen": list(running.seen_client_certificates),
        }


def test_basic256sha256_sign_and_encrypt_with_cli_certificates(material: Material) -> None:
    result = asyncio.run(_exchange(material))

    # The server offers nothing but Basic256Sha256 with SignAndEncrypt, and the client used it.
    assert result["endpoints"] == [(SecurityPolicyBasic256Sha256.URI, ua.MessageSecurityMode.SignAndEncrypt)]
    assert result["policy_uri"] == SecurityPolicyBasic256Sha256.URI
    assert result["mode"] == ua.MessageSecurityMode.SignAndEncrypt
    # Read, write, and the server sees the written value.
    assert result["before"] == 1.5
    assert result["after_client"] == 42.25
    assert result["after_server"] == 42.25
    # The server's validator checked exactly the certificate the CLI exported for our client.
    der = serialization.Encoding.DER
    assert [c.public_bytes(der) for c in result["seen"]] == [material.client.certificate.read_bytes()]


async def _rogue_attempt(material: Material) -> dict[str, Any]:
    async with opcua_server(material) as running:
        rogue = await _secure_client(running.url, material.rogue_client, material.server.certificate, None)
        error: BaseException | None = None
        try:
            await within(rogue.connect())
        except UaStatusCodeError as exc:
            error = exc
        else:
            await within(rogue.disconnect())
        value = await within(running.server.get_node(running.setpoint).read_value())
        return {"error": error, "value": value, "seen": list(running.seen_client_certificates)}


def test_server_rejects_a_client_from_an_untrusted_ca(material: Material, caplog: pytest.LogCaptureFixture) -> None:
    rogue_certificate = _load_der(material.rogue_client.certificate)
    trusted_client = _load_der(material.client.certificate)
    # The rogue certificate is a proper OPC UA certificate with the same URI: only trust differs.
    assert rogue_certificate.subject == trusted_client.subject
    assert rogue_certificate.issuer != trusted_client.issuer
    rogue_san = rogue_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert rogue_san.value.get_values_for_type(x509.UniformResourceIdentifier) == [CLIENT_URI]

    with caplog.at_level(logging.CRITICAL, logger="asyncuagds.validate"):
        result = asyncio.run(_rogue_attempt(material))

    error = result["error"]
    assert error is not None, "the server accepted a client certificate from an untrusted CA"
    assert isinstance(error, UaStatusCodeError)
    assert error.code == StatusCodes.BadCertificateUntrusted, error
    assert [c.serial_number for c in result["seen"]] == [rogue_certificate.serial_number]
    assert result["value"] == 1.5  # the rogue never got to write
