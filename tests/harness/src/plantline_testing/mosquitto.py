"""A real mosquitto for tests: mutual TLS from plantline-pki files, on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from plantline_testing import find_program

START_TIMEOUT = 10.0


class BrokerError(RuntimeError):
    """mosquitto did not start, reload or stop as expected; the message holds its log."""


class Broker:
    """One mosquitto process reading its TLS files from `directory`; stopped by its PID.

    The files it expects there: trust-bundle.pem, crl.pem, broker.crt, broker.key (and acl, when
    `acl` is set). `extra` lines are appended to the rendered configuration.
    """

    def __init__(
        self,
        directory: Path,
        port: int,
        *,
        acl: bool = False,
        persistence: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.port = port
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.cafile = directory / "trust-bundle.pem"
        self.crlfile = directory / "crl.pem"
        self.certfile = directory / "broker.crt"
        self.keyfile = directory / "broker.key"
        self.aclfile = directory / "acl" if acl else None
        self.persistence = persistence
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def render_config(self) -> str:
        lines = [
            "# rendered by plantline_testing.mosquitto",
            # Run as root, mosquitto switches to the `mosquitto` user, which cannot read tmp dirs.
            *(["user root"] if os.geteuid() == 0 else []),
            *(
                ["persistence true", f"persistence_location {self.directory}/", "autosave_interval 1"]
                if self.persistence
                else ["persistence false"]
            ),
            "log_dest stderr",
            "connection_messages true",
            "set_tcp_nodelay true",
            "allow_anonymous false",
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.cafile}",
            f"certfile {self.certfile}",
            f"keyfile {self.keyfile}",
            "require_certificate true",
            "use_identity_as_username true",
            f"crlfile {self.crlfile}",
            *([f"acl_file {self.aclfile}"] if self.aclfile else []),
            *self.extra,
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.conf.write_text(self.render_config())
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [find_program("mosquitto"), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited {self.proc.returncode} at start:\n{self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}") from None
                time.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP, then wait until mosquitto logged the reload (it reloads before serving anyone else).

        mosquitto 2.0.11 re-reads cafile and crlfile on SIGHUP as well as certfile/keyfile.
        """
        if self.proc is None or self.proc.poll() is not None:
            raise BrokerError(f"mosquitto is not running:\n{self.log_text()}")
        before = self.log_text().count("Reloading config.")
        mark = self.log_mark()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        while self.log_text().count("Reloading config.") == before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not reload:\n{self.log_text()}")
            time.sleep(0.02)
        problems = [line for line in self.log_since(mark).splitlines() if "Error:" in line or "Error when" in line]
        if problems:
            raise BrokerError(f"mosquitto reload reported errors:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL: the broker dies without a goodbye, as in a crash or a cut cable."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_mark(self) -> int:
        return len(self.log_text())

    def log_since(self, mark: int) -> str:
        return self.log_text()[mark:]
