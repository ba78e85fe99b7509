"""The OPC UA source and the connector against node-opcua, a strict server PlantLine did not write.

The PKI is a line's, made with plantline-pki as `plantline up` makes it: an EC root, an RSA OPC
UA issuing CA under it, and a foreign RSA CA. node-opcua offers Basic256Sha256/SignAndEncrypt
only and trusts the line's OPC UA CA (with the root above it, each with its CRL); the connector
trusts the same CAs with their CRLs. Checked: values of every type flow, each tag at its own
sampling interval; a server certificate from the foreign CA is refused by the connector; and the
server's refusal of a revoked or foreign connector certificate reaches the connector's log as one
line and its metrics as the `refused` state `plantline status` shows.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import Device
from plantline.connectors.samples import Quality
from plantline.connectors.sources import SourceState
from plantline.connectors.sources.opcua import OpcUaSource
from plantline.operator.local import MachineMetrics, scrape
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import free_port
from plantline_testing.node_opcua import NodeOpcUaServer, Variable
from plantline_testing.opcua_pki import LinePki
from plantline_testing.sources import Recorder, until

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SERVER_URI = "urn:plantline:test:node-opcua"
CONNECTOR_URI = "urn:plantline:site1:line1:filler"
VARIABLES = [
    Variable("Line.run", "Boolean", True),
    Variable("Line.temperature", "Double", 21.5, step=0.5),
    Variable("Line.fill", "Int16", -1233),
    Variable("Line.code", "Int32", -2_000_000_000),
    Variable("Line.good", "UInt32", 3_000_000_000),
    Variable("Line.count", "UInt32", 0, step=1),
    Variable("Line.recipe", "String", "recipe-7"),
]
TAGS: list[dict[str, Any]] = [
    {"signal": "state.run", "address": "ns=1;s=Line.run", "datatype": "bool"},
    # Sampled once a second while it changes every 100 ms: a subscription of its own.
    {
        "signal": "process.temperature",
        "address": "ns=1;s=Line.temperature",
        "datatype": "double",
        "sampling_interval_ms": 1000,
    },
    {"signal": "process.fill", "address": "ns=1;s=Line.fill", "datatype": "int16", "scale": 0.1},
    {"signal": "fault.code", "address": "ns=1;s=Line.code", "datatype": "int32"},
    {"signal": "counter.good", "address": "ns=1;s=Line.good", "datatype": "uint32"},
    {"signal": "counter.total", "address": "ns=1;s=Line.count", "datatype": "uint32"},
    {"signal": "process.recipe", "address": "ns=1;s=Line.recipe", "datatype": "string"},
]


def files(directory: Path, authority: Authority, identity: str) -> tuple[Path, Path]:
    """Write `identity`'s certificate chain and key; return their paths."""
    chain, key = directory / f"{identity}.crt", directory / f"{identity}.key"
    chain.write_bytes(authority.export(identity, CertFormat.CHAIN))
    key.write_bytes(authority.export(identity, CertFormat.KEY))
    return chain, key


