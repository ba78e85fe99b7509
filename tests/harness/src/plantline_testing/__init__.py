"""Harnesses for PlantLine's tests: real programs started on loopback and stopped by their PID."""

from __future__ import annotations

import shutil
import socket


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
