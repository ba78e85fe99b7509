"""The CLI's contract: help with examples and exit codes, JSON output, concurrent use of one CA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import CLI, PASSPHRASE, run_cli
from plantline.pki.cli import cli


def _commands() -> list[list[str]]:
    out = []
    for group_name, group in cli.commands.items():
        if isinstance(group, click.Group):
            out += [[group_name, name] for name in group.commands]
    return out


def test_every_command_is_listed() -> None:
    assert {" ".join(c) for c in _commands()} == {
        "ca init", "ca info", "ca check", "ca export", "ca rotate",
        "cert issue", "cert renew", "cert revoke", "cert list", "cert inspect", "cert needs-renewal", "cert export",
        "crl generate", "audit list",
    }  # fmt: skip


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_help_has_examples_and_exit_status(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert "plantline-pki " + " ".join(command) in result.stdout
    assert "Example" in result.stdout
    assert "Exit status" in result.stdout


def test_python_dash_m_runs_the_same_cli(root_ca: Path) -> None:
    env = {**os.environ, "PLANTLINE_PKI_DIR": str(root_ca)}
    result = subprocess.run(
        [sys.executable, "-m", "plantline.pki", "ca", "info", "--format", "json"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["certificates"] == {"active": 0, "superseded": 0, "revoked": 0}


def test_json_output_and_messages_on_stderr(root_ca: Path) -> None:
    env = {"PLANTLINE_PKI_DIR": str(root_ca)}
    issued = run_cli("cert", "issue", "m1", "--profile", "mqtt-client", "--format", "json", env=env)
    record = json.loads(issued.stdout)
    assert record["identity"] == "m1"
    assert record["status"] == "active"
    assert record["key_held_by_ca"] is True
    assert "issued m1" in issued.stderr
    assert "issued m1" not in issued.stdout
    info = json.loads(run_cli("ca", "info", "--format", "json", env=env).stdout)
    assert info["certificates"] == {"active": 1, "superseded": 0, "revoked": 0}
    decision = run_cli(
        "cert", "needs-renewal", "m1", "--format", "json", "--renew-before-days", "90", env=env, check=False
    )
    assert decision.returncode == 0
    assert json.loads(decision.stdout)["action"] == "RENEW"


def test_concurrent_issues_on_one_ca_all_land_once(root_ca: Path) -> None:
    env = {**os.environ, "PLANTLINE_PKI_PASSPHRASE": PASSPHRASE, "PLANTLINE_PKI_DIR": str(root_ca)}
    procs = [
        subprocess.Popen([*CLI, "cert", "issue", f"c{n}", "--profile", "mqtt-client"], env=env, stderr=subprocess.PIPE)
        for n in range(8)
    ]
    # The same identity from two processes at once: exactly one wins.
    procs += [
        subprocess.Popen([*CLI, "cert", "issue", "twin", "--profile", "mqtt-client"], env=env, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes[:8] == [0] * 8
    assert sorted(codes[8:]) == [0, 5]
    certs = json.loads(run_cli("cert", "list", "--format", "json", "--ca", str(root_ca)).stdout)
    assert sorted(c["identity"] for c in certs) == sorted([f"c{n}" for n in range(8)] + ["twin"])
    assert len({c["serial"] for c in certs}) == 9
    audit = [json.loads(line) for line in (root_ca / "audit.jsonl").read_text().splitlines()]
    assert [a["id"] for a in audit] == list(range(1, 11))  # ca.init + 9 issues, in order, once each
    assert all(a["actor"] for a in audit)


def test_csr_keeps_the_key_with_its_owner(root_ca: Path, tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    csr = tmp_path / "node.csr"
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", "/CN=ignored"],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {"PLANTLINE_PKI_DIR": str(root_ca)}
    record = json.loads(
        run_cli(
            "cert", "issue", "edge1", "--profile", "mqtt-client", "--csr", str(csr), "--format", "json", env=env
        ).stdout
    )
    assert record["key_held_by_ca"] is False
    assert record["subject"] == "CN=edge1,O=PlantLine Tests"  # the CA names the subject, not the request
    refused = run_cli(
        "cert",
        "export",
        "edge1",
        "--format",
        "key",
        "--out",
        str(tmp_path / "x.key"),
        "--unsafe-plaintext-key",
        env=env,
        check=False,
    )
    assert refused.returncode == 9
    leaf = run_cli("cert", "export", "edge1", "--format", "pem", env=env).stdout
    (tmp_path / "leaf.pem").write_text(leaf)
    pub_leaf = subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey", "-in", str(tmp_path / "leaf.pem")], capture_output=True, check=True
    ).stdout
    pub_key = subprocess.run(["openssl", "pkey", "-pubout", "-in", str(key)], capture_output=True, check=True).stdout
    assert pub_leaf == pub_key
    renewed = json.loads(run_cli("cert", "renew", "edge1", "--format", "json", env=env).stdout)
    assert renewed["key_held_by_ca"] is False
