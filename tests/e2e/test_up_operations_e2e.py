"""A line run in the background with `plantline up --detach`, operated as an SRE would.

Real processes throughout: mosquitto, the three PLC simulators, the connectors, and the
`plantline` and `plantline-pki` commands. Each test proves one of the PlantLine issue's claims:
status and down, zero loss across a ~10 s broker outage, revocation enforced and shown.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plantline.connectors.kpi import SPARKPLUG_METRICS as KPI_METRICS
from plantline.connectors.sparkplug import MessageType
from plantline_testing.counting import frozen, wait_caught_up
from plantline_testing.lines import UpRun, alive, line_copy
from plantline_testing.sparkplug_reader import SparkplugReader, Value

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MACHINES = ("filler", "capper", "labeler")


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Any]:
    """Return a factory of detached line runs; whatever they started is stopped afterwards."""
    runs: list[UpRun] = []

    def make(**changes: Any) -> UpRun:
        line_file = tmp_path / f"line{len(runs)}.yaml"
        line_copy(line_file, **changes)
        run = UpRun(line_file, tmp_path / f"state{len(runs)}")
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.finish()


def _flowing(status: dict[str, Any], machines: tuple[str, ...] = MACHINES) -> bool:
    rows = {m["machine"]: m for m in status["machines"]}
    return all(rows[m]["mqtt"] == "connected" and (rows[m]["samples_per_s"] or 0) > 0 for m in machines)


def test_detached_line_reports_status_and_goes_down(make_run: Any) -> None:
    run: UpRun = make_run()
    done = run.up_detached()
    assert f"broker: mqtts://127.0.0.1:{run.port}" in done.stdout
    status = run.wait_status(_flowing, 120, "all three machines flowing")
    assert status["exit"] == 0
    assert status["broker"]["state"] == "running"
    assert [m["machine"] for m in status["machines"]] == list(MACHINES)
    for row in status["machines"]:
        assert row["plc_connected"] is True
        assert row["last_value_age_s"] is not None
        assert row["last_value_age_s"] < 10
        assert row["connector"] == "line1"  # the demo line is one edge node
    kinds = {"broker", "simulator", "connector", "database", "historian", "api"}
    assert {c["kind"] for c in status["children"]} == kinds
    historian = run.wait_status(lambda s: (s["historian"] or {}).get("samples_inserted", 0) > 0, 60, "samples stored")
    assert historian["historian"]["api"] == f"http://127.0.0.1:{run.api_port}"

    table = run.cli("status", "--state-dir", str(run.state_dir))
    assert table.returncode == 0
    header = table.stdout.splitlines()[1].split()
    assert header[:5] == ["machine", "protocol", "connector", "plc", "mqtt"]
    assert "samples/s" in table.stdout
    assert "oee" in header
    assert "historian: mqtt connected, lag " in table.stdout

    again = run.cli("up", str(run.line_file), "--detach", "--state-dir", str(run.state_dir))
    assert again.returncode == 1
    assert "already runs here" in again.stderr

    # Nothing newly revoked: a SIGHUP reloads the broker's CRL, and the command returns when it is done.
    broker = run.child_pid("broker")
    reload = run.cli("reload", "--state-dir", str(run.state_dir))
    assert reload.returncode == 0, reload.stderr
    assert "reloaded the CRL and trust bundle (broker SIGHUP)" in reload.stderr
    assert run.child_pid("broker") == broker

    pids = set(run.pids)
    assert run.down().returncode == 0
    assert run.leftovers() == []
    assert not any(alive(pid) for pid in pids)
    stopped = run.status()
    assert stopped == {"state_dir": str(run.state_dir.resolve()), "running": False, "exit": 3}
    assert run.down().returncode == 0  # idempotent: nothing to stop is not an error
    gone = run.cli("reload", "--state-dir", str(run.state_dir))
    assert gone.returncode == 3
    assert "no `plantline up` runs here" in gone.stderr


def _unique(values: list[Value], machine: str) -> set[tuple[str, int]]:
    """Return the machine's distinct PLC samples (KPIs ride in the same DDATA but are not samples)."""
    return {(v.name, v.timestamp) for v in values if v.device_id == machine and v.name not in KPI_METRICS}


