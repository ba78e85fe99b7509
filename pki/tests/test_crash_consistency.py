"""A real SIGKILL at any point of issue, renew, revoke, rotate or init leaves a consistent CA."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI, PASSPHRASE, run_cli
from plantline.pki.store import KILL_POINT_ENV


def _env(directory: Path, kill_at: str | None = None) -> dict[str, str]:
    env = {"PLANTLINE_PKI_DIR": str(directory)}
    if kill_at:
        env[KILL_POINT_ENV] = kill_at
    return env


def _inventory(directory: Path) -> list[dict[str, object]]:
    return list(json.loads(run_cli("cert", "list", "--format", "json", env=_env(directory)).stdout))


def _assert_consistent_after_next_write(directory: Path) -> None:
    """The database is sound now; the next write republishes whatever a kill left stale."""
    check = run_cli("ca", "check", "--format", "json", env=_env(directory), check=False)
    problems = json.loads(check.stdout)["problems"]
    assert all("out of date" in p or "audit.jsonl" in p for p in problems), problems
    run_cli("crl", "generate", env=_env(directory))
    final = run_cli("ca", "check", "--format", "json", env=_env(directory), check=False)
    assert json.loads(final.stdout) == {"consistent": True, "problems": []}
    certs = _inventory(directory)
    serials = [c["serial"] for c in certs]
    assert len(serials) == len(set(serials))
    active = [c["identity"] for c in certs if c["status"] == "active"]
    assert len(active) == len(set(active))


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    run_cli("ca", "init", str(directory), "--name", "Crash CA")
    for identity in ("broker", "filler", "capper"):
        run_cli("cert", "issue", identity, "--profile", "mqtt-client", env=_env(directory))
    return directory


OPERATIONS: dict[str, list[str]] = {
    "issue": ["cert", "issue", "labeler", "--profile", "mqtt-client"],
    "renew": ["cert", "renew", "filler", "--new-key"],
    "revoke": ["cert", "revoke", "capper", "--reason", "key-compromise"],
    "rotate": ["ca", "rotate"],
}
POINTS: dict[str, list[str]] = {
    "issue": ["before-commit", "after-commit", "before-audit-sync"],
    "renew": ["before-commit", "after-commit", "before-audit-sync"],
    "revoke": ["before-commit", "after-commit", "published:crl.pem", "before-audit-sync"],
    "rotate": ["before-commit", "after-commit", "published:ca.crt", "published:trust-bundle.pem", "before-audit-sync"],
}


def _applied(op: str, directory: Path) -> bool:
    certs = _inventory(directory)
    if op == "issue":
        return any(c["identity"] == "labeler" for c in certs)
    if op == "renew":
        return sum(c["identity"] == "filler" for c in certs) == 2
    if op == "revoke":
        return any(c["identity"] == "capper" and c["status"] == "revoked" for c in certs)
    info = json.loads(run_cli("ca", "info", "--format", "json", env=_env(directory)).stdout)
    return len(info["generations"]) == 2


@pytest.mark.parametrize(("op", "point"), [(op, point) for op, points in POINTS.items() for point in points])
def test_kill_at_each_point(ca: Path, op: str, point: str) -> None:
    result = run_cli(*OPERATIONS[op], env=_env(ca, point), check=False)
    assert result.returncode == -signal.SIGKILL, f"the kill point {point} was not reached: {result.stderr}"
    assert _applied(op, ca) == (point != "before-commit")
    _assert_consistent_after_next_write(ca)


def test_rotation_phases_survive_kills(ca: Path) -> None:
    run_cli("ca", "rotate", env=_env(ca))
    for args in (["ca", "rotate", "--reissue"], ["ca", "rotate", "--finalize"]):
        killed = run_cli(*args, env=_env(ca, "before-commit"), check=False)
        assert killed.returncode == -signal.SIGKILL
        run_cli(*args, env=_env(ca))  # the interrupted phase runs again, whole
        _assert_consistent_after_next_write(ca)
    info = json.loads(run_cli("ca", "info", "--format", "json", env=_env(ca)).stdout)
    assert info["rotation"] == "idle"
    assert [g["state"] for g in info["generations"]] == ["active", "retired"]
    assert {c["ca_generation"] for c in _inventory(ca) if c["status"] == "active"} == {2}


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_kill_during_init_leaves_no_half_ca(tmp_path: Path, point: str) -> None:
    directory = tmp_path / "ca"
    result = run_cli("ca", "init", str(directory), "--name", "X", env={KILL_POINT_ENV: point}, check=False)
    assert result.returncode == -signal.SIGKILL
    listing = run_cli("cert", "list", "--ca", str(directory), check=False)
    if point == "before-commit":
        assert listing.returncode == 4  # no CA at all
        run_cli("ca", "init", str(directory), "--name", "X")  # and a plain retry works
    else:
        assert listing.returncode == 0
    _assert_consistent_after_next_write(directory)


@pytest.mark.slow
def test_kills_at_random_moments(ca: Path) -> None:
    rng = random.Random(20261122)
    env = {**os.environ, "PLANTLINE_PKI_PASSPHRASE": PASSPHRASE, "PLANTLINE_PKI_DIR": str(ca)}
    commands = [
        ["cert", "issue", "m{n}", "--profile", "mqtt-client"],
        ["cert", "renew", "broker", "--new-key"],
        ["cert", "revoke", "m{m}"],
        ["crl", "generate"],
    ]
    killed = 0
    for n in range(40):
        args = [a.format(n=n, m=rng.randrange(max(n, 1))) for a in rng.choice(commands)]
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
        problems = json.loads(run_cli("ca", "check", "--format", "json", env=_env(ca), check=False).stdout)["problems"]
        assert all("out of date" in p or "audit.jsonl" in p for p in problems), problems
    assert killed >= 10, "too few runs were interrupted to mean anything"
    _assert_consistent_after_next_write(ca)


def test_intermediate_rotation_needs_the_parent_and_survives_a_kill_between_the_two_cas(tmp_path: Path) -> None:
    root, site = tmp_path / "root", tmp_path / "site"
    parent_env = {"PLANTLINE_PKI_PARENT_PASSPHRASE": PASSPHRASE}
    run_cli("ca", "init", str(root), "--name", "Root")
    run_cli("ca", "init", str(site), "--name", "Site", "--parent", str(root), env=parent_env)
    run_cli("cert", "issue", "leaf", "--profile", "mqtt-client", env=_env(site))
    run_cli("ca", "rotate", "--parent", str(root), env={**_env(site), **parent_env})
    run_cli("ca", "rotate", "--reissue", env=_env(site))
    # Without --parent the old intermediate would stay valid at the root: refused, nothing changed.
    refused = run_cli("ca", "rotate", "--finalize", env=_env(site), check=False)
    assert refused.returncode == 3
    assert "give --parent DIR" in refused.stderr
    # Killed after the parent revoked the old intermediate but before the site retired it.
    finalize = ["ca", "rotate", "--finalize", "--parent", str(root)]
    killed = run_cli(*finalize, env={**_env(site), **parent_env, KILL_POINT_ENV: "before-audit-sync"}, check=False)
    assert killed.returncode == -signal.SIGKILL
    run_cli(*finalize, env={**_env(site), **parent_env})
    info = json.loads(run_cli("ca", "info", "--format", "json", env=_env(site)).stdout)
    assert info["rotation"] == "idle"
    revoked = json.loads(run_cli("cert", "list", "--status", "revoked", "--format", "json", env=_env(root)).stdout)
    assert [c["identity"] for c in revoked] == ["site"]
    assert revoked[0]["revocation_reason"] == "superseded"
    _assert_consistent_after_next_write(site)
    _assert_consistent_after_next_write(root)
