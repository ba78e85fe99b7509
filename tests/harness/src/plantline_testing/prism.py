"""Stoplight Prism serving EMQX's OpenAPI as a validating mock: `running_prism`.

The pinned `@stoplight/prism-cli` (tests/harness/prism/package.json and its lock) is installed once
with `npm ci` into `$PLANTLINE_CACHE/prism/<hash of the lock>/` by `plantline_testing.npm`.
`prism mock --errors` validates every request against the description and answers a violating one
with an error status and the violations; a valid one gets an answer made from the description's
examples and schemas. Nobody here wrote it: it referees the EMQX client independently of
`FakeEmqxApi`. Prism is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from plantline_testing import find_program, free_port
from plantline_testing.emqx import spec_path
from plantline_testing.npm import NpmPackage

PRISM_DIR = Path(__file__).resolve().parents[2] / "prism"
PACKAGE = "@stoplight/prism-cli"
PRISM = NpmPackage("prism", PRISM_DIR, probe=PACKAGE)
START_TIMEOUT_S = 120.0  # Prism reads and dereferences a 1.7 MB description first


@dataclass(frozen=True)
class Prism:
    """A running Prism: its URL and its log (every request and each violation it found)."""

    url: str
    log: Path

    def violations(self) -> list[str]:
        """Return the log lines where Prism reported a request that the description does not allow."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "violation" in line.lower() or "✖" in line]


@contextlib.contextmanager
def running_prism(directory: Path) -> Iterator[Prism]:
    """Run `prism mock --errors` on EMQX's description on a loopback port; stop it on exit."""
    modules = PRISM.ensure()
    port = free_port()
    log = directory / "prism.log"
    argv = [
        find_program("node"),
        str(modules / PACKAGE / "dist" / "index.js"),
        "mock",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        str(spec_path()),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, log)
        yield Prism(f"http://127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"prism exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"prism did not listen on {port}:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.2)
