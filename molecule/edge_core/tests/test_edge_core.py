"""Verify the edge node end to end, then the node's lifecycle: services, files, sandbox, firewall,
zero loss across rotate_certs, then onboard_machine, upgrade and reset, in that order.

The Sparkplug stream is read on the host from the core broker (its port is published on
127.0.0.1), with the reader certificate the scenario's CA issued, by the repository's own
Sparkplug reader. The line has one connector per machine (prepare's copy of the shared line):
`capper` from the start, `labeler` once the onboarding test has added it. The lifecycle tests
run the playbooks as an OT engineer does, on molecule's inventory, and build on each other: they
run last, in the order of this module (pytest keeps it), and reset leaves the node without PlantLine.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from testinfra.host import Host

from plantline.connectors.sparkplug import MessageType, parse_topic
from plantline_testing.sparkplug_reader import Received, SparkplugReader, Value

HostFactory = Callable[[str], Host]

EDGE_IP = "10.231.12.10"
GROUP = "molecule"
CAPPER = "capper"  # the machine of the line, its device id and its connector group (perMachine)
LABELER = "labeler"  # the machine the onboarding test adds
LABELER_PLC_PORT = 1103  # its simulated PLC, started at converge (molecule.yml: plantline_molecule_plcs)
COUNTER = "counter.total"
READER = "molecule-line1-reader"
TLS = Path("/etc/plantline/tls")
VENV = Path("/opt/plantline/venv")
WORKDIR = Path(os.environ["PLANTLINE_MOLECULE_WORKDIR"])
LINE_FILE = WORKDIR / "line.yaml"  # the scenario's copy of the line (molecule.yml: plantline_line_file)
RUN_ID = os.environ["PLANTLINE_RUN_ID"]


def _edge_node(group: str) -> str:
    """Return the Sparkplug edge node id of a connector group (perMachine: <line>-<group>)."""
    return f"line1-{group}"


def _unit(group: str) -> str:
    return f"plantline-connector@{group}.service"


def _core_port() -> int:
    name = f"pl-edge-core-core-{RUN_ID}"
    out = subprocess.run(["podman", "port", name, "8883/tcp"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[0].rsplit(":", 1)[1])


class _Reader(SparkplugReader):
    """The repository's Sparkplug reader, which also keeps each edge node's messages apart."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.by_node: dict[str, list[Received]] = {}

    def __enter__(self) -> _Reader:
        super().__enter__()
        return self

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        kept = len(self.messages)
        super()._on_message(_c, _u, message)
        if len(self.messages) > kept:  # paho calls back from one thread: this is that message
            node = parse_topic(message.topic).edge_node_id
            self.by_node.setdefault(node or "", []).append(self.messages[-1])

    def of_node(self, group: str, kind: MessageType | None = None) -> list[Received]:
        """Return what a connector group's edge node published (of one kind), in arrival order.

        Commands to it (the reader's own rebirth requests) are left out.
        """
        return [
            m
            for m in list(self.by_node.get(_edge_node(group), []))
            if m.kind not in (MessageType.NCMD, MessageType.DCMD) and (kind is None or m.kind is kind)
        ]

    def counters(self, group: str) -> int:
        return len(self.values_of(group, COUNTER))


def _reader(test: str) -> _Reader:
    bundle = WORKDIR / READER
    return _Reader(
        port=_core_port(),
        group_id=GROUP,
        ca=bundle / "ca.crt",
        cert=bundle / f"{READER}.crt",
        key=bundle / f"{READER}.key",
        client_id=f"verify-{test}-{RUN_ID}",
    )


