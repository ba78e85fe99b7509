"""Fixtures shared by the PKI tests: the CLI as a real subprocess, CA directories, required programs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from plantline_testing import find_program

PASSPHRASE = "correct horse battery staple"
CLI = [sys.executable, "-c", "from plantline.pki.cli import main; main()"]


@dataclass
class Run:
    """The outcome of one CLI invocation."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


PkiCli = Callable[..., Run]


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None) -> Run:
    """Run `plantline-pki ARGS` as a subprocess; with check, fail the test on a non-zero exit."""
    full_env = {**os.environ, "PLANTLINE_PKI_PASSPHRASE": PASSPHRASE, **(env or {})}
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=full_env, input=stdin, timeout=120, check=False
    )
    result = Run(list(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        pytest.fail(f"plantline-pki {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return result


@pytest.fixture
def pki() -> PkiCli:
    """The CLI runner (see run_cli)."""
    return run_cli


@pytest.fixture
def root_ca(tmp_path: Path) -> Path:
    """A fresh encrypted EC P-256 root CA directory, made by the CLI."""
    directory = tmp_path / "root"
    run_cli("ca", "init", str(directory), "--name", "Test Root CA", "--organization", "PlantLine Tests")
    return directory


def require_program(name: str) -> str:
    """Return the path of a program the test needs; fail (never skip) when it is missing."""
    try:
        return find_program(name)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch directory for exported files."""
    path = tmp_path / "work"
    path.mkdir()
    return path
