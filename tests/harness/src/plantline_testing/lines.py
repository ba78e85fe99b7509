"""Run `plantline up` on a copy of a PlantLine file, on free ports, the way a user runs it.

`line_copy` rewrites the broker port, the PLC endpoints and optional settings of a line file so
several tests (and a developer's own `./dev up`) never collide; `UpRun` drives the real command
line (`up --detach`, `status`, `reload`, `down`) as subprocesses and gives readers for its broker.
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
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from plantline.dashboards import LineView
from plantline.operator.api import parse_plantline
from plantline.operator.render import line_view
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import free_port
from plantline_testing.mosquitto import Broker
from plantline_testing.sparkplug_reader import SparkplugReader

REPO = Path(__file__).resolve().parents[4]
DEMO = REPO / "examples" / "demo-line.yaml"


def demo_line_view() -> LineView:
    """Return the demo line as the dashboards see it, with a bridge and the cloud bridge: every alert is made."""
    data = yaml.safe_load(DEMO.read_text())
    data["spec"]["broker"]["bridge"] = {"host": "core.example", "port": 8883}
    return line_view(parse_plantline(data), cloud_bridge=True)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    """Return whether `pid` runs (a zombie awaiting its parent's wait does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def free_run(count: int) -> int:
    """Return the first of `count` consecutive free loopback ports."""
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def line_copy(
    target: Path,
    *,
    source: Path = DEMO,
    grouping: str | None = None,
    sampling_interval: float | None = None,
    bridge: tuple[str, int] | None = None,
    machines: tuple[str, ...] | None = None,
    machine_fields: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write `source` to `target` with free ports (and the given changes); return the data written.

    `machine_fields` sets fields of machines by id, e.g. {"filler": {"opcua": {...}}}.
    """
    data: dict[str, Any] = yaml.safe_load(source.read_text())
    spec = data["spec"]
    spec["broker"]["port"] = free_port()
    if machines is not None:
        spec["machines"] = [m for m in spec["machines"] if m["id"] in machines]
    for machine in spec["machines"]:
        machine.update((machine_fields or {}).get(machine["id"], {}))
        scheme, rest = machine["endpoint"].split("://", 1)
        sep = "/" if scheme == "opc.tcp" else "?"
        host_port, _, tail = rest.partition(sep)
        host = host_port.rsplit(":", 1)[0]
        machine["endpoint"] = f"{scheme}://{host}:{free_port()}" + (f"{sep}{tail}" if tail else "")
        if sampling_interval is not None:
            machine["samplingInterval"] = sampling_interval
    if grouping is not None:
        spec["connectors"] = {"grouping": grouping}
    if bridge is not None:
        spec["broker"]["bridge"] = {"host": bridge[0], "port": bridge[1]}
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return data


PLANTLINE = (sys.executable, "-m", "plantline.operator.cli")


class UpRun:
    """One line run with the `plantline` CLI against its own state directory.

    `command` runs the CLI: by default this environment's, or e.g. `(venv / "bin" / "plantline",)`;
    `up_args` are more options for `up` (e.g. `--monitoring`).
    """

    def __init__(
        self,
        line_file: Path,
        state_dir: Path,
        *,
        simulate: bool = True,
        command: Sequence[str] = PLANTLINE,
        up_args: Sequence[str] = (),
    ) -> None:
        self.line_file = line_file
        self.state_dir = state_dir
        self.simulate = simulate
        self.command = tuple(command)
        self.up_args = tuple(up_args)
        self.data: dict[str, Any] = yaml.safe_load(line_file.read_text())
        self.port: int = self.data["spec"]["broker"]["port"]
        self.group: str = self.data["spec"].get("groupId", self.data["spec"]["site"])
        self.metrics_base = free_run(len(self.data["spec"]["machines"]))
        self.api_port = free_port()  # the historian's KPI API
        self.pids: set[int] = set()

    @property
    def tls(self) -> Path:
        return self.state_dir / "tls"

    def identity(self, name: str) -> str:
        return f"{self.data['spec']['site']}-{self.data['spec']['line']}-{name}"

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [*self.command, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def up_detached(self) -> subprocess.CompletedProcess[str]:
        args = ["up", str(self.line_file), "--detach", "--state-dir", str(self.state_dir)]
        args += ["--metrics-base-port", str(self.metrics_base), "--api-port", str(self.api_port)]
        args += ["--simulate"] if self.simulate else []
        done = self.cli(*args, *self.up_args)
        if done.returncode != 0:
            raise RuntimeError(f"plantline up --detach exited {done.returncode}:\n{done.stderr}\n{self.log()}")
        self._remember_pids()
        return done

    def up_attached(self, log: Path, *, timeout: float = 60) -> subprocess.Popen[bytes]:
        """Start `plantline up` in the foreground (own session, output to `log`); return once its broker listens.

        A reader that connects then sees the connectors' first births: they are QoS 0, so a broker
        keeps none for later, and the reader's read-only ACL cannot ask for a rebirth.
        """
        args = ["up", str(self.line_file), "--state-dir", str(self.state_dir)]
        args += ["--metrics-base-port", str(self.metrics_base), "--api-port", str(self.api_port)]
        args += ["--simulate"] if self.simulate else []
        with log.open("ab") as out:
            argv = [sys.executable, "-m", "plantline.operator.cli", *args]
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids.add(proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"plantline up exited {proc.returncode}:\n{log.read_text(errors='replace')}")
            if (self.state_dir / "pids.json").exists() and not _free(self.port):
                self._remember_pids()
                return proc
            time.sleep(0.2)
        raise TimeoutError(f"the broker did not come up:\n{log.read_text(errors='replace')}")

    def stop_attached(self, proc: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
        """Stop an attached `up` as Ctrl-C does (connectors first, so they publish NDEATH); return its exit code."""
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=timeout)

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--state-dir", str(self.state_dir), "--format", "json", timeout=30)
        data: dict[str, Any] = json.loads(done.stdout)
        data["exit"] = done.returncode
        if data.get("running"):
            self._remember_pids()
        return data

    def wait_status(self, check: Any, timeout: float, what: str) -> dict[str, Any]:
        """Poll `plantline status` until `check(status)` is true; return that status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("running") and check(status):
                return status
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}; last status: {json.dumps(status, indent=2)}")

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", "--state-dir", str(self.state_dir), timeout=120)

    def child_pid(self, name: str) -> int:
        children = json.loads((self.state_dir / "pids.json").read_text())["children"]
        return int(children[name])

    def reader(self, client_id: str, *, persistent: bool = False, port: int | None = None) -> SparkplugReader:
        reader = self.identity("reader")
        return SparkplugReader(
            port=self.port if port is None else port,
            group_id=self.group,
            ca=self.tls / "ca.crt",
            cert=self.tls / f"{reader}.crt",
            key=self.tls / f"{reader}.key",
            client_id=client_id,
            persistent=persistent,
        )

    def api(self, path: str, **params: str) -> Any:
        """GET the historian's KPI API with the line's token; return the decoded JSON body."""
        token = (self.state_dir / "historian" / "api-token").read_text().strip()
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}?{query}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http on loopback, built here
            return json.loads(response.read())

    def log(self) -> str:
        path = self.state_dir / "logs" / "up.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def leftovers(self) -> list[str]:
        """Return the processes still running with this state directory on their command line."""
        found = subprocess.run(["pgrep", "-af", str(self.state_dir)], capture_output=True, text=True, check=False)
        return [line for line in found.stdout.splitlines() if "pgrep" not in line]

    def finish(self) -> None:
        """Bring the line down and kill what is left of it; print up's log when $PLANTLINE_E2E_LOGS is set."""
        self.down()
        self.kill_all()
        if os.environ.get("PLANTLINE_E2E_LOGS"):
            print(self.log())

    def kill_all(self) -> None:
        """Last-resort cleanup: SIGKILL the `up` and every process group it started."""
        self._remember_pids()
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _remember_pids(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            data = json.loads((self.state_dir / "pids.json").read_text())
            self.pids.add(int(data["up"]))
            self.pids.update(int(pid) for pid in data["children"].values())


def start_core_broker(run: UpRun, directory: Path, port: int, *, extra: Sequence[str] = ()) -> Broker:
    """Start a second mosquitto, the "core" broker, trusting the line's CA; also issue `core-host`.

    The core broker's certificate (`core-broker`, for 127.0.0.1) and a client identity for a core
    host (`core-host`, its files in the run's TLS directory) come from the line's own CA.
    """
    passphrase = (run.state_dir / "pki-passphrase").read_bytes().strip()
    authority = Authority(run.state_dir / "ca", passphrase=lambda: passphrase)
    directory.mkdir(parents=True)
    authority.issue("core-broker", profile="mqtt-server", sans=["ip:127.0.0.1"])
    authority.issue("core-host", profile="mqtt-client")
    (directory / "broker.crt").write_bytes(authority.export("core-broker", CertFormat.CHAIN))
    (directory / "broker.key").write_bytes(authority.export("core-broker", CertFormat.KEY))
    (directory / "trust-bundle.pem").write_bytes(authority.trust_bundle())
    (directory / "crl.pem").write_bytes(authority.crl_pem())
    (run.tls / "core-host.crt").write_bytes(authority.export("core-host", CertFormat.CHAIN))
    key = run.tls / "core-host.key"
    key.touch(mode=0o600)
    key.write_bytes(authority.export("core-host", CertFormat.KEY))
    core = Broker(directory, port, persistence=True, extra=extra)
    core.start()
    return core