def _playbook(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Return the finished run of the installed collection's playbook NAME, as an OT engineer runs it.

    NAME is a file of playbooks/; it runs as `plantline.edge.<stem>` from the artifact run.sh built and
    installed, so the lifecycle playbooks are proven as released, not only from the checkout.

    Its scratch files on the controller (the connectors role's wheelhouse archive) go to the run's
    work directory, which run.sh removes.
    """
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
            f"plantline.edge.{Path(name).stem}",
            *extra,
        ],
        env={**os.environ, "TMPDIR": str(WORKDIR)},
        capture_output=True,
        text=True,
        check=False,
    )


def _run_playbook(name: str, *extra: str) -> dict[str, int]:
    """Run playbooks/NAME, which must succeed; return how many tasks changed, per host (its PLAY RECAP)."""
    result = _playbook(name, *extra)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return {m[1]: int(m[2]) for m in re.finditer(r"(?m)^(\S+)\s+: ok=\d+\s+changed=(\d+)", result.stdout)}


def _show(edge: Host, unit: str, *properties: str) -> dict[str, str]:
    """Return systemd properties of a unit (timestamps as microseconds of the monotonic clock, or unix seconds)."""
    flags = " ".join(f"-p {p}" for p in properties)
    out = edge.check_output(f"systemctl show --timestamp=unix {flags} {unit}")
    return dict(line.split("=", 1) for line in out.splitlines())


def test_services_run_and_start_at_boot(hosts: HostFactory) -> None:
    edge = hosts("edge")
    for unit in ("nftables", "mosquitto", _unit(CAPPER), "ssh"):
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
        (TLS / "molecule-line1-capper.key", 0o600, "plantline"),
        (Path("/etc/mosquitto/mosquitto.conf"), 0o640, "root"),
        (Path("/var/lib/plantline/broker/acl"), 0o640, "root"),
        (Path("/etc/plantline/connectors/capper.yaml"), 0o640, "root"),
        (Path("/var/lib/plantline/capper"), 0o700, "plantline"),
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
    unit = _unit(CAPPER)
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
    assert props["StateDirectory"] == "plantline/capper"
    assert props["CapabilityBoundingSet"] == ""
    assert props["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    # The sandbox is in force, not only declared: the process sees / read-only, its state dir writable.
    mounts = edge.check_output(f"cat /proc/{props['MainPID']}/mountinfo").splitlines()
    root = next(m.split() for m in mounts if m.split()[4] == "/")
    assert root[5].startswith("ro"), root
    state = next(m.split() for m in mounts if m.split()[4] == "/var/lib/plantline/capper")
    assert state[5].startswith("rw"), state
    assert edge.run(f"systemd-analyze verify {unit}").rc == 0


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
    """Split an edge node's messages into Sparkplug sessions (each starts with an NBIRTH)."""
    sessions: list[list[Received]] = []
    for message in messages:
        if message.kind is MessageType.NBIRTH:
            sessions.append([])
        if sessions and message.kind is not MessageType.NDEATH:
            sessions[-1].append(message)
    return sessions


def _connector_started_ms(edge: Host, group: str) -> int:
    """Return when a connector's process started, in unix milliseconds.

    To the microsecond: `--timestamp=unix` gives whole seconds, which can put a restart up to a
    second before the last sample the old process published.
    """
    out = edge.check_output(f"systemctl show --timestamp=us+utc -p ExecMainStartTimestamp {_unit(group)}")
    started = datetime.strptime(out.split("=", 1)[1].strip(), "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)
    return int(started.timestamp() * 1000)


def _assert_nothing_lost(messages: list[Received], values: list[Value], restarted_at_ms: int | None) -> None:
    """Assert that one edge node lost no message and its device no sample.

    `restarted_at_ms`: when its connector restarted (the PLC was not sampled meanwhile), else None.
    """
    # 1. No message the edge broker accepted went missing: within each session seq counts up by one.
    #    A QoS 1 message in flight when a broker restarts may arrive twice (at least once): it counts once.
    seen: set[tuple[MessageType, str | None, int | None, int | None]] = set()
    unique = []
    for m in messages:
        key = (m.kind, m.device_id, m.payload.seq, m.payload.timestamp)
        if key not in seen:
            seen.add(key)
            unique.append(m)
    sessions = _sessions(unique)
    assert sessions, "no session seen at the core"
    if restarted_at_ms is not None:
        assert len(sessions) >= 2, "the connector restarted: a new session must follow"
    for session in sessions:
        seqs = [-1 if m.payload.seq is None else m.payload.seq for m in session]
        assert seqs[0] == 0
        assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(seqs)), seqs
    # 2. No sample went missing: every counter step is +1, except across the connector's restart, when
    #    the PLC was not sampled (the counter is cumulative, so the parts made meanwhile are counted),
    #    or was not stepped at all when the restart took less than a cycle (the new process publishes
    #    its first reading, the value the old one published last).
    samples = sorted({(v.timestamp, int(str(v.value))) for v in values})
    jumps = [(a, b) for a, b in itertools.pairwise(samples) if b[1] - a[1] != 1]
    if restarted_at_ms is None:
        assert not jumps, f"counter jumps while the connector kept running: {jumps}"
    for (t1, c1), (t2, c2) in jumps:
        assert c2 >= c1, f"counter went from {c1} to {c2}"
        assert restarted_at_ms is not None
        assert t1 < restarted_at_ms <= t2 + 1000, f"counter jumped {c1} -> {c2} at {t1}..{t2}, not across the restart"
    assert len(jumps) <= 1


def _assert_outbox_empty(edge: Host, metrics_port: int, within_s: float = 30.0) -> None:
    """Assert that a connector's outbox holds nothing from before, within `within_s` (its /metrics).

    A live connector's outbox holds the batch on its way (stored, not yet acknowledged) at some
    instants, and the gauges are a snapshot taken once a second, which can keep step with the PLC's
    sampling: so "nothing left behind" is an outbox that reads empty, or whose oldest sample is
    younger than a second. A sample left behind would only grow older.
    """
    fetch = f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{metrics_port}/metrics').read().decode())"
    readings: list[dict[str, float]] = []
    deadline = time.monotonic() + within_s
    while True:
        metrics = edge.check_output(f'python3 -c "{fetch}"')
        outbox = {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in metrics.splitlines())
            if name in ("plantline_outbox_samples", "plantline_outbox_oldest_age_seconds")
        }
        if outbox.get("plantline_outbox_samples") == 0 or outbox.get("plantline_outbox_oldest_age_seconds", 1e9) < 1:
            return
        readings.append(outbox)
        assert time.monotonic() < deadline, f"the outbox kept samples from before: {readings}"
        time.sleep(1.0)


def test_samples_cross_the_bridge_and_rotate_certs_loses_none(hosts: HostFactory) -> None:
    edge = hosts("edge")
    serial_before = edge.check_output(f"openssl x509 -noout -serial -in {TLS}/molecule-line1-capper.crt")
    with _reader("rotate") as reader:
        reader.wait_for(lambda: reader.counters(CAPPER) >= 3, 120, "counter samples at the core")
        _run_playbook("rotate_certs.yml")
        restarted_at = _connector_started_ms(edge, CAPPER)
        seen = reader.counters(CAPPER)
        reader.wait_for(lambda: reader.counters(CAPPER) >= seen + 3, 120, "samples after rotation")
        time.sleep(2)
        messages = reader.of_node(CAPPER)
        values: list[Value] = reader.values_of(CAPPER, COUNTER)
        assert not reader.errors
    # The certificates did change, and the services read the new ones.
    assert edge.check_output(f"openssl x509 -noout -serial -in {TLS}/molecule-line1-capper.crt") != serial_before
    _assert_nothing_lost(messages, values, restarted_at)
    _assert_outbox_empty(edge, 9400)


# -- the lifecycle playbooks, in order: onboard_machine, upgrade, reset --------------------------------


def _add_machine(line_file: Path, machine_id: str, plc_port: int) -> None:
    """Add a machine to the PlantLine file, as an OT engineer does before onboarding it.

    The labeler's simulated PLC is the same model as the capper's (the same DB10 layout), so the
    new machine reads the same tags from another endpoint.
    """
    line = yaml.safe_load(line_file.read_text())
    machines = line["spec"]["machines"]
    template = next(m for m in machines if m["id"] == CAPPER)
    machines.append(
        {**copy.deepcopy(template), "id": machine_id, "endpoint": f"s7://127.0.0.1:{plc_port}?rack=0&slot=1"}
    )
    line_file.write_text(yaml.safe_dump(line, sort_keys=False))


def _bdseqs(births: list[Received]) -> set[int]:
    return {int(str(m.value)) for birth in births for m in birth.payload.metrics if m.name == "bdSeq"}


def test_onboard_machine_starts_the_new_connector_and_leaves_the_others_running(hosts: HostFactory) -> None:
    edge = hosts("edge")
    new = f"molecule-line1-{LABELER}"
    assert edge.service(f"plantline-plc-sim-{LABELER}").is_running  # the machine is on the network first
    assert not edge.file(f"/etc/plantline/connectors/{LABELER}.yaml").exists
    capper_before = _show(edge, _unit(CAPPER), "MainPID", "ExecMainStartTimestampMonotonic")
    _add_machine(LINE_FILE, LABELER, LABELER_PLC_PORT)
    with _reader("onboard") as reader:
        reader.wait_for(lambda: reader.counters(CAPPER) >= 3, 120, "capper samples at the core")
        _run_playbook("onboard_machine.yml", "-e", f"onboard_machine={LABELER}")
        reader.wait_for(lambda: reader.counters(LABELER) >= 3, 120, "labeler samples at the core")
        seen = reader.counters(CAPPER)
        reader.wait_for(lambda: reader.counters(CAPPER) >= seen + 3, 120, "capper samples after onboarding")
        time.sleep(2)
        capper_messages, labeler_messages = reader.of_node(CAPPER), reader.of_node(LABELER)
        capper_values = reader.values_of(CAPPER, COUNTER)
        assert not reader.errors
    # The new connector runs, starts at boot, and its files are as the roles promise.
    assert edge.service(_unit(LABELER)).is_running
    assert edge.service(_unit(LABELER)).is_enabled
    for path, mode, owner, group in [
        (f"/etc/plantline/connectors/{LABELER}.yaml", 0o640, "root", "plantline"),
        (f"/var/lib/plantline/{LABELER}", 0o700, "plantline", "plantline"),
        (f"{TLS}/{new}.crt", 0o644, "root", "root"),
        (f"{TLS}/{new}.key", 0o600, "plantline", "plantline"),
    ]:
        f = edge.file(path)
        assert (f.exists, f.mode, f.user, f.group) == (True, mode, owner, group), path
    # Its certificate was issued now, by the line's CA, for its identity, and matches its key.
    assert f"CN = {new}" in edge.check_output(f"openssl x509 -noout -subject -nameopt oneline -in {TLS}/{new}.crt")
    assert edge.run(f"openssl verify -CAfile {TLS}/ca.crt {TLS}/{new}.crt").rc == 0
    pubkeys = {
        edge.check_output(c)
        for c in (f"openssl x509 -noout -pubkey -in {TLS}/{new}.crt", f"openssl pkey -pubout -in {TLS}/{new}.key")
    }
    assert len(pubkeys) == 1
    # The broker's ACL grants it its own edge node's topics, and the broker enforces what it says:
    # the births and data below crossed it and the bridge.
    acl = edge.file("/var/lib/plantline/broker/acl").content_string
    grants = acl.split(f"user {new}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert f"topic write spBv1.0/{GROUP}/DDATA/{_edge_node(LABELER)}/{LABELER}" in grants
    assert f"topic write spBv1.0/{GROUP}/NBIRTH/{_edge_node(LABELER)}" in grants
    # Its births and data reached the core; its first session is the one the core saw (bdSeq 0: the
    # broker had read the new ACL before the connector connected, and the connector started once).
    assert labeler_messages[0].kind is MessageType.NBIRTH, [m.kind for m in labeler_messages[:5]]
    assert reader.of(MessageType.DBIRTH, LABELER)
    assert _bdseqs(reader.of_node(LABELER, MessageType.NBIRTH)) == {0}
    assert not reader.of_node(LABELER, MessageType.NDEATH)
    # The capper's connector was not restarted, and lost nothing while the broker took the new bridge topics.
    assert _show(edge, _unit(CAPPER), "MainPID", "ExecMainStartTimestampMonotonic") == capper_before
    _assert_nothing_lost(capper_messages, capper_values, None)
    _assert_nothing_lost(labeler_messages, reader.values_of(LABELER, COUNTER), None)


def _restamped_wheel(wheel: Path, out_dir: Path, version: str) -> Path:
    """Write `wheel` again as version `version` (its dist-info renamed, METADATA and RECORD rewritten)."""
    name, old = wheel.name.split("-")[:2]
    old_info, new_info = f"{name}-{old}.dist-info/", f"{name}-{version}.dist-info/"
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as source:
        for item in source.infolist():
            data = source.read(item)
            path = item.filename.replace(old_info, new_info)
            if path == f"{new_info}METADATA":
                data = data.replace(f"\nVersion: {old}\n".encode(), f"\nVersion: {version}\n".encode())
            files[path] = data
    record = f"{new_info}RECORD"
    lines = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
        if path != record
    ]
    files[record] = "".join(f"{line}\n" for line in [*lines, f"{record},,"]).encode()
    out = out_dir / wheel.name.replace(f"-{old}-", f"-{version}-")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for path, data in files.items():
            target.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out


def _next_release_wheelhouse(wheelhouse: Path, out_dir: Path) -> str:
    """Stage a wheelhouse holding the next plantline-connectors release (a .post1 of this build); return its version."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    (wheel,) = wheelhouse.glob("plantline_connectors-*.whl")
    version = wheel.name.split("-")[1] + ".post1"
    _restamped_wheel(wheel, out_dir, version)
    for other in wheelhouse.glob("*.whl"):
        if other != wheel:
            shutil.copy2(other, out_dir)
    return version


def _installed_version(edge: Host) -> str:
    script = "import importlib.metadata as m; print(m.version('plantline-connectors'))"
    return str(edge.check_output(f'{VENV}/bin/python -c "{script}"'))


def test_upgrade_installs_the_new_release_and_restarts_connectors_one_at_a_time(hosts: HostFactory) -> None:
    edge = hosts("edge")
    groups = (CAPPER, LABELER)
    wheelhouse = WORKDIR / "wheelhouse-next"
    version = _next_release_wheelhouse(Path(os.environ["PLANTLINE_WHEELHOUSE"]), wheelhouse)
    assert _installed_version(edge) != version
    pids_before = {g: _show(edge, _unit(g), "MainPID")["MainPID"] for g in groups}
    with _reader("upgrade") as reader:
        reader.wait_for(lambda: all(reader.counters(g) >= 3 for g in groups), 120, "samples of both machines")
        _run_playbook("upgrade.yml", "-e", f"connectors_wheelhouse={wheelhouse}")
        restarted_at = {g: _connector_started_ms(edge, g) for g in groups}
        seen = {g: reader.counters(g) for g in groups}
        reader.wait_for(
            lambda: all(reader.counters(g) >= seen[g] + 3 for g in groups), 120, "samples after the upgrade"
        )
        time.sleep(2)
        messages = {g: reader.of_node(g) for g in groups}
        values = {g: reader.values_of(g, COUNTER) for g in groups}
        assert not reader.errors
    # The new release is what the virtualenv runs, from the wheelhouse (nothing else to install from).
    assert _installed_version(edge) == version
    assert edge.run(f"{VENV}/bin/pip check --disable-pip-version-check").rc == 0
    # Every connector was restarted onto it, one at a time: the next one stopped only once the
    # previous one was running again (the playbook also waits for its /readyz in between).
    props = {
        g: _show(
            edge, _unit(g), "MainPID", "ActiveState", "ActiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"
        )
        for g in groups
    }
    for g in groups:
        assert props[g]["ActiveState"] == "active", g
        assert props[g]["MainPID"] != pids_before[g], f"{g} was not restarted"
    first, second = sorted(groups, key=lambda g: int(props[g]["ActiveExitTimestampMonotonic"]))
    assert int(props[first]["ActiveEnterTimestampMonotonic"]) < int(props[second]["ActiveExitTimestampMonotonic"])
    # No sample was lost: they waited in the outboxes, which are empty again.
    for g in groups:
        _assert_nothing_lost(messages[g], values[g], restarted_at[g])
    for port in (9400, 9401):  # metrics ports in group order (capper, labeler)
        _assert_outbox_empty(edge, port)


def test_reset_takes_plantline_off_the_node_and_a_second_run_changes_nothing(hosts: HostFactory) -> None:
    edge = hosts("edge")
    groups = (CAPPER, LABELER)
    # Without the confirmation nothing happens.
    refused = _playbook("reset.yml")
    assert refused.returncode != 0
    assert "pass -e reset_confirm=true" in refused.stdout + refused.stderr
    assert all(edge.service(_unit(g)).is_running for g in groups)
    with _reader("reset") as reader:
        reader.wait_for(lambda: all(reader.counters(g) >= 1 for g in groups), 120, "samples of both machines")
        changed = _run_playbook("reset.yml", "-e", "reset_confirm=true")
        # Each connector's NDEATH reached the core (the playbook stops the connectors before the broker).
        reader.wait_for(
            lambda: all(reader.of_node(g, MessageType.NDEATH) for g in groups), 30, "each connector's NDEATH"
        )
    assert changed[f"pl-edge-core-edge-{RUN_ID}"] > 0
    # The connectors are gone: stopped, disabled, their template unit removed and forgotten by systemd.
    for listing in ("list-units --all --plain", "list-unit-files"):
        assert edge.run(f"systemctl {listing} --no-legend 'plantline-connector@*'").stdout.strip() == "", listing
    assert edge.run("pgrep -u plantline").rc == 1
    # The broker is stopped, disabled, and nothing listens for MQTT any more.
    assert not edge.service("mosquitto").is_running
    assert not edge.service("mosquitto").is_enabled
    assert not edge.socket("tcp://0.0.0.0:8883").is_listening
    # PlantLine's files are removed: configurations, TLS files and keys, the virtualenv, the broker's
    # configuration, ACL, persistence and checker.
    for path in (
        "/etc/systemd/system/plantline-connector@.service",
        "/etc/plantline",
        "/opt/plantline",
        "/usr/local/libexec/plantline",
        "/etc/mosquitto/mosquitto.conf",
        "/var/lib/plantline/broker",
    ):
        assert not edge.file(path).exists, path
    # What was not delivered yet is kept (no reset_purge_state): the outboxes and bdSeq, with their owner.
    for g in groups:
        for kept in (f"/var/lib/plantline/{g}/outbox", f"/var/lib/plantline/{g}/state"):
            f = edge.file(kept)
            assert (f.is_directory, f.user) == (True, "plantline"), kept
    # The hardening stays: the firewall's table is loaded, sshd runs with its drop-in.
    assert edge.service("nftables").is_running
    assert edge.run("nft list table inet plantline_edge").rc == 0
    assert edge.service("ssh").is_running
    assert edge.file("/etc/ssh/sshd_config.d/50-plantline-hardening.conf").exists
    # A second run finds nothing left to do.
    assert _run_playbook("reset.yml", "-e", "reset_confirm=true")[f"pl-edge-core-edge-{RUN_ID}"] == 0
