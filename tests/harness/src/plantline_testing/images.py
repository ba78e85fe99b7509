"""The PlantLine container images for tests: `ensure_images()` builds them, or finds them built.

No container registry is reachable here, so the images are built on a Debian 12 base that
scripts/debian-base-image.sh makes with debootstrap and `podman import` (the molecule image's
code), standing in for python:3.11-slim. operator/images/build.sh then builds the targets from
this checkout's wheels; both scripts tag by a hash of their inputs, so a warm run builds nothing.
Their progress goes live to our stderr. `run_argv()` is how tests start a container: podman
with runc (crun refuses this machine's hybrid cgroups) and limits inside the hard ones.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from plantline_testing import run_build

ROOT = Path(__file__).resolve().parents[4]
BASE_SCRIPT = ROOT / "scripts" / "debian-base-image.sh"
BUILD_SCRIPT = ROOT / "operator" / "images" / "build.sh"
BASE_NAME = "plantline-python-debian12"
BASE_PACKAGES = ROOT / "operator" / "images" / "debian-packages.txt"
BASE_SETUP = ROOT / "operator" / "images" / "debian-setup.sh"
BUILD_TIMEOUT_S = 1800.0
RUN_AS = 65532  # the fixed uid and gid of the images (operator/images/Containerfile)
PODMAN_LIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=8192:8192")


class ImageError(RuntimeError):
    """An image could not be built; its messages are on stderr."""


@dataclass(frozen=True, slots=True)
class Images:
    """The names of the built images."""

    base: str
    connectors: str
    operator: str


def _script(argv: list[str]) -> str:
    try:
        result = run_build(argv, BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{argv[1]} took more than {BUILD_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        raise ImageError(f"{' '.join(argv)} failed ({result.returncode}); its messages are on stderr above")
    return result.stdout


def debian_base() -> str:
    """Return the name of the Debian 12 base image, building it with debootstrap if absent."""
    out = _script(["bash", str(BASE_SCRIPT), BASE_NAME, str(BASE_PACKAGES), str(BASE_SETUP)])
    return out.strip().splitlines()[-1]


def ensure_images(*, rebuild: bool = False) -> Images:
    """Return the connector and operator images built from this checkout, building what changed.

    `rebuild` builds both again from scratch even when nothing changed (a cold build's time).
    """
    base = debian_base()
    flags = ["--rebuild"] if rebuild else []
    out = _script(["bash", str(BUILD_SCRIPT), "--base", base, *flags, "connectors", "operator"])
    built = dict(line.split(" ", 1) for line in out.strip().splitlines())
    return Images(base=base, connectors=built["connectors"], operator=built["operator"])


def run_argv(*args: str) -> list[str]:
    """Return the `podman run` command line this machine needs, followed by `args`."""
    return ["podman", "--runtime", "runc", "run", *PODMAN_LIMITS, *args]


def _podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


class Container:
    """One podman container a test starts (`podman run -d`), removed by its name on `remove()`."""

    def __init__(self, name: str, image: str, options: Sequence[str] = (), command: Sequence[str] = ()) -> None:
        self.name = name
        self.image = image
        self.options = list(options)
        self.command = list(command)

    def start(self) -> None:
        argv = run_argv("-d", "--name", self.name, *self.options, self.image, *self.command)
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Return the result of running `argv` inside the container (not checked)."""
        return _podman("exec", self.name, *argv, check=False)

    def kill(self, signal: str) -> None:
        _podman("kill", "--signal", signal, self.name)

    def wait(self, timeout: float) -> int:
        """Return the container's exit status once it has exited."""
        return int(_podman("wait", self.name, timeout=timeout).stdout.strip())

    def running(self) -> bool:
        state = _podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        done = _podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        _podman("rm", "--force", "--time", "5", self.name, check=False)


def size_bytes(image: str) -> int:
    """Return the image's size as podman reports it (uncompressed, every layer)."""
    return int(_podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


__all__ = ["RUN_AS", "Container", "ImageError", "Images", "debian_base", "ensure_images", "run_argv", "size_bytes"]
