"""OpcUaSource over Basic256Sha256 with certificates made by our PKI CLI.

As in pki/tests/test_opcua_security.py: an RSA-2048 CA (`plantline-pki ca init --key-type
rsa-2048`), server and client certificates from the `opcua-application` profile, exported as
OPC UA applications load them. The simulator offers only Basic256Sha256 (Sign and
SignAndEncrypt), trusts only our CA and wants a username and password; the source loads a
DER certificate and a PEM key named `.key`, which asyncua alone would parse as DER, and
verifies the server against its trust list: the server's certificate itself, or our CA with
its CRL. A second CA stands for a foreign one. The refusals of a strict third-party server are
tested against node-opcua in tests/opcua_interop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import Device
from plantline.connectors.samples import Quality
from plantline.connectors.sim.opcua_server import OpcUaMachineServer
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.opcua import OpcUaSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SERVER_URI = "urn:plantline:test:sim-server"
CLIENT_URI = "urn:plantline:test:connector"
CLI = [sys.executable, "-c", "from plantline.pki.cli import main; main()"]
PASSPHRASE = "correct horse battery staple"
USER, PASSWORD = "operator", "filler-line-1 secret"
STEP = 30.0
T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float = STEP) -> T:
    return await asyncio.wait_for(awaitable, seconds)


def pki(*args: str) -> None:
    env = {**os.environ, "PLANTLINE_PKI_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    if proc.returncode != 0:
        pytest.fail(f"plantline-pki {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CA, server and client material, exported by the CLI; a password file (0600)."""
    base = tmp_path_factory.mktemp("opcua-pki")
    ca, foreign, trusted = base / "ca", base / "foreign", base / "trusted"
    trusted.mkdir()
    pki("ca", "init", str(ca), "--name", "OPC UA Test CA", "--key-type", "rsa-2048")
    pki("ca", "init", str(foreign), "--name", "Foreign CA", "--key-type", "rsa-2048")
    for authority, identity, sans in (
        (ca, "sim-server", [f"uri:{SERVER_URI}", "localhost", "127.0.0.1"]),
        (ca, "connector", [f"uri:{CLIENT_URI}"]),
        (foreign, "foreign-server", [f"uri:{SERVER_URI}", "localhost", "127.0.0.1"]),
    ):
        san_args = [arg for san in sans for arg in ("--san", san)]
        pki("cert", "issue", identity, "--ca", str(authority), "--profile", "opcua-application", *san_args)
        der = str(base / f"{identity}.der")
        pki("cert", "export", identity, "--ca", str(authority), "--format", "der", "--out", der)
        key = str(base / f"{identity}.key")  # PKCS#8 PEM, named .key on purpose
        pki(
            "cert",
            "export",
            identity,
            "--ca",
            str(authority),
            "--format",
            "key",
            "--out",
            key,
            "--unsafe-plaintext-key",
        )
    pki("ca", "export", "--ca", str(ca), "--format", "der", "--out", str(trusted / "ca.der"))
    pki("ca", "export", "--ca", str(ca), "--format", "pem", "--out", str(base / "ca.pem"))
    pki("ca", "export", "--ca", str(ca), "--format", "crl", "--out", str(base / "crl.pem"))
    password = base / "password"
    password.write_text(PASSWORD + "\n", encoding="utf-8")
    password.chmod(0o600)
    return {
        "trusted": trusted,
        "server_cert": base / "sim-server.der",
        "server_key": base / "sim-server.key",
        "client_cert": base / "connector.der",
        "client_key": base / "connector.key",
        "foreign_cert": base / "foreign-server.der",
        "foreign_key": base / "foreign-server.key",
        "ca": base / "ca.pem",
        "crl": base / "crl.pem",
        "password": password,
    }


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server(material: dict[str, Path], loop: asyncio.AbstractEventLoop, who: str) -> Iterator[OpcUaMachineServer]:
    server = OpcUaMachineServer(
        _free_port(),
        seed=5,
        update_interval_s=0.05,
        security=True,
        certificate=material[f"{who}_cert"],
        private_key=material[f"{who}_key"],
        trust_dir=material["trusted"],
        users={USER: PASSWORD},
    )
    loop.run_until_complete(within(server.start(), 60.0))
    yield server
    loop.run_until_complete(within(server.stop()))


@pytest.fixture(scope="module")
def secure_sim(material: dict[str, Path], loop: asyncio.AbstractEventLoop) -> Iterator[OpcUaMachineServer]:
    """The simulator with a certificate from our CA."""
    yield from _server(material, loop, "server")


@pytest.fixture(scope="module")
def foreign_sim(material: dict[str, Path], loop: asyncio.AbstractEventLoop) -> Iterator[OpcUaMachineServer]:
    """The simulator with a certificate from a CA the connector does not trust."""
    yield from _server(material, loop, "foreign")


def secure_device(sim: OpcUaMachineServer, material: dict[str, Path], **overrides: Any) -> Device:
    opcua = {
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate_file": str(material["client_cert"]),
        "private_key_file": str(material["client_key"]),
        "server_certificate_file": str(material["server_cert"]),
        "username": USER,
        "password_file": str(material["password"]),
        "publishing_interval_ms": 50,
        **overrides,
    }
    opcua = {key: value for key, value in opcua.items() if value is not None}
    tags = [
        {"signal": "process.temperature", "address": "ns=2;s=Filler.process.temperature", "datatype": "double"},
        {"signal": "counter.total", "address": "ns=2;s=Filler.counter.total", "datatype": "uint32"},
    ]
    return Device.model_validate(
        {
            "id": "filler-1",
            "protocol": "opcua",
            "endpoint": sim.url,
            "sampling_interval_ms": 50,
            "opcua": opcua,
            "tags": tags,
        }
    )