def _seq_breaks(reader: SparkplugReader) -> list[str]:
    """Return every break of the node's Sparkplug seq (0 at NBIRTH, +1 mod 256 per message) seen."""
    breaks: list[str] = []
    expected: int | None = None
    for index, message in enumerate(reader.messages):
        if message.kind is MessageType.NDEATH:
            continue
        if message.kind is MessageType.NBIRTH:
            expected = 0
        if expected is None:
            continue  # data before the first NBIRTH this reader saw
        if message.payload.seq != expected:
            breaks.append(f"message {index} ({message.kind}): seq {message.payload.seq}, expected {expected}")
        expected = ((message.payload.seq or 0) + 1) % 256
    return breaks


def test_zero_loss_across_a_ten_second_broker_outage(make_run: Any) -> None:
    run: UpRun = make_run(sampling_interval=0.1)
    run.up_detached()
    run.wait_status(_flowing, 120, "all three machines flowing")
    sims = [run.child_pid(f"sim/{m}") for m in MACHINES]
    # The PLCs are frozen (SIGSTOP) around each count, so the counts are exact: report by exception
    # yields no sample while they stand still. The reader subscribes while they are frozen.
    # Every assertion on counts is exact equality: duplicates are removed by (signal, timestamp).
    with contextlib.ExitStack() as stack:
        with frozen(sims):
            before = _settled_samples_total(run)
            run.wait_status(lambda s: all(m["outbox_samples"] == 0 for m in s["machines"]), 60, "outbox drained")
            reader = stack.enter_context(run.reader("outage-reader", persistent=True))
            # Have the broker write its persistence file now, with the reader's session in it: the
            # restarted broker then queues for the reader whatever arrives before it reconnects.
            broker = run.child_pid("broker")
            os.kill(broker, signal.SIGUSR1)
            time.sleep(0.5)
        reader.wait_for(lambda: all(reader.of(MessageType.DDATA, m) for m in MACHINES), 60, "data from all three")
        os.killpg(broker, signal.SIGKILL)
        killed_at = time.time()
        # Hold the broker's port for 10 s: the supervisor's restarts fail until it is released.
        holder = _hold_port(run.port, 10.0)
        during = run.status()
        assert during["broker"]["state"] != "running"
        assert during["broker"]["restarts"] >= 1
        assert all(m["mqtt"] != "connected" for m in during["machines"])
        assert all((m["outbox_samples"] or 0) > 0 for m in during["machines"]), "samples wait in the outbox"
        # Births are QoS 0, which a broker does not queue for an offline session, and the reader may
        # not ask for a rebirth (its ACL is read-only). So the connectors stand still until the
        # reader is back: it then sees their births live, as a host that never left would.
        connectors = [run.child_pid(f"connector/{group}") for group in {m["connector"] for m in during["machines"]}]
        subscribed = reader.subscriptions
        with frozen(connectors):
            holder.close()
            run.wait_status(lambda s: s["broker"]["state"] == "running", 60, "the broker restarted")
            reader.wait_for(lambda: reader.subscriptions > subscribed, 60, "the reader subscribed again")
        run.wait_status(_flowing, 120, "data flowing again")
        _wait_replayed(run)  # frozen sooner, a PLC's device would die and hold its backlog (counting)
        with frozen(sims):
            after = _settled_samples_total(run)
            run.wait_status(lambda s: all(m["outbox_samples"] == 0 for m in s["machines"]), 120, "outbox drained")
            produced = {m: after[m] - before[m] for m in MACHINES}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(len(_unique(reader.values, m)) >= produced[m] for m in MACHINES):
                    break
                time.sleep(0.5)
            received = {m: len(_unique(reader.values, m)) for m in MACHINES}
        assert received == produced, _diagnose(reader, killed_at)
        assert run.status()["broker"]["restarts"] >= 2  # failed restarts while the port was held, then one that ran
        assert any(v.historical for v in reader.values), "replayed samples are flagged historical"
        assert _seq_breaks(reader) == []
        assert not reader.errors


def _diagnose(reader: SparkplugReader, killed_at: float) -> str:
    """Say where each machine's samples have their largest gaps, relative to the broker kill."""
    lines = []
    for machine in MACHINES:
        stamps = sorted({t for _, t in _unique(reader.values, machine)})
        gaps = sorted(((b - a, a) for a, b in itertools.pairwise(stamps)), reverse=True)[:3]
        where = ", ".join(f"{gap} ms after {a / 1000 - killed_at:+.1f}s" for gap, a in gaps)
        if not stamps:
            lines.append(f"{machine}: no sample at the reader")
            continue
        lines.append(f"{machine}: first {stamps[0] / 1000 - killed_at:+.1f}s, largest gaps {where}")
    births = [f"{m.kind.value}@{m.at - killed_at:+.1f}s" for m in reader.messages if "BIRTH" in m.kind.value]
    return "\n".join([*lines, "births: " + " ".join(births[:20])])


