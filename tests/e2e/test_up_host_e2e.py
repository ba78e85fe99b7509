"""`plantline up` with a primary host: the historian is it, and the edge births only while its STATE is online.

The line is a copy of the demo with `primaryHostId: scada`. `up` issues the host certificate,
prints how to use it (a ready `mosquitto_pub` for STATE), and runs the historian with that identity
as the primary host: its STATE online brings the births; killed, its Will (STATE offline) stops
the edge node's data until `up` has restarted it and it says online again, which brings new births.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from plantline.connectors.sparkplug import MessageType
from plantline_testing.lines import UpRun, line_copy

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MACHINES = ("filler", "capper", "labeler")
HOST_ID = "scada"
QUIET_S = 0.5  # what the broker may still deliver of data published before the Will reached the edge


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
            # The births came once the historian said online, maybe before this reader listened.
            flowing = lambda: all(reader.of(MessageType.DDATA, m) for m in MACHINES)  # noqa: E731
            reader.wait_for(flowing, 60, "data of every machine once the historian is online")
            assert run.status()["historian"]["primary_host_id"] == HOST_ID
            births = len(reader.of(MessageType.NBIRTH))
            killed_at = time.time()
            os.kill(run.child_pid("historian"), signal.SIGKILL)  # its Will says STATE offline
            reborn = lambda: len(reader.of(MessageType.NBIRTH)) > births  # noqa: E731
            reader.wait_for(reborn, 60, "new births once `up` restarted the historian and it is online again")
            reborn_at = reader.of(MessageType.NBIRTH)[births].at
            born = lambda: all(any(b.at >= reborn_at for b in reader.of(MessageType.DBIRTH, m)) for m in MACHINES)  # noqa: E731
            reader.wait_for(born, 30, "DBIRTHs of filler, capper and labeler after the new NBIRTH")
            assert reborn_at - killed_at >= 1.0, "`up` restarts a child after a second: the births waited for it"
            during = [m for m in reader.of(MessageType.DDATA) if killed_at + QUIET_S < m.at < reborn_at]
            assert during == [], "the edge published data while its primary host was offline"
            assert not reader.errors
        done = run.down()
        assert done.returncode == 0, done.stderr
        assert run.leftovers() == []
    finally:
        run.kill_all()
