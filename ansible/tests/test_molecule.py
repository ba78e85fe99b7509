"""The Ansible collection's CI entry point: lint, the molecule line file, and every molecule scenario.

Each scenario runs through ansible/molecule/run.sh (image build or reuse, collection link,
wheelhouse, `molecule test` with the shared base config); its output is shown when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parents[1]
REPO = ANSIBLE_DIR.parent
BIN = REPO / ".venv" / "bin"
SCENARIOS = sorted(p.parent.name for p in (ANSIBLE_DIR / "molecule").glob("*/molecule.yml"))
SCENARIO_TIMEOUT_S = 1800


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}:/usr/sbin"
    env.pop("PLANTLINE_RUN_ID", None)  # every run gets its own container names
    return env


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ANSIBLE_DIR, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def test_yamllint_passes() -> None:
    result = _run([str(BIN / "yamllint"), "--strict", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_passes_at_the_production_profile() -> None:
    # ansible-lint may replace the collection in the first collections path with an installed copy:
    # give it a link of its own, so it never touches the one molecule/run.sh uses.
    cache = Path(os.environ.get("PLANTLINE_CACHE", Path.home() / ".cache" / "plantline"))
    link = _run([str(ANSIBLE_DIR / "scripts" / "link-collection.sh"), str(cache / "ansible-lint-collections")])
    assert link.returncode == 0, link.stderr
    env_path = link.stdout.strip()
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline"],
        cwd=ANSIBLE_DIR,
        env={**_env(), "ANSIBLE_COLLECTIONS_PATH": env_path},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]


def test_molecule_line_file_is_a_valid_plantline() -> None:
    result = _run([str(BIN / "plantline"), "validate", "molecule/files/molecule-line.yaml"])
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.peer
@pytest.mark.timeout(SCENARIO_TIMEOUT_S)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    started = time.monotonic()
    result = _run([str(ANSIBLE_DIR / "molecule" / "run.sh"), scenario, "test"], timeout=SCENARIO_TIMEOUT_S)
    elapsed = time.monotonic() - started
    print(f"molecule scenario {scenario}: {elapsed:.0f} s", file=sys.stderr)
    assert result.returncode == 0, f"molecule test -s {scenario} failed after {elapsed:.0f} s:\n" + (
        result.stdout[-20000:] + result.stderr[-10000:]
    )
