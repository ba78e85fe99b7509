"""A whole line on loopback: a test PKI, a real mosquitto (mTLS), the OPC UA simulator, a connector."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import free_port
from plantline_testing.hivemq import HiveMQ
from plantline_testing.mosquitto import Broker
from plantline_testing.sparkplug_reader import SparkplugReader

UPDATE_INTERVAL = 0.05  # the simulator steps 20 times a second
SIGNALS = ("process.temperature", "process.pressure", "process.fill_level", "counter.total")


def _datatype(signal: str) -> str:
    return "uint32" if signal.startswith("counter") else "double"


def _export(ca: Authority, identity: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.trust_bundle())
    (directory / "client.crt").write_bytes(ca.export(identity, CertFormat.CHAIN))
    key = directory / "client.key"
    key.write_bytes(ca.export(identity, CertFormat.KEY))
    key.chmod(0o600)


@dataclass
class Line:
    root: Path
    ca: Authority
    broker: Broker | HiveMQ
    opcua_port: int
    metrics_port: int
    config_path: Path
    outbox_dir: Path
    sim: subprocess.Popen[bytes] | None = None
    connector: subprocess.Popen[bytes] | None = None

    # -- processes ------------------------------------------------------------------------------

    def start_sim(self) -> None:
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "plantline.connectors.sim.opcua_server", "--port", str(self.opcua_port),
             "--seed", "7", "--update-interval", str(UPDATE_INTERVAL), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=(self.root / "sim.log").open("ab"),
        )  # fmt: skip

    def stop_sim(self) -> None:
        _stop(self.sim)

    def start_connector(self) -> None:
        self.connector = subprocess.Popen(
            [sys.executable, "-m", "plantline.connectors.cli", "run", "--config", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=(self.root / "connector.log").open("ab"),
        )  # fmt: skip

    def kill_connector(self) -> None:
        if self.connector is not None and self.connector.poll() is None:
            self.connector.send_signal(signal.SIGKILL)
            self.connector.wait(timeout=10)

    def stop_connector(self) -> int | None:
        return _stop(self.connector)

    def reader(self, *, persistent: bool = False) -> SparkplugReader:
        return SparkplugReader(
            port=self.broker.port, group_id="site1", ca=self.root / "reader" / "ca.crt",
            cert=self.root / "reader" / "client.crt", key=self.root / "reader" / "client.key",
            client_id="e2e-reader", persistent=persistent,
        )  # fmt: skip

    def metric(self, name: str) -> float:
        """Sum a metric family from the connector's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def connector_log(self) -> str:
        path = self.root / "connector.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _stop(proc: subprocess.Popen[bytes] | None) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=5)


@pytest.fixture
def broker_program() -> str:
    """The broker the line runs on: mosquitto; a module may override it (HiveMQ CE as a second broker)."""
    return "mosquitto"


@pytest.fixture
def line(tmp_path: Path, broker_program: str) -> Iterator[Line]:
    ca = Authority.init(tmp_path / "ca", name="E2E CA", passphrase=None, encrypt=False)
    ca.issue("broker", profile="mqtt-server", sans=["localhost", "127.0.0.1"])
    ca.issue("site1-line1", profile="mqtt-client")
    ca.issue("reader", profile="mqtt-client")
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    (broker_dir / "trust-bundle.pem").write_bytes(ca.trust_bundle())
    (broker_dir / "crl.pem").write_bytes(ca.crl_pem())
    (broker_dir / "broker.crt").write_bytes(ca.export("broker", CertFormat.CHAIN))
    (broker_dir / "broker.key").write_bytes(ca.export("broker", CertFormat.KEY))
    _export(ca, "site1-line1", tmp_path / "connector")
    _export(ca, "reader", tmp_path / "reader")
    broker: Broker | HiveMQ = (
        HiveMQ(broker_dir, free_port())
        if broker_program == "hivemq"
        # The queue limit is the one the product's edge broker is rendered with (operator/render.py):
        # mosquitto's default of 1000 queued messages per offline client drops the e2e reader's share
        # of a replay when the connector reconnects before the reader does.
        else Broker(broker_dir, free_port(), persistence=True, extra=["max_queued_messages 100000000"])
    )
    opcua_port, metrics_port = free_port(), free_port()
    config = {
        "sparkplug": {"group_id": "site1", "edge_node_id": "line1"},
        "brokers": [
            {
                "host": "localhost",
                "port": broker.port,
                "tls": {
                    "ca_file": str(tmp_path / "connector" / "ca.crt"),
                    "cert_file": str(tmp_path / "connector" / "client.crt"),
                    "key_file": str(tmp_path / "connector" / "client.key"),
                },
            }
        ],
        "outbox": {"directory": str(tmp_path / "outbox")},
        "state_directory": str(tmp_path / "state"),
        "metrics_port": metrics_port,
        "batching": {"max_metrics": 200, "linger_ms": 20},
        "devices": [
            {
                "id": "filler",
                "protocol": "opcua",
                "endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/",
                "sampling_interval_ms": 10,
                "opcua": {"publishing_interval_ms": 50, "queue_size": 100},
                "tags": [{"signal": s, "address": f"ns=2;s=Filler.{s}", "datatype": _datatype(s)} for s in SIGNALS],
            }
        ],
    }
    config_path = tmp_path / "connector.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = Line(tmp_path, ca, broker, opcua_port, metrics_port, config_path, tmp_path / "outbox")
    broker.start()
    try:
        yield result
    finally:
        result.stop_connector()
        result.stop_sim()
        broker.stop()
        if os.environ.get("PLANTLINE_E2E_LOGS"):
            print(result.connector_log())
