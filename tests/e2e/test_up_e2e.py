"""`plantline up` end to end: simulators, mosquitto (mTLS), connectors; a clean stop; a resume; secured OPC UA.

A line with a secured OPC UA machine works out of the box: with `--simulate` the simulator gets a
certificate from the line's OPC UA CA; against node-opcua, a strict server PlantLine did not
write, a server certificate the line does not trust shows as refused on the terminal and in
`plantline status`, and the server with a certificate from the line's OPC UA CA is read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors.sparkplug import MessageType
from plantline.operator.local import ca_fingerprint, port_taken
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing.lines import DEMO, UpRun, alive, line_copy
from plantline_testing.node_opcua import NodeOpcUaServer, Variable
from plantline_testing.opcua_pki import foreign_ca
from plantline_testing.sparkplug_reader import SparkplugReader

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MACHINES = ("filler", "capper", "labeler")


def _start_up(line_file: Path, state: Path, metrics_base: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "plantline.operator.cli", "up", str(line_file), "--simulate"]
    argv += ["--state-dir", str(state), "--metrics-base-port", str(metrics_base)]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_broker(proc: subprocess.Popen[bytes], state: Path, port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"up exited {proc.returncode}:\n{log.read_text(errors='replace')}"
        if (state / "pids.json").exists() and port_taken("127.0.0.1", port):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the broker did not come up:\n{log.read_text(errors='replace')}")


def _bdseqs(reader: SparkplugReader) -> list[int]:
    out = []
    for message in reader.of(MessageType.NBIRTH):
        out += [int(m.value) for m in message.payload.metrics if m.name == "bdSeq"]  # type: ignore[call-overload]
    return out


def _stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"up did not stop within 30 s:\n{log.read_text(errors='replace')}")


def test_up_runs_the_demo_line_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    line_file, state, log = tmp_path / "line.yaml", tmp_path / "state", tmp_path / "up.log"
    line_copy(line_file)
    run = UpRun(line_file, state)
    port, metrics_base = run.port, run.metrics_base
    procs: list[subprocess.Popen[bytes]] = []
    children: set[int] = set()
    try:
        up = _start_up(line_file, state, metrics_base, log)
        procs.append(up)
        _wait_broker(up, state, port, log)
        with run.reader("up-e2e-1") as reader:
            # The demo line is one edge node (perLine): one NBIRTH, a DBIRTH per machine.
            reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 1, 90, "the line's NBIRTH")
            born = lambda: all(reader.of(MessageType.DBIRTH, m) for m in MACHINES)  # noqa: E731
            reader.wait_for(born, 90, "DBIRTHs of filler, capper and labeler")
            assert {m.payload.seq for m in reader.of(MessageType.NBIRTH)} == {0}
            oee = lambda: all(reader.values_of(m, "kpi/oee") for m in MACHINES)  # noqa: E731
            reader.wait_for(oee, 90, "DDATA with kpi/oee from all three")
            assert all(reader.of(MessageType.DDATA, m) for m in MACHINES)
            children = set(json.loads((state / "pids.json").read_text())["children"].values())
            assert len(children) == 8  # broker, PostgreSQL, historian, KPI API, 3 simulators, 1 connector
            first_bdseqs = _bdseqs(reader)
            fingerprint = ca_fingerprint(Authority(state / "ca"))
            assert _stop(up, log) == 0
            reader.wait_for(lambda: len(reader.of(MessageType.NDEATH)) >= 1, 10, "the line's NDEATH")
            assert not reader.errors
        assert not [pid for pid in children if alive(pid)]
        assert run.leftovers() == []
        assert not (state / "pids.json").exists()

        again = _start_up(line_file, state, metrics_base, log)
        procs.append(again)
        _wait_broker(again, state, port, log)
        with run.reader("up-e2e-2") as reader:
            reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 1, 90, "an NBIRTH after resume")
            assert min(_bdseqs(reader)) > max(first_bdseqs)
            assert ca_fingerprint(Authority(state / "ca")) == fingerprint
            children = set(json.loads((state / "pids.json").read_text())["children"].values())
            assert _stop(again, log) == 0
        assert not [pid for pid in children if alive(pid)]
        assert run.leftovers() == []
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if os.environ.get("PLANTLINE_E2E_LOGS"):
            print(log.read_text(errors="replace"))


def test_up_names_a_taken_broker_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from plantline.operator.cli import main

    line_file = tmp_path / "line.yaml"
    port = line_copy(line_file)["spec"]["broker"]["port"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        status = main(["up", str(line_file), "--simulate", "--state-dir", str(tmp_path / "state")])
    assert status == 1
    err = capsys.readouterr().err
    assert f"broker port 127.0.0.1:{port}" in err
    assert "ports already in use" in err
    assert (tmp_path / "state" / "ca" / "pki.db").exists()
    assert (tmp_path / "state" / "tls" / "site1-line1-broker.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def test_simulator_command_lines_follow_the_endpoints() -> None:
    from plantline.operator.api import parse_plantline
    from plantline.operator.local import simulator_argv

    line = parse_plantline(yaml.safe_load(DEMO.read_text()))
    argv = {m.id: simulator_argv(m, seed=1)[3:] for m in line.spec.machines}
    assert argv["filler"][:4] == ["--host", "127.0.0.1", "--port", "4840"]
    assert argv["filler"][argv["filler"].index("--machine") + 1] == "Filler"
    assert argv["capper"][3] == "1102"
    assert argv["capper"][-2:] == ["--db", "10"]
    assert argv["labeler"][3] == "44818"
    assert argv["labeler"][argv["labeler"].index("--machine") + 1] == "Labeler"
    assert "--security" not in argv["filler"]

    data = yaml.safe_load(DEMO.read_text())
    data["spec"]["machines"][0]["opcua"] = SECURED
    filler = parse_plantline(data).spec.machines[0]
    secured = simulator_argv(filler, seed=1, tls_dir=Path("/tls"))
    assert secured[secured.index("--security") :][:7] == [
        "--security",
        "--certificate",
        "/tls/filler-simulator.crt",
        "--private-key",
        "/tls/filler-simulator.key",
        "--trust-dir",
        "/tls/simulator-trust",
    ]


def test_missing_mosquitto_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from plantline.operator import local

    monkeypatch.setattr("shutil.which", lambda *_a, **_k: None)
    with pytest.raises(local.UpError, match="sudo apt-get install mosquitto"):
        local.find_mosquitto()


def test_up_runs_mosquitto_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from plantline.operator.cli import main

    line_file = tmp_path / "line.yaml"
    data = line_copy(line_file)
    data["spec"]["broker"]["kind"] = "emqx"
    line_file.write_text(yaml.safe_dump(data))
    assert main(["up", str(line_file), "--state-dir", str(tmp_path / "state")]) == 1
    assert "spec.broker.kind is 'emqx'" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before anything is created


def test_a_revoked_identity_is_not_enrolled_again(tmp_path: Path) -> None:
    from plantline.operator.api import parse_plantline
    from plantline.operator.local import ensure_certificates
    from plantline.operator.render import render_certificate_requests

    line = parse_plantline(yaml.safe_load(DEMO.read_text()))
    requests = render_certificate_requests(line)
    authority = Authority.init(tmp_path / "ca", name="test CA", passphrase=None, encrypt=False)
    assert ensure_certificates(authority, requests, tmp_path / "tls") == []
    connector = requests[0].identity
    revoked_serial = authority.certificates(identity=connector, status="active")[0].serial
    authority.revoke(connector, reason="key-compromise")
    old_files = (tmp_path / "tls" / f"{connector}.crt").read_bytes()

    problems = ensure_certificates(authority, requests, tmp_path / "tls")  # what a second `up` does
    assert problems == [f"{connector}: certificate revoked; not issuing a new one (plantline-pki cert issue can)"]
    assert authority.certificates(identity=connector, status="active") == []
    assert (tmp_path / "tls" / f"{connector}.crt").read_bytes() == old_files  # the broker refuses these
    others = [r.identity for r in requests if r.identity != connector and r.profile == "mqtt-client"]
    assert all(authority.certificates(identity=i, status="active") for i in others)
    assert _crl_names(tmp_path, revoked_serial)  # and the published CRL names it


def _crl_names(tmp_path: Path, serial_hex: str) -> bool:
    from cryptography import x509

    crl = x509.load_pem_x509_crl((tmp_path / "tls" / "crl.pem").read_bytes())
    return crl.get_revoked_certificate_by_serial_number(int(serial_hex, 16)) is not None


# -- a secured OPC UA machine -------------------------------------------------------------------------

SECURED = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}
SERVER_URI = "urn:plantline:test:filler-plc"


def _row(status: dict[str, Any], machine: str) -> dict[str, Any]:
    row: dict[str, Any] = next(m for m in status["machines"] if m["machine"] == machine)
    return row


def _reading(status: dict[str, Any], machine: str = "filler") -> bool:
    row = _row(status, machine)
    return bool(row["plc"] == "yes" and row["mqtt"] == "connected" and (row["samples_per_s"] or 0) > 0)


@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[list[UpRun]]:
    """Runs to bring down (and kill what is left of them) at the end."""
    runs: list[UpRun] = []
    yield runs
    for run in runs:
        run.finish()


def test_a_secured_opcua_line_runs_out_of_the_box_with_simulate(tmp_path: Path, stopped: list[UpRun]) -> None:
    line_file = tmp_path / "line.yaml"
    line_copy(line_file, machines=("filler",), machine_fields={"filler": {"opcua": SECURED}})
    run = UpRun(line_file, tmp_path / "state")
    stopped.append(run)
    run.up_detached()
    status = run.wait_status(_reading, 120, "the secured filler read and published")
    assert status["problems"] == []
    assert (run.state_dir / "ca-opcua" / "pki.db").exists()
    with run.reader("secured-sim") as reader:
        reader.wait_for(lambda: bool(reader.of(MessageType.DDATA, "filler")), 60, "DDATA from the filler")
    config = yaml.safe_load((run.state_dir / "connectors" / "line1.yaml").read_text())
    opcua = config["devices"][0]["opcua"]
    assert (opcua["security_policy"], opcua["application_uri"]) == (
        "Basic256Sha256",
        "urn:plantline:site1:line1:filler",
    )
    assert opcua["trusted_ca_file"].endswith("/tls/opcua-ca.pem")
    assert opcua.get("accept_unknown_server") is False


def _opcua_server(directory: Path, port: int, issuer: Authority, identity: str, run: UpRun) -> NodeOpcUaServer:
    """node-opcua trusting the line's OPC UA CA (and the line's CA above it), with `identity`'s certificate."""
    root, opcua = _authorities(run)
    server = NodeOpcUaServer(
        directory,
        port,
        certificate=issuer.export(identity, CertFormat.FULLCHAIN),
        private_key=issuer.export(identity, CertFormat.KEY),
        application_uri=SERVER_URI,
        variables=[
            Variable("Filler.run", "Boolean", True),
            Variable("Filler.count", "UInt32", 0, step=1),
            Variable("Filler.temperature", "Double", 61.5),
        ],
    )
    server.trust((run.state_dir / "ca-opcua" / "ca.crt").read_bytes(), opcua.crl_pem())
    server.trust((run.state_dir / "ca" / "ca.crt").read_bytes(), root.crl_pem(), issuers=True)
    return server


