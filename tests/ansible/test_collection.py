"""The repository root is the Ansible collection plantline.edge: it builds clean and runs from a clone.

`ansible-galaxy collection build` at the root must give an artifact with the Ansible content only
(galaxy.yml's build_ignore keeps the Python packages, tests and lock files out); installed, its
playbooks run as `plantline.edge.<name>`; and a plain clone runs `ansible-playbook -i
inventory/sample.yml playbooks/site.yml` through the root ansible.cfg, with no link or install step.
The molecule scenarios (test_molecule.py) then run every role and playbook from the installed artifact.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
PLAYBOOKS = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}:/usr/sbin"
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a collections path holding the artifact built from this checkout."""
    path = tmp_path_factory.mktemp("collections")
    result = subprocess.run(
        [str(REPO / "scripts" / "install-collection.sh"), str(path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(path)
    return path


@pytest.fixture(scope="module")
def members(installed: Path) -> list[PurePosixPath]:
    """Return the paths inside the built artifact."""
    (artifact,) = installed.glob("plantline-edge-*.tar.gz")
    with tarfile.open(artifact) as tar:
        return [PurePosixPath(name) for name in tar.getnames()]


def test_the_artifact_holds_the_roles_playbooks_and_metadata(members: list[PurePosixPath]) -> None:
    names = {str(m) for m in members}
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml", "README.md", "inventory/sample.yml"} <= names
    for role in ROLES:
        assert f"roles/{role}/tasks/main.yml" in names, role
        assert f"roles/{role}/meta/argument_specs.yml" in names, role
    for playbook in PLAYBOOKS:
        assert f"playbooks/{playbook}.yml" in names, playbook


def test_the_artifact_holds_no_python_package_test_or_lock_file(members: list[PurePosixPath]) -> None:
    top = {m.parts[0] for m in members}
    allowed = {"MANIFEST.json", "FILES.json", "README.md", "LICENSE", "ansible.cfg", "galaxy.yml"}
    assert top <= allowed | {"meta", "roles", "playbooks", "inventory"}, top
    python = [m for m in members if m.suffix in {".py", ".pyc", ".pyi"} or m.name in {"pyproject.toml", "py.typed"}]
    assert python == []
    tests = [m for m in members if {"tests", "molecule", "test"} & set(m.parts) or m.name.startswith("test_")]
    assert tests == []
    locks = [m for m in members if m.name.endswith(".lock") or m.name in {"uv.lock", "requirements.txt"}]
    assert locks == []


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_installed_playbooks_run_by_their_collection_name(installed: Path, playbook: str, tmp_path: Path) -> None:
    # Outside the checkout, so that nothing but the installed artifact can resolve the roles.
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(REPO / "inventory" / "sample.yml"),
            "--syntax-check",
            f"plantline.edge.{playbook}",
        ],
        cwd=tmp_path,
        env=_env(ANSIBLE_COLLECTIONS_PATH=str(installed)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_clone_runs_the_playbooks_with_no_link_or_install_step(tmp_path: Path) -> None:
    # An empty collections path: the roles can only come from the root ansible.cfg's roles_path.
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventory/sample.yml", "--list-tasks", "playbooks/site.yml"],
        cwd=REPO,
        env=_env(ANSIBLE_COLLECTIONS_PATHS=str(tmp_path), ANSIBLE_COLLECTIONS_PATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for role in ("hardening", "pki_trust", "mosquitto_edge", "connectors", "k3s"):
        assert f"{role} : " in result.stdout, role
