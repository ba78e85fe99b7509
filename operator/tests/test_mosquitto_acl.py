"""The rendered mosquitto.conf and ACL, run by the real mosquitto with certificates from the pki."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.render import BrokerFiles, render_acl, render_certificate_requests, render_mosquitto_conf
from plantline.operator.roles import line_grants
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import find_program, free_port

pytestmark = pytest.mark.peer
OBSERVER = "test-observer"  # not part of the line: sees and may publish every topic, to check what was delivered


class Client:
    """A paho client with the line's mTLS identity that records what it receives."""

    def __init__(self, port: int, tls: Path, identity: str) -> None:
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=identity)
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        context.load_cert_chain(str(tls / f"{identity}.crt"), str(tls / f"{identity}.key"))
        self._client.tls_set_context(context)
        self.received: list[str] = []
        self.retained: list[str] = []  # topics that arrived with the retain flag
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect("127.0.0.1", port, keepalive=10)
        self._client.loop_start()

    def _on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        with self._cond:
            self.received.append(message.topic)
            if message.retain:
                self.retained.append(message.topic)
            self._cond.notify_all()

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self._client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)

    def publish(self, topic: str, *, retain: bool = False) -> None:
        self._client.publish(topic, b"x", qos=1, retain=retain).wait_for_publish(5)

    def wait_for(self, topic: str) -> list[str]:
        """Wait until `topic` arrived; return everything received up to then."""
        with self._cond:
            assert self._cond.wait_for(lambda: topic in self.received, timeout=5), self.received
            return list(self.received)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class RunningBroker:
    port: int
    tls: Path
    proc: subprocess.Popen[bytes]

    def client(self, identity: str) -> Client:
        return Client(self.port, self.tls, identity)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, f"mosquitto exited {proc.returncode}:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)


