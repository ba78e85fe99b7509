"""No command ever prints key material or the passphrase; secret files are private."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from conftest import PASSPHRASE, Run, run_cli

PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _key_fragments(directory: Path) -> list[bytes]:
    """Base64 fragments of the private keys exported in plaintext, to look for in outputs."""
    fragments = []
    for path in directory.glob("*.key"):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fragments.append(base64.b64encode(der)[16:48])
    return fragments


def test_every_command_keeps_secrets_out_of_stdout_stderr_and_logs(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    out = tmp_path / "out"
    env = {"PLANTLINE_PKI_DIR": str(ca)}
    runs: list[Run] = [run_cli("ca", "init", str(ca), "--name", "Leak CA", "--maintenance-window", "sat 02:00-06:00")]
    commands = [
        ["cert", "issue", "broker", "--profile", "mqtt-server", "--san", "localhost"],
        ["cert", "issue", "filler", "--profile", "mqtt-client"],
        ["cert", "issue", "capper", "--profile", "operator", "--format", "json"],
        ["cert", "list"],
        ["cert", "list", "--format", "json"],
        ["cert", "inspect", "broker", "--format", "json"],
        ["cert", "needs-renewal", "filler", "--format", "json"],
        ["cert", "renew", "filler"],
        ["cert", "renew", "filler", "--new-key", "--format", "json"],
        ["cert", "export", "broker", "--format", "bundle", "--out", str(out), "--unsafe-plaintext-key"],
        ["cert", "export", "filler", "--format", "fullchain"],
        [
            "cert",
            "export",
            "capper",
            "--format",
            "k8s-secret",
            "--out",
            str(tmp_path / "s.yaml"),
            "--unsafe-plaintext-key",
        ],
        ["cert", "export", "capper", "--format", "key", "--out", str(tmp_path / "enc.key")],
        ["cert", "revoke", "capper", "--reason", "key-compromise"],
        ["crl", "generate", "--format", "json"],
        ["crl", "generate"],
        ["ca", "rotate"],
        ["ca", "rotate", "--reissue"],
        ["ca", "rotate", "--finalize"],
        ["ca", "info", "--format", "json"],
        ["ca", "export", "--format", "bundle"],
        ["ca", "check"],
        ["audit", "list"],
        ["cert", "issue", "bad", "--profile", "nope"],
        ["cert", "export", "broker", "--format", "key"],
    ]
    for args in commands:
        extra = {"PLANTLINE_PKI_EXPORT_PASSPHRASE": "export secret"} if "enc.key" in " ".join(args) else {}
        runs.append(run_cli(*args, env={**env, **extra}, check=False))
    runs.append(
        run_cli(
            "cert",
            "issue",
            "x",
            "--profile",
            "mqtt-client",
            env={**env, "PLANTLINE_PKI_PASSPHRASE": "wrong"},
            check=False,
        )
    )
    failed = {(r.args[0], r.args[1], r.args[2], r.returncode) for r in runs if r.returncode}
    assert failed == {
        ("cert", "needs-renewal", "filler", 1),  # 1 = fine, nothing to renew
        ("cert", "issue", "bad", 3),
        ("cert", "export", "broker", 3),
        ("cert", "issue", "x", 6),
    }, [(r.args, r.stderr) for r in runs if r.returncode]

    fragments = _key_fragments(out)
    assert fragments, "the bundle export should have written a plaintext key to compare against"
    logs = [(ca / "audit.jsonl").read_bytes()]
    for blob in [*(r.stdout.encode() for r in runs), *(r.stderr.encode() for r in runs), *logs]:
        assert not PEM_KEY.search(blob)
        assert PASSPHRASE.encode() not in blob
        assert b"export secret" not in blob
        assert not any(fragment in blob for fragment in fragments)

    # Secrets on disk: private directory and database, 0600 keys, encrypted keys in the inventory.
    assert stat.S_IMODE(ca.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca / "pki.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((ca / "audit.jsonl").stat().st_mode) == 0o600
    for secret in (out / "broker.key", tmp_path / "s.yaml", tmp_path / "enc.key"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in (tmp_path / "enc.key").read_bytes()
    db = (ca / "pki.db").read_bytes()
    assert b"-----BEGIN PRIVATE KEY-----" not in db
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in db


def test_plaintext_key_export_needs_the_unsafe_flag(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    run_cli("ca", "init", str(ca), "--name", "Flag CA")
    env = {"PLANTLINE_PKI_DIR": str(ca)}
    run_cli("cert", "issue", "c", "--profile", "mqtt-client", env=env)
    refused = run_cli(
        "cert", "export", "c", "--format", "k8s-secret", "--out", str(tmp_path / "s.yaml"), env=env, check=False
    )
    assert refused.returncode == 3
    assert "--unsafe-plaintext-key" in refused.stderr
    assert not (tmp_path / "s.yaml").exists()
    # Without a passphrase source and without a terminal, an encrypted key export is refused too.
    no_pass = run_cli("cert", "export", "c", "--format", "key", "--out", str(tmp_path / "c.key"), env=env, check=False)
    assert no_pass.returncode == 6
    assert not (tmp_path / "c.key").exists()
    # Existing files are never overwritten without --force.
    (tmp_path / "taken.pem").write_text("keep me")
    clash = run_cli(
        "cert", "export", "c", "--format", "pem", "--out", str(tmp_path / "taken.pem"), env=env, check=False
    )
    assert clash.returncode == 5
    assert (tmp_path / "taken.pem").read_text() == "keep me"
