"""Harnesses for PlantLine's tests: real programs started on loopback and stopped by their PID."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

STOP_GRACE_S = 5.0


LOWEST_PORT = 10000
HIGHEST_PORT = 30000  # Kubernetes' NodePorts start here
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """Return the first port of the kernel's ephemeral range (Linux: ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now, below the ephemeral range.

    The port goes to a program started later. One the kernel picks (a bind to port 0) comes from
    the ephemeral range, from which every outgoing connection takes its local port too, so one of
    them could hold it by then (a connector's metrics port was taken so, and it could not start).
    Below that range (and Kubernetes' NodePorts) only a listener takes a port. Each port is handed
    out once per process.
    """
    high = min(_ephemeral_low(), HIGHEST_PORT)
    if high - LOWEST_PORT >= 1000:
        for _ in range(200):
            port = random.randrange(LOWEST_PORT, high)
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # no room below the ephemeral range: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_program(name: str) -> str:
    """Return the path of a program, looking in /usr/sbin too; raise if it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed; run ./dev test, which installs it")
    return path


def run_build(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Return the result of a long build script, its stdout captured and its progress (stderr) live on ours.

    It runs as `run_in_session` runs a command: a timeout (subprocess.TimeoutExpired is raised) or
    an interrupt stops what it started too, e.g. the go or podman commands of a cold build.
    """
    return run_in_session(argv, timeout=timeout, capture_stderr=False)


def run_in_session(
    argv: Sequence[str],
    *,
    timeout: float,
    input: str | None = None,
    capture_stderr: bool = True,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Return the result of `argv` run in a session of its own, its stdout captured (stderr too, by default).

    Whatever way it ends (done, a timeout: subprocess.TimeoutExpired is raised, an interrupt), no
    process of that session outlives the call: a program that starts its helpers in process
    groups of their own (the Pulumi CLI does so with its plugins) leaves none behind, which a
    kill of the child or of its group alone would. Stdin is `input`, or nothing.
    """
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(input, timeout=timeout)
        finally:  # also before Popen's exit, which would otherwise wait for a child still running
            stop_session(child.pid)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def session_processes(session: int) -> list[int]:
    """Return the PIDs of the live processes (zombies left out) whose session is `session`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command's name (in parentheses, and it may hold either): state, ppid, pgrp, session.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone while we read
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def stop_session(session: int, *, grace: float = STOP_GRACE_S) -> None:
    """Stop every process of `session`: SIGTERM, then SIGKILL to those still there after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        for pid in session_processes(session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while session_processes(session):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return


class Started:
    """A harness used as a context manager: `start()` on entry, `stop()` on exit (stop undoes a failed start)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def cache_dir(name: str) -> Path:
    """Return `$PLANTLINE_CACHE/<name>` (or ~/.cache/plantline/<name>): where an installed test peer is kept."""
    base = os.environ.get("PLANTLINE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "plantline") / name