def _authorities(run: UpRun) -> tuple[Authority, Authority]:
    passphrase = (run.state_dir / "pki-passphrase").read_bytes().strip()
    root = Authority(run.state_dir / "ca", passphrase=lambda: passphrase)
    return root, Authority(run.state_dir / "ca-opcua", passphrase=lambda: passphrase)


def test_up_connects_a_secured_machine_to_node_opcua_and_says_why_it_refuses_a_foreign_one(
    tmp_path: Path, stopped: list[UpRun]
) -> None:
    tags = [
        {"signal": "state.run", "address": "ns=1;s=Filler.run", "datatype": "bool"},
        {"signal": "counter.total", "address": "ns=1;s=Filler.count", "datatype": "uint32"},
        {"signal": "process.temperature", "address": "ns=1;s=Filler.temperature", "datatype": "double"},
    ]
    line_file = tmp_path / "line.yaml"
    data = line_copy(line_file, machines=("filler",), machine_fields={"filler": {"opcua": SECURED, "tags": tags}})
    port = int(data["spec"]["machines"][0]["endpoint"].split(":")[2].split("/")[0])
    run = UpRun(line_file, tmp_path / "state", simulate=False)
    stopped.append(run)
    terminal = tmp_path / "up.log"
    run.up_attached(terminal)
    # From the start: the births come once, when the connector reaches the broker; the machine's
    # DBIRTH among them (without values), and none again when the PLC connects later.
    with run.reader("secured-ua") as reader:
        # Published as not connected from the start, before the connector ever reached the PLC.
        run.wait_status(lambda s: _row(s, "filler")["plc"] == "no", 60, "the filler shown as not connected")

        sans = [f"uri:{SERVER_URI}", "ip:127.0.0.1", "dns:localhost", f"dns:{socket.gethostname()}"]
        foreign = foreign_ca(tmp_path / "foreign")
        foreign.issue("foreign-plc", profile="opcua-application", sans=sans)
        with _opcua_server(tmp_path / "foreign-plc", port, foreign, "foreign-plc", run):
            status = run.wait_status(lambda s: _row(s, "filler")["plc"] == "refused", 60, "the foreign PLC refused")
            # While the server is there (once it is gone, the PLC is merely down again).
            table = run.cli("status", "--state-dir", str(run.state_dir)).stdout
        assert _row(status, "filler")["plc_refused"] == {"by": "connector", "code": "BadCertificateUntrusted"}
        (problem,) = status["problems"]
        assert problem.startswith(
            "filler: the connector refuses the PLC (its certificate, the trust files or the security"
        )
        assert "refused" in table.splitlines()[2].split()
        assert f"problem: {problem}" in table
        assert f"plantline up: problem: {problem}" in terminal.read_text(errors="replace")  # said on up's terminal

        _, opcua = _authorities(run)
        opcua.issue("filler-plc", profile="opcua-application", sans=sans)
        with _opcua_server(tmp_path / "line-plc", port, opcua, "filler-plc", run):
            status = run.wait_status(_reading, 60, "the filler read from node-opcua")
            counters = lambda: len(reader.values_of("filler", "counter.total")) >= 3  # noqa: E731
            reader.wait_for(counters, 60, "counters from node-opcua")
    assert status["problems"] == []
    assert _row(status, "filler")["plc_refused"] is None
