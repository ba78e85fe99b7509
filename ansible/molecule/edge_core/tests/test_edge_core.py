"""Verify the edge node end to end: services, files, sandbox, firewall, and zero loss across rotate-certs.

The Sparkplug stream is read on the host from the core broker (its port is published on
127.0.0.1), with the reader certificate the scenario's CA issued, by the repository's own
Sparkplug reader.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from testinfra.host import Host

from plantline.connectors.sparkplug import MessageType
from plantline_testing.sparkplug_reader import Received, SparkplugReader, Value

HostFactory = Callable[[str], Host]

EDGE_IP = "10.231.12.10"
GROUP = "molecule"
DEVICE = "capper"
COUNTER = "counter.total"
READER = "molecule-line1-reader"
TLS = Path("/etc/plantline/tls")
ANSIBLE_DIR = Path(os.environ["PLANTLINE_ANSIBLE_DIR"])
WORKDIR = Path(os.environ["PLANTLINE_MOLECULE_WORKDIR"])


def _core_port() -> int:
    name = f"pl-edge-core-core-{os.environ['PLANTLINE_RUN_ID']}"
    out = subprocess.run(["podman", "port", name, "8883/tcp"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[0].rsplit(":", 1)[1])


def _reader(client_id: str) -> SparkplugReader:
    bundle = WORKDIR / READER
    return SparkplugReader(
        port=_core_port(),
        group_id=GROUP,
        ca=bundle / "ca.crt",
        cert=bundle / f"{READER}.crt",
        key=bundle / f"{READER}.key",
        client_id=client_id,
    )


def test_services_run_and_start_at_boot(hosts: HostFactory) -> None:
    edge = hosts("edge")
    for unit in ("nftables", "mosquitto", "plantline-connector@line1", "ssh"):
        assert edge.service(unit).is_enabled, unit
        assert edge.service(unit).is_running, unit
    assert hosts("core").service("mosquitto").is_running


def test_ports(hosts: HostFactory) -> None:
    edge = hosts("edge")
    assert edge.socket("tcp://0.0.0.0:8883").is_listening
    assert edge.socket("tcp://127.0.0.1:9400").is_listening  # metrics stay on loopback
    assert not edge.socket("tcp://0.0.0.0:1883").is_listening  # no plaintext MQTT


@pytest.mark.parametrize(
    ("path", "mode", "owner"),
    [
        (TLS / "ca.crt", 0o644, "root"),
        (TLS / "crl.pem", 0o644, "root"),
        (TLS / "molecule-line1-broker.crt", 0o644, "root"),
        (TLS / "molecule-line1-broker.key", 0o600, "mosquitto"),
        (TLS / "molecule-line1-bridge.key", 0o600, "mosquitto"),
        (TLS / "molecule-line1-line1.key", 0o600, "plantline"),
        (Path("/etc/mosquitto/mosquitto.conf"), 0o640, "root"),
        (Path("/var/lib/plantline/broker/acl"), 0o640, "root"),
        (Path("/etc/plantline/connectors/line1.yaml"), 0o640, "root"),
        (Path("/var/lib/plantline/line1"), 0o700, "plantline"),
    ],
)
def test_file_modes(hosts: HostFactory, path: Path, mode: int, owner: str) -> None:
    f = hosts("edge").file(str(path))
    assert f.exists
    assert (f.mode, f.user) == (mode, owner)


def test_reader_identity_is_not_installed_on_the_edge(hosts: HostFactory) -> None:
    assert not hosts("edge").file(str(TLS / f"{READER}.key")).exists


def test_connector_unit_is_sandboxed(hosts: HostFactory) -> None:
    edge = hosts("edge")
    unit = "plantline-connector@line1.service"
    props = dict(
        line.split("=", 1)
        for line in edge.check_output(
            f"systemctl show {unit} -p User -p ProtectSystem -p NoNewPrivileges -p PrivateTmp -p Restart "
            "-p StateDirectory -p CapabilityBoundingSet -p RestrictAddressFamilies -p MainPID"
        ).splitlines()
    )
    assert props["User"] == "plantline"
    assert props["ProtectSystem"] == "strict"
    assert props["NoNewPrivileges"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["Restart"] == "always"
    assert props["StateDirectory"] == "plantline/line1"
    assert props["CapabilityBoundingSet"] == ""
    assert props["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    # The sandbox is in force, not only declared: the process sees / read-only, its state dir writable.
    mounts = edge.check_output(f"cat /proc/{props['MainPID']}/mountinfo").splitlines()
    root = next(m.split() for m in mounts if m.split()[4] == "/")
    assert root[5].startswith("ro"), root
    state = next(m.split() for m in mounts if m.split()[4] == "/var/lib/plantline/line1")
    assert state[5].startswith("rw"), state
    assert edge.run("systemd-analyze verify plantline-connector@line1.service").rc == 0


def test_firewall_blocks_what_is_not_allowlisted(hosts: HostFactory) -> None:
    core, probe = hosts("core"), hosts("probe")
    assert core.run(f"nc -z -w 2 {EDGE_IP} 8883").rc == 0  # the core network is allowlisted for MQTT/TLS
    assert probe.run(f"nc -z -w 2 {EDGE_IP} 8883").rc != 0
    assert probe.run(f"nc -z -w 2 {EDGE_IP} 22").rc != 0
    assert core.run(f"nc -z -w 2 {EDGE_IP} 9400").rc != 0  # metrics listen on loopback only


def test_broker_refuses_a_client_without_a_certificate(hosts: HostFactory) -> None:
    result = hosts("edge").run(
        f"mosquitto_pub -h 127.0.0.1 -p 8883 --cafile {TLS}/ca.crt -t spBv1.0/molecule/x -m x -q 1 -i nocert"
    )
    assert result.rc != 0


def test_config_checker_refuses_a_broken_candidate_and_accepts_the_live_one(hosts: HostFactory) -> None:
    edge = hosts("edge")
    checker = "/usr/local/libexec/plantline/mosquitto-check-config"
    assert edge.run(f"{checker} /etc/mosquitto/mosquitto.conf").rc == 0
    edge.check_output("sed 's/^certfile .*/certfile \\/nonexistent.crt/' /etc/mosquitto/mosquitto.conf > /tmp/bad.conf")
    bad = edge.run(f"{checker} /tmp/bad.conf")
    assert bad.rc == 1
    assert "nonexistent.crt" in bad.stderr
    edge.check_output("printf 'user x\\ntopic bogus a/b\\n' > /tmp/bad.acl")
    assert edge.run(f"{checker} --acl /tmp/bad.acl").rc == 1
    assert edge.service("mosquitto").is_running


def _sessions(messages: list[Received]) -> list[list[Received]]:
    """Split the edge node's messages into Sparkplug sessions (each starts with an NBIRTH)."""
    sessions: list[list[Received]] = []
    for message in messages:
        if message.kind is MessageType.NBIRTH:
            sessions.append([])
        if sessions and message.kind is not MessageType.NDEATH:
            sessions[-1].append(message)
    return sessions


