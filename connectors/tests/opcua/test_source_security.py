"""OpcUaSource over Basic256Sha256 with certificates made by our PKI CLI.

As in pki/tests/test_opcua_security.py: an RSA-2048 CA (`plantline-pki ca init --key-type
rsa-2048`), server and client certificates from the `opcua-application` profile, exported as
OPC UA applications load them. The simulator offers only Basic256Sha256 (Sign and
SignAndEncrypt), trusts only our CA and wants a username and password; the source loads a
DER certificate and a PEM key named `.key`, which asyncua alone would parse as DER.
"""

from __future__ import annotations

import asyncio
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
    ca, trusted = base / "ca", base / "trusted"
    trusted.mkdir()
    pki("ca", "init", str(ca), "--name", "OPC UA Test CA", "--key-type", "rsa-2048")
    for identity, sans in (
        ("sim-server", [f"uri:{SERVER_URI}", "localhost", "127.0.0.1"]),
        ("connector", [f"uri:{CLIENT_URI}"]),
    ):
        san_args = [arg for san in sans for arg in ("--san", san)]
        pki("cert", "issue", identity, "--ca", str(ca), "--profile", "opcua-application", *san_args)
        pki("cert", "export", identity, "--ca", str(ca), "--format", "der", "--out", str(base / f"{identity}.der"))
        key = str(base / f"{identity}.key")  # PKCS#8 PEM, named .key on purpose
        pki("cert", "export", identity, "--ca", str(ca), "--format", "key", "--out", key, "--unsafe-plaintext-key")
    pki("ca", "export", "--ca", str(ca), "--format", "der", "--out", str(trusted / "ca.der"))
    password = base / "password"
    password.write_text(PASSWORD + "\n", encoding="utf-8")
    password.chmod(0o600)
    return {
        "trusted": trusted,
        "server_cert": base / "sim-server.der",
        "server_key": base / "sim-server.key",
        "client_cert": base / "connector.der",
        "client_key": base / "connector.key",
        "password": password,
    }


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def secure_sim(material: dict[str, Path], loop: asyncio.AbstractEventLoop) -> Iterator[OpcUaMachineServer]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = OpcUaMachineServer(
        port,
        seed=5,
        update_interval_s=0.05,
        security=True,
        certificate=material["server_cert"],
        private_key=material["server_key"],
        trust_dir=material["trusted"],
        users={USER: PASSWORD},
    )
    loop.run_until_complete(within(server.start(), 60.0))
    yield server
    loop.run_until_complete(within(server.stop()))


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
    ids=["sign-and-encrypt-pinned-server-cert", "sign-server-cert-from-endpoints"],
)
def test_source_connects_and_reads_over_basic256sha256(
    secure_sim: OpcUaMachineServer, material: dict[str, Path], loop: asyncio.AbstractEventLoop, mode: str, pinned: bool
) -> None:
    pinned_certificate = str(material["server_cert"]) if pinned else None
    device = secure_device(secure_sim, material, security_mode=mode, server_certificate_file=pinned_certificate)

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


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
