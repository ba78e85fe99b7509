"""The wheels as a user installs them: a fresh virtual environment outside the workspace.

The wheels of plantline-pki, plantline-connectors, plantline-dashboards, plantline-historian (which
`up` runs) and plantline-operator are built from this tree; every other dependency comes from the
package index (fast once uv's cache holds them).
With the base install `validate`, `crd` and `render` work and `up` names the extra it needs;
with [local] `up --simulate` names [simulate]; with [simulate] the demo line runs from that
environment until its first DDATA, and `down` stops it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from plantline.connectors.sparkplug import MessageType
from plantline.operator.crd import crd_yaml
from plantline_testing.lines import DEMO, REPO, UpRun, line_copy

pytestmark = [pytest.mark.peer, pytest.mark.slow]

WHEELS = ("plantline-pki", "plantline-connectors", "plantline-dashboards", "plantline-historian", "plantline-operator")
# What the extras bring; none of it belongs in the base install.
EXTRA_MODULES = (
    "kopf", "kubernetes", "rich", "cpppo", "httpx",
    "google", "paho", "prometheus_client", "asyncua", "snap7", "pycomm3",
)  # fmt: skip


def _uv(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
    if uv is None:
        pytest.fail("uv is not on PATH: run the tests with ./dev or uv run")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}  # never the workspace's .venv
    env["UV_PYTHON_DOWNLOADS"] = "never"
    done = subprocess.run([uv, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"uv {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a directory holding the wheels of pki, connectors, dashboards, historian and operator."""
    out = tmp_path_factory.mktemp("wheels")
    for package in WHEELS:
        _uv("build", "--package", package, "--wheel", "-o", str(out), cwd=REPO)
    assert len(list(out.glob("plantline_*.whl"))) == len(WHEELS)
    return out


@dataclass(frozen=True)
class Venv:
    """A virtual environment of the machine's Python that installs from the wheelhouse and the index."""

    root: Path
    wheelhouse: Path

    @classmethod
    def create(cls, root: Path, wheelhouse: Path) -> Venv:
        assert not root.resolve().is_relative_to(REPO)
        _uv("venv", "--python", os.path.realpath(sys.executable), str(root), cwd=root.parent)
        return cls(root, wheelhouse)

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    def install(self, requirement: str) -> None:
        python = str(self.bin("python"))
        _uv("pip", "install", "--python", python, "--find-links", str(self.wheelhouse), requirement, cwd=self.root)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin(argv[0])), *argv[1:]]
        return subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False)

    def importable(self, modules: tuple[str, ...]) -> list[str]:
        """Return which of the top-level `modules` this environment can import."""
        script = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
        return self.run("python", "-c", script, *modules).stdout.split()


def test_the_base_install_validates_renders_and_names_the_extra_up_needs(wheelhouse: Path, tmp_path: Path) -> None:
    venv = Venv.create(tmp_path / "venv", wheelhouse)
    venv.install("plantline-operator")
    assert venv.importable(EXTRA_MODULES) == []
    where = venv.run("python", "-c", "import plantline.operator.cli as m; print(m.__file__)").stdout
    assert Path(where.strip()).is_relative_to(venv.root)  # the wheel's copy, not the workspace's

    validated = venv.run("plantline", "validate", str(DEMO))
    assert validated.returncode == 0, validated.stderr
    assert "valid PlantLine site1-line1 (3 machines)" in validated.stderr
    assert venv.run("plantline", "crd").stdout == crd_yaml()
    rendered = venv.run("plantline", "render", str(DEMO), "--out", str(tmp_path / "rendered"))
    assert rendered.returncode == 0, rendered.stderr
    assert (tmp_path / "rendered" / "mosquitto" / "acl").exists()

    up = venv.run("plantline", "up", str(DEMO), "--simulate", "--state-dir", str(tmp_path / "state"))
    assert up.returncode == 2
    assert up.stderr == (
        "plantline up: this command needs the 'local' extra (no module named 'rich'): "
        "pip install 'plantline-operator[local]'\n"
    )
    assert not (tmp_path / "state").exists()
    operator = venv.run("plantline", "operator", "run", "--connector-image", "img:1")
    assert operator.returncode == 2
    assert "pip install 'plantline-operator[kube]'" in operator.stderr
    assert "Traceback" not in operator.stderr


def test_the_local_install_runs_the_demo_line_until_its_first_ddata(wheelhouse: Path, tmp_path: Path) -> None:
    venv = Venv.create(tmp_path / "venv", wheelhouse)
    venv.install("plantline-operator[local]")
    line_file = tmp_path / "line.yaml"
    line_copy(line_file)  # the demo line on free ports
    run = UpRun(line_file, tmp_path / "state", command=[str(venv.bin("plantline"))])

    refused = run.cli("up", str(line_file), "--simulate", "--detach", "--state-dir", str(run.state_dir))
    assert refused.returncode == 2
    assert refused.stderr == (
        "plantline up: the EtherNet/IP simulator needs the 'simulate' extra (no module named 'cpppo'): "
        "pip install 'plantline-operator[simulate]'\n"
    )

    venv.install("plantline-operator[simulate]")
    try:
        run.up_detached()
        with run.reader("wheel-install") as reader:
            reader.wait_for(lambda: bool(reader.of(MessageType.DDATA)), 90, "the first DDATA")
            assert not reader.errors
        children = [run.child_pid(name) for name in ("sim/labeler", "connector/line1")]
        assert all(Path(f"/proc/{pid}/cmdline").read_text().startswith(str(venv.root)) for pid in children)
        stopped = run.down()
        assert stopped.returncode == 0, stopped.stderr
        # `down` returns once `up` let go of its state directory; its interpreter may still be exiting.
        deadline = time.monotonic() + 10
        while run.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.leftovers() == []
    finally:
        run.kill_all()
