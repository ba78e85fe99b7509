"""JavaScript test peers installed from npm, pinned: `NpmPackage(...).ensure()`.

A peer's directory under tests/harness/ holds its package.json and package-lock.json. `ensure`
runs `npm ci` once into `$PLANTLINE_CACHE/<name>/<hash of package-lock.json>/` (or
`~/.cache/plantline/...`), so a changed lock file gets a directory of its own, and returns its
node_modules. The install happens in a fresh directory that is renamed into place only when
`npm ci` succeeded, so a failed or concurrent install never leaves a half-filled cache entry.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from plantline_testing import cache_dir, find_program

INSTALL_TIMEOUT_S = 600.0


class NpmInstallError(RuntimeError):
    """A pinned npm package could not be installed."""


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm install: `directory` holds its package.json and package-lock.json."""

    name: str  # its cache directory's name
    directory: Path
    probe: str  # the package whose package.json shows the install is complete

    def target(self) -> Path:
        """Return the cache directory of the current lock file."""
        lock = (self.directory / "package-lock.json").read_bytes()
        return cache_dir(self.name) / hashlib.sha256(lock).hexdigest()[:16]

    def ensure(self) -> Path:
        """Return the node_modules directory of the pinned install, running `npm ci` the first time."""
        target = self.target()
        modules = target / "node_modules"
        if self._complete(modules):
            return modules
        if target.exists():
            raise NpmInstallError(f"{target} exists without {self.probe}; remove it to install again")
        npm = find_program("npm")
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(self.directory / name, work / name)
            argv = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
            done = subprocess.run(
                argv, cwd=work, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                raise NpmInstallError(f"npm ci of {self.probe} failed with exit {done.returncode}:\n{done.stderr}")
            try:
                work.rename(target)
            except OSError:
                if not self._complete(modules):
                    raise  # not another process that installed the same lock meanwhile
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return modules

    def _complete(self, modules: Path) -> bool:
        return (modules / self.probe / "package.json").is_file()
