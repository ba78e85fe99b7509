"""A real mosquitto, configured for mutual TLS from plantline-pki exports, judges the certificates.

Every test starts mosquitto (2.0.11 here) on a free loopback port with `require_certificate` and
`use_identity_as_username`, the CA's trust bundle as `cafile` and its CRLs as `crlfile`, then
connects paho-mqtt 2.x clients holding certificates the CLI issued and exported.

Reloading: its man page promises only that `certfile`/`keyfile` are reloaded on SIGHUP, but
mosquitto 2.0.11 (Debian, OpenSSL 3) measurably re-reads `cafile` and `crlfile` too, into a fresh
trust store: after a SIGHUP a CA removed from `cafile` is no longer trusted, a CA added is, and a
newly revoked certificate is refused. So the tests reload with SIGHUP instead of restarting; the
revocation test and the rotation test's final refusal of the old-CA leaf fail if a SIGHUP stops
doing that (then restart the broker instead).
"""

from __future__ import annotations

import re
import secrets
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from conftest import PASSPHRASE, PkiCli
from plantline.pki.authority import Authority
from plantline_testing import free_port
from plantline_testing.mosquitto import Broker

CONNECT_TIMEOUT = 5.0
START_TIMEOUT = 10.0
VERIFY_FAILED = "certificate verify failed"  # what mosquitto logs when it rejects a client certificate


# -- MQTT clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A client certificate and its key as exported by `cert export --format bundle`."""

    name: str
    cert: Path
    key: Path


