"""The Pulumi CLI for tests: `ensure_pulumi()` builds it, `PulumiStack` runs one stack with local state.

The CLI and the Kubernetes provider are built from the Go module proxy by
tests/harness/pulumi/build.sh; the language host is plantline_testing.pulumi_host, run by this
interpreter. A `PulumiStack` keeps everything of its own in a work directory: the local backend
(`pulumi login file://DIR`), PULUMI_HOME, a copy of the project, and a bin directory with the
host's launcher; plugins come from PATH only (no download).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plantline.pki.authority import Authority
from plantline_testing import run_build, run_in_session

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "pulumi" / "build.sh"
BUILD_TIMEOUT_S = 3600.0
COMMAND_TIMEOUT_S = 900.0
CORE_NAMESPACE = "plantline-system"
PASSPHRASE = "plantline-tests"  # encrypts the test stack's secrets; the state is a temporary directory


def broker_tls(directory: Path) -> dict[str, str]:
    """Return the core stack's TLS config: the broker's key, its certificate from the toolkit's CA, the CA bundle.

    The CA is plantline.pki's, in `directory`; the key is made here and signed from a CSR.
    """
    authority = Authority.init(directory / "ca", name="Plant CA", passphrase=None, encrypt=False)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emqx")]))
        .sign(key, hashes.SHA256())
    )
    authority.issue(
        "emqx",
        profile="mqtt-server",
        sans=(f"emqx.{CORE_NAMESPACE}.svc", f"*.emqx-headless.{CORE_NAMESPACE}.svc.cluster.local"),
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "tlsKey": key_pem.decode(),
        "tlsCert": authority.certificate_pem("emqx").decode(),
        "caBundle": authority.trust_bundle().decode(),
    }


def configure_core(
    stack: PulumiStack, tls: Mapping[str, str], secrets: Mapping[str, str], plain: Mapping[str, str]
) -> None:
    """Set the core stack's config: `tls` (its key as a secret), `secrets` with --secret, `plain` as is."""
    stack.set_config({"tlsCert": tls["tlsCert"], "caBundle": tls["caBundle"], **plain})
    stack.set_config({"tlsKey": tls["tlsKey"], **secrets}, secret=True)


class PulumiError(RuntimeError):
    """A pulumi command failed: its arguments, exit status and output tail."""


def ensure_pulumi(*, rebuild: bool = False) -> Path:
    """Return the directory holding `pulumi` and `pulumi-resource-kubernetes`, building them once (or again)."""
    build = run_build(["bash", str(BUILD_SCRIPT), *(["--rebuild"] if rebuild else [])], BUILD_TIMEOUT_S)
    if build.returncode != 0:
        raise PulumiError(f"{BUILD_SCRIPT} failed with status {build.returncode} (its progress and error are above)")
    return Path(build.stdout.strip().splitlines()[-1])


class PulumiStack:
    """One stack of a copy of `project_dir`, run with the CLI in `bin_dir`; its state under `work_dir`."""

    def __init__(
        self,
        bin_dir: Path,
        project_dir: Path,
        work_dir: Path,
        *,
        name: str = "test",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.work_dir = work_dir
        self.project = work_dir / "project"
        shutil.copytree(project_dir, self.project, ignore=shutil.ignore_patterns("__pycache__", "Pulumi.*.yaml"))
        host_bin = work_dir / "host-bin"
        host_bin.mkdir()
        launcher = host_bin / "pulumi-language-python"
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m plantline_testing.pulumi_host "$@"\n')
        launcher.chmod(0o755)
        home = work_dir / "home"
        home.mkdir()
        self.env = {
            **os.environ,
            **(env or {}),
            "PATH": os.pathsep.join([str(host_bin), str(bin_dir), os.environ.get("PATH", "")]),
            "HOME": str(home),
            "PULUMI_HOME": str(home / ".pulumi"),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
        }

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Return the result of `pulumi ARGS` in the project; raise PulumiError when it fails and `check`.

        The CLI runs in a session of its own (`run_in_session`): its plugins, which it starts in
        process groups of their own, are stopped with it on a timeout or an interrupt.
        """
        done = run_in_session(
            [shutil.which("pulumi", path=self.env["PATH"]) or "pulumi", *args, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            input=stdin if stdin is not None else "",  # never the terminal: the CLI must not prompt
            timeout=timeout,
        )
        if check and done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
            raise PulumiError(f"pulumi {' '.join(args)} exited with {done.returncode}:\n{tail}")
        return done

    def init(self) -> None:
        """Log in to local state and create the stack (secrets encrypted with a passphrase)."""
        state = self.work_dir / "state"
        state.mkdir()
        # `--local` is file://~, and the CLI takes ~ from the passwd entry, not $HOME: name the directory.
        self.run("login", f"file://{state}")
        self.run("stack", "init", self.name, "--secrets-provider", "passphrase")

    def set_config(self, values: Mapping[str, str], *, secret: bool = False) -> None:
        """Set config keys; values go through stdin, so no secret appears in an argument list."""
        for key, value in values.items():
            self.run("config", "set", key, *(["--secret"] if secret else []), stdin=value)

    def outputs(self) -> dict[str, Any]:
        """Return the stack's outputs as `pulumi stack output --json` shows them (secrets masked)."""
        shown: dict[str, Any] = json.loads(self.run("stack", "output", "--json").stdout)
        return shown

    def preview_steps(self) -> list[dict[str, Any]]:
        """Return the steps `pulumi preview --json` plans (op and URN of each)."""
        plan = json.loads(self.run("preview", "--json").stdout)
        steps: list[dict[str, Any]] = plan.get("steps", [])
        return steps