def connector_trust(pki: LinePki) -> dict[str, str]:
    """The device's opcua options that trust the line's OPC UA CA (and its root) with their CRLs."""
    ca, crl = pki.directory / "opcua-ca.pem", pki.directory / "opcua-crl.pem"
    ca.write_bytes(pki.opcua.trust_bundle())
    crl.write_bytes(pki.crls())
    return {"trusted_ca_file": str(ca), "crl_file": str(crl)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LinePki:
    line = LinePki.create(tmp_path_factory.mktemp("line-pki"))
    server_sans = [f"uri:{SERVER_URI}", "dns:localhost", "ip:127.0.0.1", f"dns:{socket.gethostname()}"]
    for authority, identity, sans in (
        (line.opcua, "plc", server_sans),
        (line.foreign, "foreign-plc", server_sans),
        (line.opcua, "site1-line1-filler-ua", [f"uri:{CONNECTOR_URI}"]),
        (line.opcua, "revoked-filler-ua", [f"uri:{CONNECTOR_URI}"]),
        (line.foreign, "foreign-filler-ua", [f"uri:{CONNECTOR_URI}"]),
    ):
        authority.issue(identity, profile="opcua-application", sans=sans)
    line.opcua.revoke("revoked-filler-ua", reason="key-compromise")
    return line


def _server(directory: Path, pki: LinePki, issuer: Authority, identity: str) -> Iterator[NodeOpcUaServer]:
    server = NodeOpcUaServer(
        directory,
        free_port(),
        certificate=issuer.export(identity, CertFormat.FULLCHAIN),  # node-opcua wants its chain, up to the root
        private_key=issuer.export(identity, CertFormat.KEY),
        application_uri=SERVER_URI,
        variables=VARIABLES,
    )
    # node-opcua trusts the issuing CA itself; the root above it is an issuer, each with its CRL.
    server.trust((pki.opcua.directory / "ca.crt").read_bytes(), pki.opcua.crl_pem())
    server.trust(pki.root.trust_bundle(), pki.root.crl_pem(), issuers=True)
    with server:
        yield server


@pytest.fixture(scope="module")
def line_server(pki: LinePki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeOpcUaServer]:
    """node-opcua with a certificate from the line's OPC UA CA."""
    yield from _server(tmp_path_factory.mktemp("node-opcua"), pki, pki.opcua, "plc")


@pytest.fixture(scope="module")
def foreign_server(pki: LinePki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeOpcUaServer]:
    """node-opcua with a certificate from a CA the line does not trust."""
    yield from _server(tmp_path_factory.mktemp("node-opcua-foreign"), pki, pki.foreign, "foreign-plc")


def device(server: NodeOpcUaServer, pki: LinePki, identity: str, issuer: Authority) -> Device:
    certificate, key = files(pki.directory, issuer, identity)
    opcua = {
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate_file": str(certificate),
        "private_key_file": str(key),
        "application_uri": CONNECTOR_URI,
        "publishing_interval_ms": 50,
        **connector_trust(pki),
    }
    return Device.model_validate(
        {
            "id": "filler",
            "protocol": "opcua",
            "endpoint": server.url,
            "sampling_interval_ms": 100,
            "reconnect": {"initial_delay_s": 0.2, "max_delay_s": 1.0},
            "opcua": opcua,
            "tags": TAGS,
        }
    )


def test_values_of_every_type_flow_each_tag_at_its_own_interval(line_server: NodeOpcUaServer, pki: LinePki) -> None:
    filler = device(line_server, pki, "site1-line1-filler-ua", pki.opcua)

    async def scenario() -> tuple[Recorder, int]:
        async with OpcUaSource(filler) as source, Recorder(source) as recorder:
            await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), 60)
            await until(lambda: recorder.signals() >= {t["signal"] for t in TAGS}, what="every signal")
            started = len(recorder.received)
            await asyncio.sleep(3.0)
            return recorder, started

    recorder, started = asyncio.run(scenario())
    latest = recorder.latest()
    expected = {
        "state.run": True,
        "process.fill": -123.3,
        "fault.code": -2_000_000_000,
        "counter.good": 3_000_000_000,
        "process.recipe": "recipe-7",
    }
    for signal, value in expected.items():
        sample = latest[signal]
        assert (sample.value, type(sample.value), sample.quality) == (value, type(value), Quality.GOOD), signal
    assert repr(latest["process.fill"].value) == "-123.3"
    window = recorder.received[started:]
    values = [r.sample.value for r in window if r.sample.signal == "counter.total"]
    counts = [v for v in values if isinstance(v, int)]
    temperatures = [r for r in window if r.sample.signal == "process.temperature"]
    assert counts == values
    assert counts == sorted(counts)
    assert len(counts) >= 15  # sampled every 100 ms
    assert 1 <= len(temperatures) <= 5  # every 1000 ms, though it changes every 100 ms


