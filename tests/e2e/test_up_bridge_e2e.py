"""The line's broker bridged to a second mosquitto, the "core" broker, as `plantline up` runs it.

The core broker trusts the line's CA and holds the bridge's session; the test proves the line's
Sparkplug traffic arrives there, a core host's rebirth request reaches the connector through the
bridge, and nothing else crosses in either direction.
"""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from plantline.connectors.sparkplug import DataType, MessageType, Metric, Payload, encode
from plantline_testing import free_port
from plantline_testing.lines import UpRun, line_copy, start_core_broker
from plantline_testing.mosquitto import Broker

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MACHINES = ("filler", "capper", "labeler")
PROBE = b"queue-probe-"
PROBES = 5000  # five times mosquitto's default queue limit per client
AUTOSAVE_S = 5  # spec.broker.s default autosaveSeconds


class TopicLog:
    """A raw MQTT client that records every topic it sees on `#` (and can publish)."""

    def __init__(self, port: int, tls: Path, identity: str, topic: str = "#") -> None:
        self.topics: list[str] = []
        self.payloads: set[bytes] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{identity}-log")
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        context.load_cert_chain(str(tls / f"{identity}.crt"), str(tls / f"{identity}.key"))
        self.client.tls_set_context(context)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.port = port

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.topics.append(message.topic)
            self.payloads.add(bytes(message.payload))

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.topics)

    def probes(self) -> int:
        with self._lock:
            return sum(1 for p in self.payloads if p.startswith(PROBE))

    def __enter__(self) -> TopicLog:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._ready.wait(10), "the topic log did not get its subscription"
        return self

    def __exit__(self, *_: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[tuple[UpRun, Broker]]:
    core_port = free_port()
    line_file = tmp_path / "line.yaml"
    line_copy(line_file, bridge=("127.0.0.1", core_port))
    run = UpRun(line_file, tmp_path / "state")
    core: Broker | None = None
    try:
        run.up_detached()  # the bridge retries until the core broker listens
        core = start_core_broker(run, tmp_path / "core", core_port)
        yield run, core
    finally:
        run.down()
        run.kill_all()
        if core is not None:
            core.stop()


def test_the_bridge_carries_the_line_to_the_core_and_nothing_else(bridged: tuple[UpRun, Broker]) -> None:
    run, core = bridged
    site_log = TopicLog(run.port, run.tls, run.identity("reader"))
    with (
        TopicLog(core.port, run.tls, "core-host") as core_log,
        run.reader("core-host", port=core.port) as core_reader,
        site_log,
    ):
        core_reader.wait_for(lambda: len(core_reader.of(MessageType.NBIRTH)) >= 1, 120, "the line's NBIRTH at the core")
        born = lambda: all(core_reader.of(MessageType.DBIRTH, m) for m in MACHINES)  # noqa: E731
        core_reader.wait_for(born, 60, "three DBIRTHs at the core")
        with_kpis = lambda: all(core_reader.values_of(m, "kpi/oee") for m in MACHINES)  # noqa: E731
        core_reader.wait_for(with_kpis, 90, "DDATA with KPIs from all three at the core")

        # A core host's rebirth request travels in through the bridge; the births come back out.
        births = len(core_reader.of(MessageType.NBIRTH))
        ncmd = f"spBv1.0/{run.group}/NCMD/line1"
        crossed = site_log.seen().count(ncmd)
        now = int(time.time() * 1000)
        rebirth = Payload(now, None, (Metric("Node Control/Rebirth", None, now, DataType.Boolean, True),))
        core_reader.publish(ncmd, encode(rebirth))
        core_reader.wait_for(lambda: site_log.seen().count(ncmd) > crossed, 30, "the NCMD at the site broker")
        core_reader.wait_for(lambda: len(core_reader.of(MessageType.NBIRTH)) > births, 30, "an NBIRTH after the NCMD")

        # Topics outside the line's commands do not cross inward (the payloads are valid Sparkplug,
        # as the core host reads them too) ...
        core_log.publish(f"spBv1.0/{run.group}/NCMD/line2", encode(rebirth))
        core_log.publish("spBv1.0/othersite/NCMD/line1", encode(rebirth))
        core_log.publish("factory/other/topic", b"not for the edge")
        core_log.publish(f"spBv1.0/{run.group}/DCMD/line1/filler", encode(rebirth))
        deadline = time.monotonic() + 10
        while f"spBv1.0/{run.group}/DCMD/line1/filler" not in site_log.seen():
            assert time.monotonic() < deadline, "the DCMD for the line did not cross inward"
            time.sleep(0.1)
        inward = set(site_log.seen())
        assert f"spBv1.0/{run.group}/NCMD/line2" not in inward
        assert "spBv1.0/othersite/NCMD/line1" not in inward
        assert "factory/other/topic" not in inward
        assert not [t for t in inward if t.startswith("$SYS")]  # the reader's ACL would not show them anyway

        # ... and nothing but the line's Sparkplug namespace crosses outward.
        line_prefixes = tuple(f"spBv1.0/{run.group}/{kind}/line1" for kind in ("NBIRTH", "NDEATH", "DBIRTH", "DDATA"))
        ours = {
            f"spBv1.0/{run.group}/NCMD/line1", f"spBv1.0/{run.group}/NCMD/line2", "spBv1.0/othersite/NCMD/line1",
            "factory/other/topic", f"spBv1.0/{run.group}/DCMD/line1/filler",
        }  # fmt: skip
        at_core = set(core_log.seen())
        assert {t for t in at_core if t.startswith(line_prefixes)}, "the line's traffic is at the core"
        foreign = {t for t in at_core - ours if not t.startswith("$SYS/") and not t.startswith(line_prefixes)}
        assert foreign == set()
        assert not core_reader.errors
    assert "site1-line1-bridge" in core.log_text()  # the bridge logged in with its own identity


def _publish_probes(run: UpRun, topic: str, count: int) -> None:
    """Publish `count` distinct QoS 1 messages as the line's connector; return once all are acknowledged."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="queue-probe")
    identity = run.identity("line1")
    context = ssl.create_default_context(cafile=str(run.tls / "ca.crt"))
    context.load_cert_chain(str(run.tls / f"{identity}.crt"), str(run.tls / f"{identity}.key"))
    client.tls_set_context(context)
    client.connect("127.0.0.1", run.port)
    client.loop_start()
    try:
        sent = [client.publish(topic, PROBE + str(i).encode(), qos=1) for i in range(count)]
        for message in sent:
            message.wait_for_publish(30)
            assert message.rc == paho.MQTT_ERR_SUCCESS
    finally:
        client.disconnect()
        client.loop_stop()


def test_data_waiting_for_the_core_outlives_the_queue_limit_and_a_site_broker_crash(tmp_path: Path) -> None:
    # The connectors delete a sample once the site broker acknowledged it; from then on, the site
    # broker's queue for the bridge is the only copy while the core is away. It must hold far more
    # than mosquitto's default 1000 messages, and survive the broker being killed.
    core_port = free_port()
    line_file = tmp_path / "line.yaml"
    line_copy(line_file, bridge=("127.0.0.1", core_port))
    run = UpRun(line_file, tmp_path / "state")
    topic = f"spBv1.0/{run.group}/DDATA/line1/filler"  # the connector's own topic: the ACL allows it
    core: Broker | None = None
    try:
        run.up_detached()  # the core broker is not there: the WAN is down
        _publish_probes(run, topic, PROBES)
        time.sleep(AUTOSAVE_S + 1.5)  # one autosave at least since the last acknowledgement
        os.killpg(run.child_pid("broker"), signal.SIGKILL)
        run.wait_status(
            lambda s: s["broker"]["state"] == "running" and s["broker"]["restarts"] >= 1, 60, "the site broker back"
        )
        site = run.child_pid("broker")
        os.killpg(site, signal.SIGSTOP)  # the bridge waits until the core's subscriber is in place
        try:
            # The core keeps every message for its subscriber too (its default would drop past 1000).
            core = start_core_broker(run, tmp_path / "core", core_port, extra=["max_queued_messages 100000000"])
            with TopicLog(core.port, run.tls, "core-host", topic) as at_core:
                os.killpg(site, signal.SIGCONT)
                deadline = time.monotonic() + 150  # the bridge retries with a back-off of up to 60 s
                while at_core.probes() < PROBES and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert at_core.probes() == PROBES
        finally:
            os.killpg(site, signal.SIGCONT)
    finally:
        run.down()
        run.kill_all()
        if core is not None:
            core.stop()