def _connector_started_ms(edge: Host) -> int:
    out = edge.check_output("systemctl show --timestamp=unix -p ExecMainStartTimestamp plantline-connector@line1")
    return int(out.split("@", 1)[1]) * 1000


def test_samples_cross_the_bridge_and_rotate_certs_loses_none(hosts: HostFactory) -> None:
    edge = hosts("edge")
    serial_before = edge.check_output(f"openssl x509 -noout -serial -in {TLS}/molecule-line1-line1.crt")
    with _reader(f"verify-{os.environ['PLANTLINE_RUN_ID']}") as reader:
        reader.wait_for(lambda: len(reader.values_of(DEVICE, COUNTER)) >= 3, 120, "counter samples at the core")
        rotate = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                str(ANSIBLE_DIR / "playbooks" / "rotate-certs.yml"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert rotate.returncode == 0, rotate.stdout[-6000:] + rotate.stderr[-3000:]
        restarted_at = _connector_started_ms(edge)
        seen = len(reader.values_of(DEVICE, COUNTER))
        reader.wait_for(lambda: len(reader.values_of(DEVICE, COUNTER)) >= seen + 3, 120, "samples after rotation")
        time.sleep(2)
        messages = [m for m in reader.messages if m.kind is not MessageType.STATE]
        values: list[Value] = reader.values_of(DEVICE, COUNTER)
        assert not reader.errors
    # The certificates did change, and the services read the new ones.
    assert edge.check_output(f"openssl x509 -noout -serial -in {TLS}/molecule-line1-line1.crt") != serial_before
    # 1. No message the edge broker accepted went missing: within each session seq counts up by one.
    sessions = _sessions(messages)
    assert len(sessions) >= 2, "the rotation restarted the connector: a new session must follow"
    for session in sessions:
        seqs = [-1 if m.payload.seq is None else m.payload.seq for m in session]
        assert seqs[0] == 0
        assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(seqs)), seqs
    # 2. No sample went missing: every counter step is +1, except across the connector's restart, when
    #    the PLC was not sampled (the counter is cumulative, so the parts made meanwhile are counted).
    samples = sorted({(v.timestamp, int(str(v.value))) for v in values})
    jumps = [(a, b) for a, b in itertools.pairwise(samples) if b[1] - a[1] != 1]
    for (t1, c1), (t2, c2) in jumps:
        assert c2 > c1, f"counter went from {c1} to {c2}"
        assert t1 < restarted_at <= t2 + 1000, f"counter jumped {c1} -> {c2} at {t1}..{t2}, not across the restart"
    assert len(jumps) <= 1
    # 3. Nothing is left behind in the outbox.
    metrics = edge.check_output(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9400/metrics').read().decode())\""
    )
    assert "plantline_outbox_samples 0.0" in metrics