def test_a_server_certificate_from_a_foreign_ca_is_refused_by_the_connector(
    foreign_server: NodeOpcUaServer, pki: LinePki, caplog: pytest.LogCaptureFixture
) -> None:
    filler = device(foreign_server, pki, "site1-line1-filler-ua", pki.opcua)

    async def scenario() -> OpcUaSource:
        async with OpcUaSource(filler, backoff=Backoff(0.1, 0.3)) as source, Recorder(source) as recorder:
            await until(lambda: source.counters.connect_failures >= 3, what="three refused attempts")
            assert recorder.received == []
            return source

    with caplog.at_level("ERROR", logger="plantline.connectors"):
        source = asyncio.run(scenario())
    refusal = source.refusal
    assert refusal is not None
    assert (refusal.by, refusal.code) == ("connector", "BadCertificateUntrusted")
    (line,) = [r.getMessage() for r in caplog.records]
    server = f"device filler: refusing the OPC UA server at {foreign_server.url}"
    assert line.startswith(f"{server}: its certificate (subject CN=foreign-plc, serial ")
    # node-opcua sends its chain up to the foreign root.
    assert "its chain ends at 'Foreign CA', which is not in the trust list (BadCertificateUntrusted)" in line


# -- the server refuses the connector: the connector process's log and metrics -----------------------


def _connector_config(directory: Path, filler: Device) -> tuple[Path, int]:
    metrics_port = free_port()
    config = {
        "sparkplug": {"group_id": "site1", "edge_node_id": "line1"},
        # No broker answers: this test is about the PLC side; the connector keeps trying both.
        "brokers": [{"host": "127.0.0.1", "port": free_port(), "insecure_plaintext": True}],
        "outbox": {"directory": str(directory / "outbox")},
        "state_directory": str(directory / "state"),
        "metrics_port": metrics_port,
        "devices": [filler.model_dump(mode="json", exclude_none=True)],
    }
    path = directory / "connector.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, metrics_port


def _wait_refused(metrics_port: int, process: subprocess.Popen[bytes], log: Path) -> MachineMetrics:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        row = MachineMetrics.of(scrape(metrics_port), "filler")
        if row.plc_refused is not None:
            return row
        time.sleep(0.3)
    raise TimeoutError(f"no refusal in the connector's metrics:\n{log.read_text()}")


@pytest.mark.parametrize(("identity", "issuer"), [("revoked-filler-ua", "opcua"), ("foreign-filler-ua", "foreign")])
def test_the_server_refusing_the_connectors_certificate_shows_in_its_log_and_status(
    line_server: NodeOpcUaServer, pki: LinePki, tmp_path: Path, identity: str, issuer: str
) -> None:
    filler = device(line_server, pki, identity, getattr(pki, issuer))
    config, metrics_port = _connector_config(tmp_path, filler)
    log = tmp_path / "connector.log"
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "plantline.connectors.cli", "run", "--config", str(config)]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        row = _wait_refused(metrics_port, process, log)
        time.sleep(2.0)  # a few more attempts: the refusal is still said once
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert (row.plc_connected, row.plc_refused) == (False, ("device", "BadSecurityChecksFailed"))
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    errors = [r["msg"] for r in records if r["level"] == "error"]
    serial = getattr(pki, issuer).certificates(identity=identity)[-1].serial
    assert errors == [
        f"device filler: the OPC UA server at {line_server.url} refused the connector's certificate"
        f" (subject CN={identity}, serial {serial}): it answered OpenSecureChannel with BadSecurityChecksFailed;"
        " check the server's trust list: it must hold the CA that issued this certificate (or the certificate"
        " itself), and a current CRL of each CA of its chain, none revoking it"
    ]
    text = log.read_text()
    assert "Traceback" not in text
    assert "AssertionError" not in text