@pytest.mark.parametrize(
    ("mode", "pinned"),
    [("SignAndEncrypt", True), ("Sign", False)],
    ids=["sign-and-encrypt-trusting-the-server-cert", "sign-trusting-the-ca-and-its-crl"],
)
def test_source_connects_and_reads_over_basic256sha256(
    secure_sim: OpcUaMachineServer, material: dict[str, Path], loop: asyncio.AbstractEventLoop, mode: str, pinned: bool
) -> None:
    trust = (
        {"server_certificate_file": str(material["server_cert"])}
        if pinned
        else {"server_certificate_file": None, "trusted_ca_file": str(material["ca"]), "crl_file": str(material["crl"])}
    )
    device = secure_device(secure_sim, material, security_mode=mode, **trust)

    async def scenario() -> list[Any]:
        async with OpcUaSource(device) as source:
            await within(source.wait_for_state(SourceState.CONNECTED))
            samples = []
            async for sample in source.samples():
                samples.append(sample)
                if {s.signal for s in samples} == {"process.temperature", "counter.total"}:
                    break
            assert source.counters.connect_failures == 0
            return samples

    samples = loop.run_until_complete(within(scenario(), 60.0))
    assert all(s.quality is Quality.GOOD for s in samples)
    assert {type(s.value) for s in samples} == {float, int}


def test_a_wrong_password_never_connects(
    secure_sim: OpcUaMachineServer, material: dict[str, Path], loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n", encoding="utf-8")
    device = secure_device(secure_sim, material, password_file=str(wrong))

    async def scenario() -> OpcUaSource:
        async with OpcUaSource(device, backoff=Backoff(initial=0.1, cap=0.2)) as source:
            received = []

            async def drain() -> None:
                async for sample in source.samples():
                    received.append(sample)

            drainer = asyncio.create_task(drain())
            await within(_until(lambda: source.counters.connect_failures >= 2))
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)
            assert received == []
            assert source.state is not SourceState.CONNECTED
            return source

    source = loop.run_until_complete(within(scenario(), 60.0))
    assert source.counters.samples == 0
    refusal = source.refusal
    assert refusal is not None
    assert (refusal.by, refusal.code) == ("device", "BadUserAccessDenied")
    assert refusal.message.endswith(
        "refused the user operator (BadUserAccessDenied); check opcua.username and password_file"
    )


def test_an_unsecured_source_is_refused(
    secure_sim: OpcUaMachineServer, material: dict[str, Path], loop: asyncio.AbstractEventLoop
) -> None:
    device = secure_device(
        secure_sim,
        material,
        security_policy="None",
        security_mode="None",
        certificate_file=None,
        private_key_file=None,
        server_certificate_file=None,
    )
    assert device.opcua.security_policy == "None"

    async def scenario() -> OpcUaSource:
        async with OpcUaSource(device, backoff=Backoff(initial=0.1, cap=0.2)) as source:
            await within(_until(lambda: source.counters.connect_failures >= 2))
            assert source.state is not SourceState.CONNECTED
            return source

    source = loop.run_until_complete(within(scenario(), 60.0))
    assert source.counters.samples == 0
    refusal = source.refusal
    assert refusal is not None
    assert (refusal.by, refusal.code) == ("connector", "BadSecurityPolicyRejected")
    assert (
        "offers no None/None endpoint (it offers Basic256Sha256/Sign, Basic256Sha256/SignAndEncrypt)" in refusal.message
    )


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def _refusals(device: Device, loop: asyncio.AbstractEventLoop) -> OpcUaSource:
    """Run a source until it failed twice; return it (closed)."""

    async def scenario() -> OpcUaSource:
        async with OpcUaSource(device, backoff=Backoff(initial=0.1, cap=0.2)) as source:
            await within(_until(lambda: source.counters.connect_failures >= 2))
            assert source.state is not SourceState.CONNECTED
            return source

    return loop.run_until_complete(within(scenario(), 60.0))


def test_a_server_certificate_from_a_foreign_ca_is_refused(
    foreign_sim: OpcUaMachineServer,
    material: dict[str, Path],
    loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trust = {"server_certificate_file": None, "trusted_ca_file": str(material["ca"]), "crl_file": str(material["crl"])}
    device = secure_device(foreign_sim, material, **trust)
    with caplog.at_level(logging.ERROR, logger="plantline.connectors"):
        source = _refusals(device, loop)
    refusal = source.refusal
    assert refusal is not None
    assert (refusal.by, refusal.code) == ("connector", "BadCertificateUntrusted")
    assert f"refusing the OPC UA server at {foreign_sim.url}" in refusal.message
    assert "issued by 'Foreign CA', which is not in the trust list" in refusal.message
    assert source.counters.samples == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"device filler-1: {refusal.message}"]  # once, not at every attempt


def test_an_unknown_server_is_accepted_only_by_an_explicit_opt_in(
    foreign_sim: OpcUaMachineServer,
    material: dict[str, Path],
    loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = secure_device(foreign_sim, material, server_certificate_file=None, accept_unknown_server=True)

    async def scenario() -> OpcUaSource:
        async with OpcUaSource(device) as source:
            await within(source.wait_for_state(SourceState.CONNECTED))
            async for _ in source.samples():
                break
            return source

    with caplog.at_level(logging.WARNING, logger="plantline.connectors"):
        source = loop.run_until_complete(within(scenario(), 60.0))
    assert source.refusal is None
    warnings = [r for r in caplog.records if "accept_unknown_server" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert f"accepting the OPC UA server at {foreign_sim.url} although its certificate" in warnings[0].getMessage()
    assert "(BadCertificateUntrusted)" in warnings[0].getMessage()
