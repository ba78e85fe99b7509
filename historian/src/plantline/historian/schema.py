"""Versioned schema migrations: numbered SQL files, applied in order at start, in one transaction each.

`migrations/NNNN_name.sql` in this package are the versions. A database whose newest applied
version is above the newest this code knows is refused (SchemaTooNew): code must never write into
a schema it does not understand. Concurrent starts serialise on an advisory lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x504C_4869  # "PLHi": the historian's migrations


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer historian than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Return the migrations this code ships, by version (numbers contiguous from 1)."""
    found = []
    for entry in resources.files("plantline.historian.migrations").iterdir():
        match = _FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[m.version for m in found]}")
    return found


def current_version(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Return the newest version applied to the database (0 for an empty one)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> list[int]:
    """Apply the migrations the database lacks; return their versions. Raises SchemaTooNew."""
    known = migrations()
    newest = known[-1].version
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = current_version(conn)
        if current > newest:
            raise SchemaTooNew(
                f"the database is at schema version {current}, this historian knows up to {newest}: "
                "run a historian at least as new as the one that migrated it"
            )
        for migration in known[current:]:
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
            applied.append(migration.version)
    return applied
