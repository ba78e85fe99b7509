"""A CA directory on disk: its lock, its database's connections and transactions, its published files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from plantline.pki.errors import Busy, Conflict, CorruptState, NotFound
from plantline.pki.store.inventory import SCHEMA_VERSION, Inventory

DB_NAME = "pki.db"
LOCK_NAME = ".lock"
PUBLIC_MODE = 0o644
SECRET_MODE = 0o600


KILL_POINT_ENV = "PLANTLINE_PKI_KILL_AT"


def kill_point(name: str) -> None:
    """Die by SIGKILL here when PLANTLINE_PKI_KILL_AT names this point.

    The crash-consistency tests use this to stop a real process at exact places inside a write;
    it does nothing when the variable is unset.
    """
    if os.environ.get(KILL_POINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a mix.

    The file is created with `mode` from the start, so secret data is never readable by others.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it; widen nothing beyond `mode`
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_new_file(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    """Write an output file atomically; refuse to replace an existing one unless `force`."""
    if path.exists() and not force:
        raise Conflict(f"{path}: exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise NotFound(f"{path.parent}: no such directory")
    atomic_write(path, data, mode=mode)


@dataclass(frozen=True, slots=True)
class Published:
    """The derived files of a CA directory, as bytes."""

    files: dict[str, bytes]


class CaStore:
    """The state of one CA directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.db_path = directory / DB_NAME

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def creating(cls, directory: Path, *, force: bool) -> Iterator[Inventory]:
        """Yield the inventory of a new, empty database that replaces the directory's on success.

        The database is built under a temporary name and renamed into place only after it is
        complete, so a kill leaves either no CA or a whole one.
        """
        store = cls(directory)
        if store.db_path.exists() and not force:
            raise Conflict(f"{directory}: already holds a CA; pass --force to replace it")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        (directory / LOCK_NAME).touch(mode=SECRET_MODE, exist_ok=True)
        with store.lock(require_ca=False):
            yield from store._build_new(force=force)

    def _build_new(self, *, force: bool) -> Iterator[Inventory]:
        directory = self.directory
        if self.db_path.exists() and not force:  # another init won the race for the lock
            raise Conflict(f"{directory}: already holds a CA; pass --force to replace it")
        tmp = directory / f".{DB_NAME}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE))
        conn = sqlite3.connect(tmp, isolation_level=None)
        conn.row_factory = sqlite3.Row
        inventory = Inventory(conn)
        try:
            inventory.create_tables()
            conn.execute("BEGIN IMMEDIATE")
            inventory.record_schema_version()
            yield inventory
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            tmp.unlink()
            raise
        conn.close()
        kill_point("before-commit")
        os.replace(tmp, self.db_path)
        _fsync_dir(directory)
        kill_point("after-commit")

    def _require(self) -> None:
        if not self.db_path.is_file():
            raise NotFound(f"{self.directory}: no CA here (missing {DB_NAME}); create one with `plantline-pki ca init`")

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        self._require()
        uri = f"file:{self.db_path}?mode={'ro' if readonly else 'rw'}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            version = Inventory(conn).schema_version()
        except sqlite3.DatabaseError as exc:
            raise CorruptState(f"{self.db_path}: the CA inventory cannot be read: {exc}") from None
        if version != str(SCHEMA_VERSION):
            conn.close()
            raise CorruptState(f"{self.db_path}: unknown inventory schema version {version}")
        return conn

    def integrity_problems(self) -> list[str]:
        """Return what SQLite's full integrity check finds wrong (an empty list: nothing).

        It reads every page, so it runs for `ca check` rather than on every open; damage met by
        an ordinary query is reported as CorruptState there.
        """
        with self.reading() as inventory:
            try:
                reports = inventory.integrity_check()
            except sqlite3.DatabaseError as exc:
                return [f"{DB_NAME}: {exc}"]
        return [f"{DB_NAME}: {report}" for report in reports if report != "ok"]

    @contextlib.contextmanager
    def reading(self) -> Iterator[Inventory]:
        """Yield the inventory through a read-only connection; nothing in the directory is touched."""
        conn = self._connect(readonly=True)
        try:
            yield Inventory(conn)
        finally:
            conn.close()

    @contextlib.contextmanager
    def lock(self, *, wait_seconds: float = 30.0, require_ca: bool = True) -> Iterator[None]:
        """Hold the directory's exclusive lock, waiting at most `wait_seconds` for it."""
        if require_ca:
            self._require()
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, SECRET_MODE)
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        raise Busy(f"{self.directory}: another plantline-pki process holds the lock") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Inventory]:
        """Yield the inventory inside one write transaction; commit on success, else roll back.

        Call inside `lock()`; publish the derived files after it returns.
        """
        conn = self._connect(readonly=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Inventory(conn)
                kill_point("before-commit")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            kill_point("after-commit")
        finally:
            conn.close()

    # -- derived files --------------------------------------------------------------------------

    def publish(self, published: Published) -> None:
        """Bring the derived files in line with `published`, rewriting only those that differ."""
        for name, data in published.files.items():
            path = self.directory / name
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if current != data:
                atomic_write(path, data, mode=PUBLIC_MODE)
                kill_point(f"published:{name}")

    def sync_audit(self, inventory: Inventory) -> None:
        """Append to audit.jsonl the audit rows it lacks, mending a line cut short by a kill.

        Only the file's tail is read, so the cost does not grow with the log.
        """
        path = self.directory / "audit.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, SECRET_MODE)
        try:
            size = os.fstat(fd).st_size
            tail = os.pread(fd, min(size, 1 << 16), max(0, size - (1 << 16)))
            if tail and not tail.endswith(b"\n"):  # a kill cut the last append short
                cut = tail.rfind(b"\n") + 1
                size -= len(tail) - cut
                os.ftruncate(fd, size)
                tail = tail[:cut]
            last_id = 0
            if tail:
                line = tail[tail.rstrip(b"\n").rfind(b"\n") + 1 :]
                try:
                    last_id = int(json.loads(line)["id"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise CorruptState(f"{path}: last line is not an audit record: {exc}") from None
            records = inventory.audit_records(after=last_id)
            if records:
                text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
                os.write(fd, text.encode())
                os.fsync(fd)
        finally:
            os.close(fd)