@contextlib.contextmanager
def _running(line: PlantLine, tmp_path: Path) -> Iterator[RunningBroker]:
    """Run mosquitto with the line's rendered configuration and ACL, and a certificate per identity."""
    ca = Authority.init(tmp_path / "ca", name="Operator test CA", passphrase=None, encrypt=False)
    tls, broker_dir = tmp_path / "tls", tmp_path / "broker"
    tls.mkdir()
    (broker_dir / "data").mkdir(parents=True)
    (tls / "ca.crt").write_bytes(ca.trust_bundle())
    for request in render_certificate_requests(line):
        ca.issue(request.identity, profile=request.profile, sans=request.sans)
    issued = {r.identity for r in render_certificate_requests(line)}
    # The dashboard's and the admin's certificates come from the security team, not the line.
    for identity in sorted({g.identity for g in line_grants(line.spec)} - issued):
        ca.issue(identity, profile="mqtt-client")
    ca.issue(OBSERVER, profile="mqtt-client")
    (tls / "crl.pem").write_bytes(ca.crl_pem())
    for cert in ca.certificates():
        (tls / f"{cert.identity}.crt").write_bytes(ca.export(cert.identity, CertFormat.CHAIN))
        key = tls / f"{cert.identity}.key"
        key.write_bytes(ca.export(cert.identity, CertFormat.KEY))
        key.chmod(0o600)
    files = BrokerFiles.under(line.spec, tls_dir=tls, broker_dir=broker_dir)
    files.acl_file.write_text(render_acl(line) + f"\nuser {OBSERVER}\ntopic readwrite #\n")
    port = free_port()
    conf = broker_dir / "mosquitto.conf"
    run_as = "root" if os.geteuid() == 0 else None  # as root, mosquitto would drop to a user that cannot read tmp
    conf.write_text(render_mosquitto_conf(line, files=files, listen_address="127.0.0.1", port=port, run_as=run_as))
    log = broker_dir / "mosquitto.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([find_program("mosquitto"), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, log)
        yield RunningBroker(port, tls, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def broker(demo: PlantLine, tmp_path: Path) -> Iterator[RunningBroker]:
    with _running(demo, tmp_path) as running:
        yield running


@pytest.fixture
def host_broker(demo_data: Callable[[], dict[str, Any]], tmp_path: Path) -> Iterator[RunningBroker]:
    """The demo line (an edge node per machine) with the primary host `scada`."""
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    with _running(parse_plantline(data), tmp_path) as running:
        yield running


def test_connector_publishes_only_into_its_own_edge_node(broker: RunningBroker) -> None:
    observer, filler = broker.client(OBSERVER), broker.client("site1-line1-filler")
    try:
        observer.subscribe("#")
        filler.publish("spBv1.0/site1/DDATA/line1-capper/capper")  # another edge node
        filler.publish("spBv1.0/site2/DDATA/line1-filler/filler")  # another group
        filler.publish("spBv1.0/site1/NCMD/line1-filler")  # commands are not the node's to send
        filler.publish("spBv1.0/site1/DDATA/line1-filler/filler")  # its own: delivered after the others
        assert observer.wait_for("spBv1.0/site1/DDATA/line1-filler/filler") == [
            "spBv1.0/site1/DDATA/line1-filler/filler"
        ]
    finally:
        observer.close()
        filler.close()


def test_reader_reads_the_group_but_cannot_publish(broker: RunningBroker) -> None:
    observer, reader, capper = (broker.client(i) for i in (OBSERVER, "site1-line1-reader", "site1-line1-capper"))
    try:
        observer.subscribe("#")
        reader.subscribe("spBv1.0/site1/#")
        reader.publish("spBv1.0/site1/NCMD/line1-capper")
        reader.publish("spBv1.0/site1/DDATA/line1-capper/capper")
        capper.publish("spBv1.0/site1/NBIRTH/line1-capper")
        assert observer.wait_for("spBv1.0/site1/NBIRTH/line1-capper") == ["spBv1.0/site1/NBIRTH/line1-capper"]
        assert reader.wait_for("spBv1.0/site1/NBIRTH/line1-capper") == ["spBv1.0/site1/NBIRTH/line1-capper"]
    finally:
        for client in (observer, reader, capper):
            client.close()


STATE = "spBv1.0/STATE/scada"
HOST = "site1-line1-host"


def test_host_publishes_its_state_retained_and_commands_and_reads_the_line(host_broker: RunningBroker) -> None:
    observer, host, filler = (host_broker.client(i) for i in (OBSERVER, HOST, "site1-line1-filler"))
    late = None
    try:
        observer.subscribe("#")
        host.subscribe("spBv1.0/site1/#")
        host.publish(STATE, retain=True)
        host.publish("spBv1.0/site1/NCMD/line1-filler")
        host.publish("spBv1.0/site1/DCMD/line1-capper/capper")
        filler.publish("spBv1.0/site1/DDATA/line1-filler/filler")
        assert observer.wait_for("spBv1.0/site1/DDATA/line1-filler/filler") == [
            STATE,
            "spBv1.0/site1/NCMD/line1-filler",
            "spBv1.0/site1/DCMD/line1-capper/capper",
            "spBv1.0/site1/DDATA/line1-filler/filler",
        ]
        assert "spBv1.0/site1/DDATA/line1-filler/filler" in host.wait_for("spBv1.0/site1/DDATA/line1-filler/filler")
        # An edge node that connects later finds the host's STATE retained.
        late = host_broker.client("site1-line1-labeler")
        late.subscribe(STATE)
        assert late.wait_for(STATE) == [STATE]
        assert late.retained == [STATE]
        host.subscribe(STATE)  # a Sparkplug host reads its own STATE back
        host.wait_for(STATE)
        assert host.retained == [STATE]
    finally:
        for client in (observer, host, filler, *([late] if late else [])):
            client.close()


def test_host_publishes_no_other_state_and_no_data_and_edge_nodes_no_state(host_broker: RunningBroker) -> None:
    observer, host, filler = (host_broker.client(i) for i in (OBSERVER, HOST, "site1-line1-filler"))
    try:
        observer.subscribe("#")
        filler.publish(STATE, retain=True)  # an edge node cannot pose as the host
        host.publish("spBv1.0/STATE/other-host", retain=True)  # nor the host as another host
        host.publish("spBv1.0/site1/NBIRTH/line1-filler")
        host.publish("spBv1.0/site1/DDATA/line1-filler/filler")
        host.publish("spBv1.0/site2/NCMD/line1-filler")  # another group's edge node
        host.publish("spBv1.0/site1/NCMD/line1-filler")  # its own right: delivered after the others
        assert observer.wait_for("spBv1.0/site1/NCMD/line1-filler") == ["spBv1.0/site1/NCMD/line1-filler"]
    finally:
        for client in (observer, host, filler):
            client.close()


# Topics of another line of the same site (same Sparkplug group) and of another host.
FOREIGN = [
    "spBv1.0/site1/NBIRTH/line2",
    "spBv1.0/site1/DDATA/line2/press",
    "spBv1.0/site1/NCMD/line2",
    "spBv1.0/STATE/other-host",
]
LINE_DATA = "spBv1.0/site1/DDATA/line1-filler/filler"
LINE_COMMAND = "spBv1.0/site1/NCMD/line1-filler"


@pytest.mark.parametrize(
    ("identity", "reads_commands"),
    [("site1-line1-reader", True), ("site1-line1-dashboard", False), ("site1-line1-admin", True), (HOST, True)],
)
def test_each_reading_role_receives_its_line_and_nothing_of_another(
    host_broker: RunningBroker, identity: str, reads_commands: bool
) -> None:
    observer, client = host_broker.client(OBSERVER), host_broker.client(identity)
    try:
        client.subscribe("spBv1.0/#")  # wider than its rights: the broker delivers only what it may read
        for topic in [*FOREIGN, LINE_COMMAND, STATE, LINE_DATA]:
            observer.publish(topic)
        expected = [*([LINE_COMMAND] if reads_commands else []), STATE, LINE_DATA]
        assert client.wait_for(LINE_DATA) == expected
    finally:
        observer.close()
        client.close()


@pytest.mark.parametrize(
    ("identity", "may_publish"),
    [
        ("site1-line1-reader", []),
        ("site1-line1-dashboard", []),
        ("site1-line1-admin", [LINE_COMMAND, STATE, LINE_DATA]),
        ("site1-line1-filler", [LINE_DATA]),
    ],
)
def test_each_role_publishes_only_what_it_may(
    host_broker: RunningBroker, identity: str, may_publish: list[str]
) -> None:
    observer, client = host_broker.client(OBSERVER), host_broker.client(identity)
    marker = "spBv1.0/site1/NDATA/line1-capper"
    try:
        observer.subscribe("#")
        for topic in [*FOREIGN, LINE_COMMAND, STATE, LINE_DATA]:
            client.publish(topic)
        observer.publish(marker)
        assert observer.wait_for(marker) == [*may_publish, marker]
    finally:
        observer.close()
        client.close()
