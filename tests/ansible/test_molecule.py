"""The Ansible collection's CI entry point: lint, the molecule line file, and every molecule scenario.

Each scenario runs through molecule/run.sh (image build or reuse, the collection built and installed
from this checkout, wheelhouse, `molecule test` with the shared base config); its output is shown when
it fails. The repository root is the collection (galaxy.yml), so the lint runs there, scoped to the
Ansible content by .yamllint and .ansible-lint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
# What yamllint checks: the collection's content, not the rest of the repository's YAML.
ANSIBLE_CONTENT = ("galaxy.yml", "meta", "roles", "playbooks", "inventory", "molecule")
SCENARIO_TIMEOUT_S = 1800
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


def _run_scenario(scenario: str, log: Path) -> int | None:
    """Return the exit status of `run.sh SCENARIO test`, or None if it timed out; its output goes to `log`."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(REPO / "molecule" / "run.sh"), scenario, "test"],
            cwd=REPO,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,  # one log, in order: molecule logs to stderr, ansible to stdout
            start_new_session=True,  # a group of its own, to stop it whole (see _stop)
        )
        try:
            return process.wait(timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if process.poll() is None:  # timed out, or pytest itself was interrupted
                _stop(process)


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
@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 300)  # after _run_scenario's own timeout, which cleans up
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, tmp_path: Path) -> None:
    log = tmp_path / f"molecule-{scenario}.log"
    started = time.monotonic()
    status = _run_scenario(scenario, log)
    elapsed = time.monotonic() - started
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
