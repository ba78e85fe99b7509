"""The Ansible collection's CI entry point: lint, the molecule line file, and every molecule scenario.

Each scenario runs through molecule/run.sh (the collection built and installed from this checkout,
`molecule test` with the shared base config), two at a time (edge_core alone), after the image and
the wheelhouse they share are built once; its output is shown when it fails. The repository root is
the collection (galaxy.yml), so the lint runs there, scoped to the Ansible content by .yamllint and
.ansible-lint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
# What yamllint checks: the collection's content, not the rest of the repository's YAML.
ANSIBLE_CONTENT = ("galaxy.yml", "meta", "roles", "playbooks", "inventory", "molecule")
SCENARIO_TIMEOUT_S = 1800
# Two scenarios at a time (see ScenarioPool), but edge_core runs alone: its zero-loss checks follow every
# step of the simulated PLCs' counters, and a simulator or connector starved for a second skips one (seen
# with a second scenario beside it on a 2-core machine). It runs first, the others two at a time after it.
SCENARIOS_AT_ONCE = 2
ALONE = "edge_core"
# Where a failed `molecule test` log first says what went wrong (ansible, molecule, pytest).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
FAILURE_MARKERS = ("fatal: [", "failed: [", "FAILED!", "ERROR ", "Traceback", "= FAILURES =")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}:/usr/sbin"
    env.pop("PLANTLINE_RUN_ID", None)  # every run gets its own container names
    return env


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)


def test_yamllint_passes() -> None:
    result = _run([str(BIN / "yamllint"), "--strict", *ANSIBLE_CONTENT])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_passes_at_the_production_profile(tmp_path: Path) -> None:
    # ansible-lint may replace the collection in the first collections path with an installed copy:
    # give it a path of its own, holding the artifact built from this checkout.
    installed = _run([str(REPO / "scripts" / "install-collection.sh"), str(tmp_path / "collections")])
    assert installed.returncode == 0, installed.stderr
    env_path = installed.stdout.strip()
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline"],
        cwd=REPO,
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


def test_molecule_edge_broker_listens_on_every_interface(tmp_path: Path) -> None:
    # Its connectors reach it on 127.0.0.1, the core network (edge_core's firewall test) on its address.
    out = tmp_path / "rendered"
    result = _run([str(BIN / "plantline"), "render", "molecule/files/molecule-line.yaml", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    conf = (out / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert [line for line in conf if line.startswith("listener ")] == ["listener 8883 0.0.0.0"]


# pytest's lines for a failed verifier test: "tests/test_x.py::test_y FAILED" and the summary's "FAILED ...".
VERIFIER_FAILED = re.compile(r"::\S+ (FAILED|ERROR)\b|^\W*(FAILED|ERROR) \S+::")


def _failure_excerpt(output: str) -> str:
    """Return the part of a failed run's log a reviewer reads first: from the first failure on, and the end."""
    # The verifier's failed tests first: a CI report that keeps only the start of this still names them.
    failed = [line.strip(" │") for line in output.splitlines() if VERIFIER_FAILED.search(line)]
    summary = "failed in the verifier:\n" + "\n".join(dict.fromkeys(failed)) + "\n\n" if failed else ""
    first = min((i for i in (output.find(m) for m in FAILURE_MARKERS) if i >= 0), default=-1)
    if first < 0:
        return summary + output[-40000:]
    start = output.rfind("\n", 0, max(output.rfind("TASK [", 0, first), 0)) + 1  # the failed task's header line
    head, rest = output[start : start + 15000], output[start + 15000 :]
    return summary + head + ("\n[...]\n" + rest[-25000:] if len(rest) > 25000 else rest)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop run.sh's process group with SIGTERM, so that its exit trap still removes its containers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class ScenarioPool:
    """Runs `run.sh SCENARIO test` for every scenario, `width` at a time, but `ALONE` first and alone.

    The scenarios spend most of their time waiting on systemd and Ansible inside their containers,
    so two at a time take little longer than one. Each run has its own containers, network,
    subnet, workdir and collections path (run.sh); what they would share, the image and the
    wheelhouse, is built once here before any starts. `result` starts the next scenario whenever
    one ends, in the caller's thread.
    """

    def __init__(self, scenarios: list[str], logs: Path, width: int) -> None:
        self._queue = sorted(scenarios, key=lambda s: s != ALONE)
        self._logs, self._width = logs, width
        self._running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
        self._done: dict[str, tuple[int | None, float]] = {}
        self._env = _env()

    def prepare(self) -> None:
        """Build the image and the wheelhouse the scenarios share (run.sh uses what it is given)."""
        for var, argv in (
            ("PLANTLINE_MOLECULE_IMAGE", [str(REPO / "molecule" / "image" / "build.sh")]),
            ("PLANTLINE_WHEELHOUSE", [str(REPO / "scripts" / "build-wheelhouse.sh"), "runtime,s7"]),
        ):
            built = subprocess.run(argv, cwd=REPO, env=self._env, capture_output=True, text=True, check=False)
            assert built.returncode == 0, f"{argv[0]} failed:\n{built.stderr[-8000:]}"
            self._env[var] = built.stdout.strip()

    def log(self, scenario: str) -> Path:
        return self._logs / f"molecule-{scenario}.log"

    def result(self, scenario: str) -> tuple[int | None, float]:
        """Return a scenario's exit status (None if it timed out) and its seconds, once it has ended."""
        while scenario not in self._done:
            self._step()
            time.sleep(1)
        return self._done[scenario]

    def _step(self) -> None:
        for name, (process, started) in list(self._running.items()):
            elapsed = time.monotonic() - started
            if process.poll() is None and elapsed < SCENARIO_TIMEOUT_S:
                continue
            timed_out = process.poll() is None
            if timed_out:
                _stop(process)
            self._done[name] = (None if timed_out else process.returncode, elapsed)
            del self._running[name]
        while self._queue and len(self._running) < self._width and ALONE not in self._running:
            if self._queue[0] == ALONE and self._running:
                break
            self._start(self._queue.pop(0))

    def _start(self, scenario: str) -> None:
        with self.log(scenario).open("w") as out:
            process = subprocess.Popen(
                [str(REPO / "molecule" / "run.sh"), scenario, "test"],
                cwd=REPO,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,  # one log, in order: molecule logs to stderr, ansible to stdout
                start_new_session=True,  # a group of its own, to stop it whole (see _stop)
            )
        self._running[scenario] = (process, time.monotonic())

    def stop(self) -> None:
        """Stop whatever still runs (pytest was interrupted, or stopped before the last result)."""
        self._queue.clear()
        for process, _ in self._running.values():
            if process.poll() is None:
                _stop(process)
        self._running.clear()