@dataclass
class Peer:
    """A paho-mqtt 2.x client with a client certificate, driven by `pump` in the test's thread."""

    identity: Identity
    ca_certs: Path
    outcome: str | None = None
    errors: list[str] = field(default_factory=list)
    received: list[mqtt.MQTTMessage] = field(default_factory=list)
    granted: list[ReasonCode] = field(default_factory=list)
    client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{self.identity.name}-{secrets.token_hex(4)}",
            reconnect_on_failure=False,
        )
        self.client.tls_set(
            ca_certs=str(self.ca_certs), certfile=str(self.identity.cert), keyfile=str(self.identity.key)
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_log = self._on_log

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self.outcome = f"refused: CONNACK {reason}" if reason.is_failure else "connected"

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if self.outcome is None:
            detail = "; ".join(self.errors) or "no detail"
            self.outcome = f"refused: connection closed before CONNACK ({reason}: {detail})"

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        self.granted.extend(reasons)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received.append(message)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self.errors.append(text)

    def connect(self, port: int) -> str:
        """Connect and wait for the CONNACK; return "connected" or "refused: <reason>".

        With TLS 1.3 the broker checks the client certificate after the client's handshake ends,
        so a rejected certificate shows as the connection closing before the CONNACK; with
        TLS 1.2 it shows as a handshake error from connect(). Both are refusals. No answer at
        all is not a refusal: it is reported as such and fails any assertion.
        """
        try:
            self.client.connect("127.0.0.1", port, keepalive=30)
        except ssl.SSLError as exc:
            return f"refused: TLS handshake failed: {exc}"
        except OSError as exc:  # ConnectionResetError, BrokenPipeError: the broker hung up
            return f"refused: connection failed: {exc}"
        pump([self], lambda: self.outcome is not None)
        return self.outcome or f"no answer within {CONNECT_TIMEOUT} s"

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()


def pump(peers: Sequence[Peer], done: Callable[[], bool], timeout: float = CONNECT_TIMEOUT) -> bool:
    """Run the peers' network loops in this thread until `done()` or the timeout; return done()."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        for peer in peers:
            if peer.client.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                time.sleep(0.01)
    return True


# -- a CA with a broker -----------------------------------------------------------------------


@dataclass
class Site:
    """A CA directory, the broker it serves and the client files exported from it."""

    pki: PkiCli
    ca: Path
    broker: Broker
    clients: Path

    def deploy_trust(self) -> None:
        """Export the trust bundle and the CRLs to the broker's files (what an operator does)."""
        ca = str(self.ca)
        self.pki("ca", "export", "--ca", ca, "--format", "bundle", "--out", str(self.broker.cafile), "--force")
        self.pki("ca", "export", "--ca", ca, "--format", "crl", "--out", str(self.broker.crlfile), "--force")
        # What was exported is what the CA published (revoke and rotate re-sign crl.pem in place).
        assert self.broker.cafile.read_bytes() == (self.ca / "trust-bundle.pem").read_bytes()
        assert self.broker.crlfile.read_bytes() == (self.ca / "crl.pem").read_bytes()

    def deploy_broker_certificate(self) -> None:
        out = str(self.broker.directory)
        self.pki(
            "cert",
            "export",
            "broker",
            "--ca",
            str(self.ca),
            "--format",
            "bundle",
            "--out",
            out,
            "--unsafe-plaintext-key",
            "--force",
        )

    def issue(self, name: str) -> Identity:
        self.pki("cert", "issue", name, "--ca", str(self.ca), "--profile", "mqtt-client")
        return self.export(name)

    def export(self, name: str, subdir: str = "") -> Identity:
        out = self.clients / (subdir or name)
        self.pki(
            "cert",
            "export",
            name,
            "--ca",
            str(self.ca),
            "--format",
            "bundle",
            "--out",
            str(out),
            "--unsafe-plaintext-key",
        )
        return Identity(name, out / f"{name}.crt", out / f"{name}.key")

    def peer(self, identity: Identity) -> Peer:
        # Every client trusts what the broker trusts: the deployed bundle ("distribute trust-bundle.pem").
        return Peer(identity, self.broker.cafile)

    def attempt(self, identity: Identity) -> tuple[str, str]:
        """Connect once; return the outcome and what mosquitto logged meanwhile."""
        mark = self.broker.log_mark()
        peer = self.peer(identity)
        try:
            outcome = peer.connect(self.broker.port)
        finally:
            peer.close()
        return outcome, self.broker.log_since(mark)

    def assert_connects(self, identity: Identity) -> None:
        outcome, log = self.attempt(identity)
        assert outcome == "connected", f"{identity.name} ({identity.cert}): {outcome}\n{log}"
        # use_identity_as_username: the certificate's CN became the MQTT username.
        assert f"u'{identity.name}')" in log, log

    def assert_refused(self, identity: Identity) -> None:
        outcome, log = self.attempt(identity)
        assert outcome.startswith("refused"), f"{identity.name} ({identity.cert}) was not refused: {outcome}\n{log}"
        # The broker, not the client, rejected the handshake, and it did so over the certificate.
        assert VERIFY_FAILED in log, f"{identity.name}: {outcome}\nmosquitto logged:\n{log}"
        assert f"u'{identity.name}'" not in log


@pytest.fixture
def site(pki: PkiCli, root_ca: Path, tmp_path: Path) -> Iterator[Site]:
    """The root CA's broker (mqtt-server for localhost and 127.0.0.1), running; stopped afterwards."""
    broker_dir = tmp_path / "broker"
    san = ["--san", "localhost", "--san", "127.0.0.1"]
    pki("cert", "issue", "broker", "--ca", str(root_ca), "--profile", "mqtt-server", *san)
    broker = Broker(broker_dir, free_port())
    result = Site(pki, root_ca, broker, tmp_path / "clients")
    result.deploy_broker_certificate()
    result.deploy_trust()
    try:
        broker.start()
        yield result
    finally:
        broker.stop()
    assert broker.proc is not None
    assert broker.proc.poll() is not None, "mosquitto outlived its test"


def pem_blocks(path: Path, kind: str) -> int:
    return len(re.findall(rf"-----BEGIN {kind}-----", path.read_text()))


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.peer
def test_valid_clients_connect_and_exchange_a_qos1_message(site: Site) -> None:
    scada = site.issue("line1-scada")
    filler = site.issue("line1-filler")
    topic = f"plantline/test/{secrets.token_hex(4)}"
    payload = f"fill-level=42.5 {secrets.token_hex(8)}".encode()

    subscriber, publisher = site.peer(scada), site.peer(filler)
    try:
        mark = site.broker.log_mark()
        assert subscriber.connect(site.broker.port) == "connected"
        subscriber.client.subscribe(topic, qos=1)
        assert pump([subscriber], lambda: bool(subscriber.granted)), "no SUBACK"
        assert [r.value for r in subscriber.granted] == [1], subscriber.granted

        assert publisher.connect(site.broker.port) == "connected"
        info = publisher.client.publish(topic, payload, qos=1)
        assert pump([publisher, subscriber], lambda: info.is_published() and bool(subscriber.received)), (
            f"published={info.is_published()} received={subscriber.received}"
        )
        [message] = subscriber.received
        assert message.topic == topic
        assert message.payload == payload
        assert message.qos == 1
        log = site.broker.log_since(mark)
        assert "u'line1-scada')" in log
        assert "u'line1-filler')" in log
    finally:
        publisher.close()
        subscriber.close()


@pytest.mark.peer
def test_revoked_client_is_refused_after_the_crl_reaches_the_broker(site: Site) -> None:
    capper = site.issue("line1-capper")
    filler = site.issue("line1-filler")
    site.assert_connects(capper)
    site.assert_connects(filler)
    published = (site.ca / "crl.pem").read_bytes()

    site.pki("cert", "revoke", "line1-capper", "--ca", str(site.ca), "--reason", "key-compromise")
    assert (site.ca / "crl.pem").read_bytes() != published, "revoke did not re-sign crl.pem"
    site.deploy_trust()
    site.broker.reload()

    site.assert_refused(capper)
    site.assert_connects(filler)


@pytest.mark.peer
def test_expired_client_is_refused(site: Site) -> None:
    past = datetime.now(UTC) - timedelta(days=10)
    lapsed = Authority(site.ca, passphrase=lambda: PASSPHRASE.encode(), clock=lambda: past)
    issued = lapsed.issue("line1-labeler", profile="mqtt-client", validity_days=1)
    assert issued.not_after < datetime.now(UTC)
    expired = site.export("line1-labeler")
    listed = site.pki("cert", "list", "--ca", str(site.ca), "--status", "expired").stdout
    assert "line1-labeler" in listed

    site.assert_refused(expired)
    site.assert_connects(site.issue("line1-filler"))


@pytest.mark.peer
def test_client_of_a_foreign_ca_is_refused(site: Site, tmp_path: Path) -> None:
    # Same CA name and organization, same identity: only the key behind the CA differs.
    foreign = tmp_path / "foreign"
    site.pki("ca", "init", str(foreign), "--name", "Test Root CA", "--organization", "PlantLine Tests")
    site.pki("cert", "issue", "line1-filler", "--ca", str(foreign), "--profile", "mqtt-client")
    out = tmp_path / "intruder"
    site.pki(
        "cert",
        "export",
        "line1-filler",
        "--ca",
        str(foreign),
        "--format",
        "bundle",
        "--out",
        str(out),
        "--unsafe-plaintext-key",
    )
    intruder = Identity("line1-filler", out / "line1-filler.crt", out / "line1-filler.key")

    site.assert_refused(intruder)
    site.assert_connects(site.issue("line1-filler"))


@pytest.mark.peer
def test_ca_rotation_keeps_both_generations_until_finalize(site: Site) -> None:
    ca = str(site.ca)
    old_filler = site.issue("line1-filler")  # generation 1; these files stay on disk unchanged
    site.assert_connects(old_filler)

    # Phase 1: a new generation signs; the bundle and the CRL file cover both generations.
    site.pki("ca", "rotate", "--ca", ca)
    site.deploy_trust()
    assert pem_blocks(site.broker.cafile, "CERTIFICATE") == 2
    assert pem_blocks(site.broker.crlfile, "X509 CRL") == 2
    site.broker.reload()
    new_capper = site.issue("line1-capper")  # generation 2
    site.assert_connects(old_filler)
    site.assert_connects(new_capper)

    # Phase 2: every old leaf, the broker's included, is re-issued by the new generation.
    site.pki("ca", "rotate", "--ca", ca, "--reissue")
    site.deploy_broker_certificate()
    new_filler = site.export("line1-filler", subdir="line1-filler-reissued")
    assert new_filler.cert.read_bytes() != old_filler.cert.read_bytes()
    site.broker.reload()
    site.assert_connects(old_filler)  # still trusted until finalize
    site.assert_connects(new_filler)

    # Phase 3: the old generation leaves the bundle and the CRL file; its leaves are refused.
    site.pki("ca", "rotate", "--ca", ca, "--finalize")
    site.deploy_trust()
    assert pem_blocks(site.broker.cafile, "CERTIFICATE") == 1
    assert pem_blocks(site.broker.crlfile, "X509 CRL") == 1
    site.broker.reload()
    site.assert_refused(old_filler)
    site.assert_connects(new_filler)
    site.assert_connects(new_capper)