def _settled_samples_total(run: UpRun) -> dict[str, int]:
    """Return the connectors' accepted-sample counts once they stand still."""
    previous = _samples_total(run)
    for _ in range(30):
        time.sleep(1.5)
        current = _samples_total(run)
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"sample counts kept changing with the PLCs frozen: {previous}")


def _hold_port(port: int, seconds: float) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 5
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the killed broker's socket may linger an instant
    sock.listen()
    time.sleep(seconds)
    return sock


def _wait_replayed(run: UpRun) -> None:
    """Return once every connector has replayed its outbox (`wait_caught_up`)."""
    for offset in range(len(MACHINES)):
        url = f"http://127.0.0.1:{run.metrics_base + offset}/metrics"
        try:
            urllib.request.urlopen(url, timeout=2).close()
        except OSError:
            continue  # no connector on this port: machines share connectors
        wait_caught_up(url)


def _samples_total(run: UpRun) -> dict[str, int]:
    """Return each machine's accepted-sample count from its connector's /metrics."""
    totals: dict[str, int] = {}
    for offset in range(len(MACHINES)):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{run.metrics_base + offset}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("plantline_samples_total{"):
                device = line.split('device="', 1)[1].split('"', 1)[0]
                totals[device] = int(float(line.rsplit(" ", 1)[1]))
    assert set(totals) == set(MACHINES), totals
    return totals


def test_a_revoked_connector_is_refused_and_status_says_so(make_run: Any) -> None:
    run: UpRun = make_run(grouping="perMachine")
    run.up_detached()
    run.wait_status(_flowing, 120, "all three machines flowing")
    capper = run.identity("capper")
    revoke = subprocess.run(
        [
            str(Path(sys.executable).with_name("plantline-pki")), "cert", "revoke", capper,
            "--reason", "key-compromise",
            "--ca", str(run.state_dir / "ca"), "--passphrase-file", str(run.state_dir / "pki-passphrase"),
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    broker = run.child_pid("broker")
    reload = run.cli("reload", "--state-dir", str(run.state_dir), "--format", "json")
    assert reload.returncode == 0, reload.stderr
    outcome = json.loads(reload.stdout)
    assert outcome["ok"] is True
    assert outcome["message"].endswith("the broker restarted for 1 newly revoked")
    assert run.child_pid("broker") != broker  # and it listens again: the reader connects at once

    with run.reader("revocation-reader") as reader:
        status = run.wait_status(
            lambda s: (
                _row(s, "capper")["mqtt"] == "refused"
                and (_row(s, "capper")["outbox_samples"] or 0) > 0  # its samples wait in its outbox
                and _flowing(s, ("filler", "labeler"))
            ),
            90,
            "the capper refused, the others flowing",
        )
        assert _row(status, "capper")["plc_connected"] is True
        table = run.cli("status", "--state-dir", str(run.state_dir)).stdout
        capper_row = next(line for line in table.splitlines() if line.startswith("capper"))
        assert "refused" in capper_row.split()
        data = len(reader.of(MessageType.DDATA, "filler")), len(reader.of(MessageType.DDATA, "labeler"))
        reader.wait_for(
            lambda: (
                len(reader.of(MessageType.DDATA, "filler")) > data[0]
                and len(reader.of(MessageType.DDATA, "labeler")) > data[1]
            ),
            30,
            "filler and labeler data after the revocation",
        )
        births = len(reader.of(MessageType.DBIRTH, "capper"))
        time.sleep(3)
        assert len(reader.of(MessageType.DBIRTH, "capper")) == births == 0  # the capper never got back in
    log = (run.state_dir / "logs" / "mosquitto.log").read_text(errors="replace")
    assert "certificate verify failed" in log or "certificate revoked" in log
    assert _reader_sees_no_capper(run)


def _row(status: dict[str, Any], machine: str) -> dict[str, Any]:
    return next(m for m in status["machines"] if m["machine"] == machine)


def _reader_sees_no_capper(run: UpRun) -> bool:
    """A fresh subscriber gets no capper traffic at all (the broker holds none of its sessions)."""
    with SparkplugReader(
        port=run.port, group_id=run.group, ca=run.tls / "ca.crt",
        cert=run.tls / f"{run.identity('reader')}.crt", key=run.tls / f"{run.identity('reader')}.key",
        client_id="revocation-check",
    ) as fresh:  # fmt: skip
        time.sleep(2)
        return not fresh.of(MessageType.DDATA, "capper")
