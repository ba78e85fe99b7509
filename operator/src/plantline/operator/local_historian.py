"""The historian beside a `plantline up` line: PostgreSQL in the state directory, the historian, its KPI API.

PostgreSQL's cluster lives in `<state>/postgres` and listens on a unix socket there only (no TCP
port to collide with). PostgreSQL refuses to run as root; as root, `up` runs it in a user
namespace where it is an ordinary user (`unshare --map-user`), so that its files stay in the
0700 state directory, owned by root outside. The historian (`python -m plantline.historian run`)
connects with the line's host identity; the KPI API (`... api`) takes the bearer token in
`<state>/historian/api-token` (0600). Without PostgreSQL's programs the line runs without them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plantline.operator.api import PlantLine
from plantline.operator.historian import render_historian_config

DATABASE = "plantline"
SUPERUSER = "plantline"
SOCKET_PORT = 5432  # names the socket file only: the cluster listens on no TCP port
START_TIMEOUT = 60.0
NAMESPACE_ID = 1000  # who PostgreSQL is inside its user namespace when `up` runs as root


def postgres_bin() -> Path | None:
    """Return the directory of PostgreSQL's server programs (Debian keeps them off PATH), None if absent."""
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True):
        if (directory / "postgres").exists() and (directory / "initdb").exists():
            return directory
    found = shutil.which("postgres")
    return Path(found).resolve().parent if found else None


def _unprivileged() -> list[str]:
    """Return the prefix that runs a program as an ordinary user when we are root (PostgreSQL insists)."""
    if os.geteuid() != 0:
        return []
    return ["unshare", f"--map-user={NAMESPACE_ID}", f"--map-group={NAMESPACE_ID}"]


@dataclass(frozen=True)
class HistorianFiles:
    root: Path  # the state directory

    @property
    def cluster(self) -> Path:
        return self.root / "postgres"

    @property
    def data(self) -> Path:
        return self.cluster / "data"

    @property
    def directory(self) -> Path:
        return self.root / "historian"

    @property
    def config(self) -> Path:
        return self.directory / "historian.yaml"

    @property
    def status(self) -> Path:
        return self.directory / "status.json"

    @property
    def token(self) -> Path:
        return self.directory / "api-token"

    @property
    def dsn(self) -> str:
        return f"host={self.cluster.resolve()} port={SOCKET_PORT} dbname={DATABASE} user={SUPERUSER}"


@dataclass
class HistorianPlan:
    """What `up` runs for the historian: argv per child, and where its files are."""

    files: HistorianFiles
    bin_dir: Path
    api_port: int
    database_argv: list[str]
    historian_argv: list[str]
    api_argv: list[str]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def ready(self) -> bool:
        """Return whether the cluster accepts connections on its socket."""
        argv = [str(self.bin_dir / "pg_isready"), "-q", "-h", str(self.files.cluster.resolve())]
        argv += ["-p", str(SOCKET_PORT)]
        return subprocess.run(argv, check=False, capture_output=True).returncode == 0

    def wait_ready(self, alive: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not alive():
                return False
            if self.ready():
                return True
            time.sleep(0.2)
        return False

    def create_database(self) -> None:
        """Create the historian's database on first start (an existing one is kept)."""
        where = ["-h", str(self.files.cluster.resolve()), "-p", str(SOCKET_PORT), "-U", SUPERUSER]
        created = subprocess.run(
            [str(self.bin_dir / "createdb"), *where, DATABASE], check=False, capture_output=True, text=True
        )
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb {DATABASE} failed: {created.stderr.strip()}")

    def status(self) -> dict[str, Any] | None:
        """Return the historian's own status (lag, counters), None before it wrote one."""
        try:
            data: dict[str, Any] = json.loads(self.files.status.read_text())
        except (OSError, ValueError):
            return None
        return {"api": self.api_url, **data, "age_s": round(time.time() - float(data.get("updated", 0)), 1)}


def plan_historian(line: PlantLine, root: Path, *, tls_dir: Path, api_port: int) -> HistorianPlan | None:
    """Prepare the cluster (initdb once), the historian's config and the API token; None without PostgreSQL."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        return None
    files = HistorianFiles(root)
    files.directory.mkdir(parents=True, exist_ok=True)
    if not (files.data / "PG_VERSION").exists():
        files.cluster.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*_unprivileged(), str(bin_dir / "initdb"), "-D", str(files.data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8"],
            check=True, capture_output=True,
        )  # fmt: skip
    if not files.token.exists():
        fd = os.open(files.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    config = render_historian_config(
        line, tls_dir=tls_dir, dsn=files.dsn, status_file=files.status.resolve(), token_file=files.token.resolve(),
        api_port=api_port,
    )  # fmt: skip
    files.config.write_text(yaml.safe_dump(config, sort_keys=False))
    database = [*_unprivileged(), str(bin_dir / "postgres"), "-D", str(files.data.resolve())]
    database += ["-k", str(files.cluster.resolve()), "-p", str(SOCKET_PORT), "-c", "listen_addresses="]
    historian = [sys.executable, "-m", "plantline.historian", "run", "--config", str(files.config.resolve())]
    api = [sys.executable, "-m", "plantline.historian", "api", "--config", str(files.config.resolve())]
    return HistorianPlan(files, bin_dir, api_port, database, historian, api)
