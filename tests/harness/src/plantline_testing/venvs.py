"""Virtualenvs of their own for programs the tests run beside the workspace: `cached_venv`.

Some peers cannot share the workspace's environment (another major version of one of its
libraries, exact pins of their own); each gets a virtualenv under `$PLANTLINE_CACHE` (or
~/.cache/plantline), created and filled with pip once, behind a file lock, and marked done only
when its installation and check succeeded, so a half-made one is made again next time.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from plantline_testing import cache_dir

__all__ = ["cache_dir", "cached_venv"]

INSTALL_TIMEOUT_S = 600.0


def cached_venv(root: Path, requirement: str, *, check: Callable[[Path], str] | None = None) -> Path:
    """Return the Python of the virtualenv `root` with `requirement` installed, creating it the first time.

    `check(python)` runs once after the install (and may add files to `root`); what it returns is
    kept in the marker. Raises subprocess.CalledProcessError or TimeoutExpired if pip fails.
    """
    python = root / "bin" / "python"
    marker = root / ".installed"
    if marker.exists():
        return python
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be creating it right now
        if not marker.exists():
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=INSTALL_TIMEOUT_S)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, requirement], check=True, timeout=INSTALL_TIMEOUT_S)
            note = check(python) if check is not None else requirement
            marker.write_text(note + "\n", encoding="utf-8")
    return python
