"""Pinned npm packages for the tests, installed once into a cache: `ensure_node_modules`.

A package directory under tests/harness/ holds a package.json and its package-lock.json; `npm ci`
installs exactly that lock once into `$PLANTLINE_CACHE/<name>/<hash of package-lock.json>/` (or
`~/.cache/plantline/...`), so a changed lock file gets a directory of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from plantline_testing import find_program

INSTALL_TIMEOUT_S = 600.0


class NpmInstallError(RuntimeError):
    """A pinned npm package directory could not be installed."""


def cache_root() -> Path:
    """Return `$PLANTLINE_CACHE` (or ~/.cache/plantline)."""
    base = os.environ.get("PLANTLINE_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "plantline"


def ensure_node_modules(package_dir: Path, cache_name: str, marker: str) -> Path:
    """Return the node_modules directory of `package_dir`'s lock, installing it the first time.

    `marker` is a package whose presence proves the install finished. The install happens in a
    fresh directory renamed into place only when `npm ci` succeeded, so a failed or concurrent
    install never leaves a half-filled cache entry.
    """
    lock = (package_dir / "package-lock.json").read_bytes()
    target = cache_root() / cache_name / hashlib.sha256(lock).hexdigest()[:16]
    modules = target / "node_modules"
    if (modules / marker / "package.json").is_file():
        return modules
    if target.exists():
        raise NpmInstallError(f"{target} exists without {marker}; remove it to install again")
    npm = find_program("npm")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(package_dir / name, work / name)
        argv = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise NpmInstallError(f"npm ci of {package_dir.name} failed with exit {done.returncode}:\n{done.stderr}")
        try:
            work.rename(target)
        except OSError:
            if not (modules / marker / "package.json").is_file():
                raise  # not another process that installed the same lock meanwhile
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return modules
