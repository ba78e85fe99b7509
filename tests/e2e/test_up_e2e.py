"""`plantline up --simulate` end to end: simulators, mosquitto (mTLS), connectors; a clean stop; a resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from plantline.connectors.sparkplug import MessageType
from plantline.operator.local import ca_fingerprint, port_taken
from plantline.pki.authority import Authority
from plantline_testing.lines import DEMO, UpRun, alive, line_copy
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
    ensure_certificates(authority, requests, tmp_path / "tls")
    connector = requests[0].identity
    revoked_serial = authority.certificates(identity=connector, status="active")[0].serial
    authority.revoke(connector, reason="key-compromise")
    old_files = (tmp_path / "tls" / f"{connector}.crt").read_bytes()

    ensure_certificates(authority, requests, tmp_path / "tls")  # what a second `up` does
    assert authority.certificates(identity=connector, status="active") == []
    assert (tmp_path / "tls" / f"{connector}.crt").read_bytes() == old_files  # the broker refuses these
    others = [r.identity for r in requests if r.identity != connector and r.profile == "mqtt-client"]
    assert all(authority.certificates(identity=i, status="active") for i in others)
    assert _crl_names(tmp_path, revoked_serial)  # and the published CRL names it


def _crl_names(tmp_path: Path, serial_hex: str) -> bool:
    from cryptography import x509

    crl = x509.load_pem_x509_crl((tmp_path / "tls" / "crl.pem").read_bytes())
    return crl.get_revoked_certificate_by_serial_number(int(serial_hex, 16)) is not None
