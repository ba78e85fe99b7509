"""The historian between a real mosquitto and a real PostgreSQL: killed with SIGKILL mid-stream, it loses
and duplicates nothing; started after the births, it asks for a rebirth and reads the data it held.

The edge node here is PlantLine's own EdgeNodeSession behind a paho client that answers rebirth
requests; every DDATA it publishes (QoS 1, acknowledged by the broker) is the ground truth.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from plantline.connectors.config import Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.session import BdSeqStore, EdgeNodeSession, Outgoing
from plantline.connectors.sparkplug import decode, parse_topic
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import free_port
from plantline_testing.mosquitto import Broker
from plantline_testing.postgres import PostgresCluster

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SIGNALS = [f"process.p{i}" for i in range(20)]
MACHINES = ("m1", "m2")


def _files(ca: Authority, identity: str, directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{identity}.crt").write_bytes(ca.export(identity, CertFormat.CHAIN))
    key = directory / f"{identity}.key"
    key.write_bytes(ca.export(identity, CertFormat.KEY))
    key.chmod(0o600)
    return {"ca_file": str(directory / "ca.crt"), "cert_file": str(key.with_suffix(".crt")), "key_file": str(key)}


class Edge:
    """An edge node publishing numbered samples; answers NCMD rebirth requests with births."""

    def __init__(self, port: int, tls: dict[str, str], state: Path) -> None:
        tags = [Tag(signal=s, address=f"ns=2;s={s}", datatype="double") for s in SIGNALS]
        self.session = EdgeNodeSession(
            group_id="site1", edge_node_id="line1", devices=dict.fromkeys(MACHINES, tags), bdseq=BdSeqStore(state)
        )
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="edge-line1")
        context = ssl.create_default_context(cafile=tls["ca_file"])
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
        self.client.tls_set_context(context)
        self.client.on_message = self._on_message
        self.port = port
        self.lock = threading.Lock()
        self.published: set[tuple[str, str, int]] = set()
        # Samples of today: older ones would fall outside the retention a restarted historian applies.
        self.t0 = int(time.time() * 1000)

    def start(self) -> None:
        will = self.session.prepare_connect()
        self.client.will_set(will.topic, will.payload, will.qos)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        self.client.subscribe("spBv1.0/site1/NCMD/line1", 1)
        now = int(time.time() * 1000)
        self._send(self.session.on_connected(now))
        for machine in MACHINES:
            self._send(self.session.device_online(machine, now))

    def _send(self, messages: list[Outgoing]) -> None:
        with self.lock:
            infos = [self.client.publish(m.topic, m.payload, m.qos) for m in messages]
        for info in infos:
            info.wait_for_publish(10)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if parse_topic(message.topic).edge_node_id == "line1" and decode(bytes(message.payload)).metrics:
            threading.Thread(
                target=self._send, args=(self.session.on_rebirth_request(int(time.time() * 1000)),)
            ).start()

    def publish(self, round_: int) -> None:
        ts = self.t0 + round_
        samples = [Sample(m, s, float(round_), Quality.GOOD, ts) for m in MACHINES for s in SIGNALS]
        with self.lock:
            messages = self.session.data(samples, ts, historical=False).messages
        self._send(messages)
        with self.lock:
            self.published.update((m, s, ts) for m in MACHINES for s in SIGNALS)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Broker, dict[str, Any], PostgresCluster]]:
    ca = Authority.init(tmp_path / "ca", name="test CA", passphrase=b"x" * 16, encrypt=False)
    tls_dir = tmp_path / "tls"
    ca.issue("broker", profile="mqtt-server", sans=["ip:127.0.0.1"])
    for identity in ("historian", "edge"):
        ca.issue(identity, profile="mqtt-client")
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    (broker_dir / "broker.crt").write_bytes(ca.export("broker", CertFormat.CHAIN))
    (broker_dir / "broker.key").write_bytes(ca.export("broker", CertFormat.KEY))
    (broker_dir / "trust-bundle.pem").write_bytes(ca.trust_bundle())
    (broker_dir / "crl.pem").write_bytes(ca.crl_pem())
    tls_dir.mkdir()
    (tls_dir / "ca.crt").write_bytes(ca.trust_bundle())
    broker = Broker(broker_dir, free_port(), persistence=True)
    cluster = PostgresCluster()
    files = {"historian": _files(ca, "historian", tls_dir), "edge": _files(ca, "edge", tls_dir)}
    try:
        broker.start()
        cluster.start()
        yield broker, files, cluster
    finally:
        broker.stop()
        cluster.stop()


def _historian(tmp_path: Path, broker: Broker, tls: dict[str, str], dsn: str) -> subprocess.Popen[bytes]:
    config = {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": broker.port, "tls": tls}], "client_id": "historian-test"},
        "database": {"dsn": dsn},
        "lines": [{"site": "site1", "line": "line1", "group_id": "site1", "edge_node_ids": ["line1"]}],
        "ingest": {"max_rows": 500, "linger_ms": 20, "refresh_interval_s": 1.0},
        "status_file": str(tmp_path / "historian-status.json"),
    }
    path = tmp_path / "historian.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "historian.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "plantline.historian", "run", "--config", str(path)], stdout=log, stderr=log
    )


def _stored(dsn: str) -> set[tuple[str, str, int]]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('samples')").fetchone() == (None,):
            return set()  # the historian has not migrated the database yet
        rows = conn.execute(
            "SELECT m.device_id, s.signal, (extract(epoch FROM x.ts) * 1000)::bigint FROM samples x"
            " JOIN series s ON s.id = x.series_id JOIN machines m ON m.id = s.machine_id"
        ).fetchall()
    return {(str(d), str(s), int(t)) for d, s, t in rows}


def _wait(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def test_a_killed_historian_loses_and_duplicates_nothing(tmp_path: Path, setup: Any) -> None:
    broker, files, cluster = setup
    edge = Edge(broker.port, files["edge"], tmp_path / "bdseq")
    edge.start()  # births before the historian ever listened: it must ask for a rebirth
    historian = _historian(tmp_path, broker, files["historian"], cluster.dsn)
    log = tmp_path / "historian.log"
    status = tmp_path / "historian-status.json"
    try:
        # Its persistent session holds what is published from its first subscription on.
        _wait(lambda: status.exists() and '"mqtt": "connected"' in status.read_text(), 60, "the historian online", log)
        for round_ in range(300):
            edge.publish(round_)
            if round_ == 150:
                historian.send_signal(signal.SIGKILL)
                historian.wait(timeout=10)
                historian = _historian(tmp_path, broker, files["historian"], cluster.dsn)
        _wait(lambda: _stored(cluster.dsn) >= edge.published, 90, "every published sample stored", log)
        stored = _stored(cluster.dsn)
        assert stored == edge.published
        with psycopg.connect(cluster.dsn) as conn:
            (rows,) = conn.execute("SELECT count(*) FROM samples").fetchone() or (0,)
            (received,) = conn.execute("SELECT sum(received) FROM ingest_batches").fetchone() or (0,)
        assert rows == len(edge.published) == 300 * len(MACHINES) * len(SIGNALS)
        assert received >= rows
        assert "set aside" not in log.read_text()
    finally:
        historian.send_signal(signal.SIGTERM)
        historian.wait(timeout=30)
        edge.stop()
