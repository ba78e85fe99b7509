"""`plantline up` with a primary host: no births until the host's certificate says STATE online.

The line is a copy of the demo with `primaryHostId: scada`. `up` issues the host certificate and
prints a ready `mosquitto_pub` command that publishes the host's STATE; the test runs that very
command, as a user would paste it, and then the NBIRTH and a DBIRTH per machine arrive.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from plantline.connectors.sparkplug import MessageType
from plantline_testing.lines import UpRun, line_copy

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MACHINES = ("filler", "capper", "labeler")
HOST_ID = "scada"
QUIET_S = 5.0  # how long the connected line must stay silent without the host


def _printed(stdout: str, label: str) -> str:
    """Return what `up` printed after `label: ` (the first such line)."""
    lines = [line.removeprefix(f"{label}: ") for line in stdout.splitlines() if line.startswith(f"{label}: ")]
    assert lines, f"`up` printed no {label!r} line:\n{stdout}"
    return lines[0]


def _connected(status: dict[str, object]) -> bool:
    machines = status["machines"]
    assert isinstance(machines, list)
    return all(m["mqtt"] == "connected" and m["plc_connected"] for m in machines)


def test_births_wait_for_the_primary_host_state(tmp_path: Path) -> None:
    line_file, state = tmp_path / "line.yaml", tmp_path / "state"
    data = line_copy(line_file)
    data["spec"]["primaryHostId"] = HOST_ID
    line_file.write_text(yaml.safe_dump(data, sort_keys=False))
    run = UpRun(line_file, state)
    try:
        stdout = run.up_detached().stdout
        host = run.identity("host")
        assert _printed(stdout, "host certificate") == str((run.tls / f"{host}.crt").resolve())
        assert (run.tls / f"{host}.key").stat().st_mode & 0o777 == 0o600
        online = _printed(stdout, "host online")
        assert f"-r -t spBv1.0/STATE/{HOST_ID} " in online
        with run.reader("host-e2e") as reader:
            run.wait_status(_connected, 90, "every machine's PLC and the connector's MQTT session connected")
            time.sleep(QUIET_S)
            assert reader.messages == [], "the line published before its primary host was online"
            published = subprocess.run(["bash", "-c", online], capture_output=True, text=True, timeout=30, check=False)
            assert published.returncode == 0, published.stderr
            reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 1, 30, "the NBIRTH once the host is online")
            born = lambda: all(reader.of(MessageType.DBIRTH, m) for m in MACHINES)  # noqa: E731
            reader.wait_for(born, 30, "DBIRTHs of filler, capper and labeler")
            assert reader.messages[0].kind is MessageType.NBIRTH
            assert not reader.errors
        done = run.down()
        assert done.returncode == 0, done.stderr
        assert run.leftovers() == []
    finally:
        run.kill_all()