@pytest.fixture(scope="module")
def scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioPool]:
    """The pool of the scenarios this session selected (`-k hardening` runs hardening alone)."""
    selected = [
        str(item.callspec.params["scenario"])
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_molecule_scenario"
    ]
    pool = ScenarioPool(selected, tmp_path_factory.mktemp("molecule"), width=SCENARIOS_AT_ONCE)
    try:
        pool.prepare()
        yield pool
    finally:
        pool.stop()


def test_a_failure_excerpt_names_the_failed_verifier_tests_first() -> None:
    verbose = (
        "TASK [Converge]\nok: [edge]\n"
        "    │ tests/test_edge_core.py::test_ports PASSED    [ 9%]\n"
        "    │ tests/test_edge_core.py::test_upgrade FAILED  [ 95%]\n"
    )
    summary = "    │ FAILED tests/test_edge_core.py::test_upgrade - AssertionError: 2 restarts\n"
    log = verbose + "x" * 50_000 + "\n" + summary + "ERROR    Verifier tests failed\n"
    excerpt = _failure_excerpt(log)
    assert excerpt.split("\n\n", 1)[0].splitlines() == [
        "failed in the verifier:",
        "tests/test_edge_core.py::test_upgrade FAILED  [ 95%]",
        "FAILED tests/test_edge_core.py::test_upgrade - AssertionError: 2 restarts",
    ]
    assert excerpt.endswith("Verifier tests failed\n")


@pytest.mark.slow
@pytest.mark.peer
# The whole pool's time: a scenario may wait for others before it starts, each bounded by its own timeout.
@pytest.mark.timeout(SCENARIO_TIMEOUT_S * 2 + 900)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, scenarios: ScenarioPool) -> None:
    status, elapsed = scenarios.result(scenario)
    log = scenarios.log(scenario)
    print(f"molecule scenario {scenario}: {elapsed:.0f} s, log {log}", file=sys.stderr)
    output = ANSI_ESCAPE.sub("", log.read_text(errors="replace"))  # molecule logs in colour
    # On a failure the log holds the journals too: the verify step's conftest adds them under a
    # failed test, and the cleanup playbook (molecule/shared/journal.yml) after any failed step.
    outcome = "timed out" if status is None else f"failed with status {status}"
    assert status == 0, f"molecule test -s {scenario} {outcome} after {elapsed:.0f} s:\n" + _failure_excerpt(output)
    # The steps that prove something ran, and succeeded: molecule logs each one.
    succeeded = set(re.findall(rf"{scenario} \S+ (\w+): Executed: Successful", output))
    assert {"create", "prepare", "converge", "idempotence", "verify"} <= succeeded, output[-5000:]
    # molecule passes a verify step that found no tests: make sure this one ran some, and all passed.
    assert "Verifier completed successfully." in output, output[-5000:]
    verified = re.findall(r"=+ (\d+) passed(?:, \d+ (?:warnings?|skipped))* in ", output)
    assert verified, output[-5000:]
    assert int(verified[-1]) > 0
