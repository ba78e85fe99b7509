"""A real, throwaway PostgreSQL for tests: initdb into a temporary directory, a unix socket, stopped by PID.

Debian keeps the server programs out of PATH (/usr/lib/postgresql/<version>/bin); `server_bin`
finds them. PostgreSQL refuses to run as root: as root, the cluster belongs to Debian's
`postgres` user and lives in a directory of its own under /tmp (a pytest tmp_path is 0700 root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0
DATABASE = "plantline"


def server_bin() -> Path:
    """Return the directory of PostgreSQL's server programs (initdb, postgres), newest version first."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for directory in candidates:
        if (directory / "postgres").exists() and (directory / "initdb").exists():
            return directory
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL's server programs are not installed; run ./dev test, which installs postgresql")


def _as_postgres() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def _as_user(ids: tuple[int, int] | None) -> dict[str, Any]:
    """Return the subprocess arguments that run a program as `ids` (uid, gid); none when not root."""
    return {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}


class PostgresCluster:
    """One PostgreSQL cluster listening on a unix socket only (no TCP), with database `plantline`."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.ids = _as_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="plantline-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.port = 5432  # only names the socket file: listen_addresses is empty
        self.log = self.root / "postgres.log"
        self.settings = {"fsync": "on", "max_connections": "50", "shared_buffers": "128MB", **(settings or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if self.ids is not None else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={DATABASE} user={self.user}"

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, **_as_user(self.ids))

    def start(self) -> None:
        bin_dir = server_bin()
        if self.ids is not None:
            os.chown(self.root, *self.ids)
        self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        argv = [str(bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir), "-p", str(self.port)]
        argv += ["-c", "listen_addresses="]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **_as_user(self.ids)
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.1)
        where = ("-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user)
        self._run(str(bin_dir / "createdb"), *where, DATABASE)

    def _ready(self) -> bool:
        done = subprocess.run(
            [str(server_bin() / "pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port), "-q"], check=False
        )
        return done.returncode == 0

    def kill(self) -> None:
        """SIGKILL the postmaster: a crash, with recovery at the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID, then remove the cluster's directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(**kwargs: dict[str, str]) -> Iterator[PostgresCluster]:
    """Yield a started cluster; stop it and remove its files afterwards."""
    cluster = PostgresCluster(**kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
