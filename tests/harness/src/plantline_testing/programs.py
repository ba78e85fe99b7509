"""Helpers for tests of PlantLine's command-line programs, run as `python -m MODULE` on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

TIMEOUT_S = 60.0


def run_module(module: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Return the exit status and output of `python -m MODULE ARGS` run to its end."""
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=check)


@contextmanager
def serving(module: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Yield the running `python -m MODULE ARGS` and its banner, the first line it writes to stderr.

    A server writes its banner once it listens. The process is killed on the way out unless the
    block has ended it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        yield proc, proc.stderr.readline()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def listening_addresses(port: int) -> list[str]:
    """Return the local addresses (`host:port`) of the TCP sockets listening on `port`."""
    listeners = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return [line.split()[3] for line in listeners.stdout.splitlines()]
