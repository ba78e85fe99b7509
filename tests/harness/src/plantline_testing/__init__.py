"""Harnesses for PlantLine's tests: real programs started on loopback and stopped by their PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
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

    The script runs in its own session, so a timeout (subprocess.TimeoutExpired is raised) or an
    interrupt stops what it started too, e.g. the go or podman commands of a cold build.
    """
    with subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as build:
        try:
            stdout, _ = build.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()
            raise
        except BaseException:  # e.g. KeyboardInterrupt: leave no build behind
            os.killpg(build.pid, signal.SIGTERM)
            raise
    return subprocess.CompletedProcess(build.args, build.returncode, stdout, None)


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
