"""The Pulumi CLI for tests: `ensure_pulumi()` builds it, `PulumiStack` runs one stack with local state.

The CLI and the Kubernetes provider are built from the Go module proxy by
tests/harness/pulumi/build.sh; the language host is plantline_testing.pulumi_host, run by this
interpreter. A `PulumiStack` keeps everything of its own in a work directory: the local backend
(`pulumi login file://DIR`), PULUMI_HOME, a copy of the project, and a bin directory with the
host's launcher; plugins come from PATH only (no download). `core_stack()` makes one of this
checkout's stacks/core, configured; `destroy_core()` destroys it and checks that nothing is left.
"""

from __future__ import annotations

import functools
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
from plantline_testing.controlplane import ApiError, ControlPlane
from plantline_testing.kube import DEPLOY, wait_for

ROOT = Path(__file__).resolve().parents[4]
BUILD_SCRIPT = ROOT / "tests" / "harness" / "pulumi" / "build.sh"
CORE_PROJECT = ROOT / "stacks" / "core"
BUILD_TIMEOUT_S = 3600.0
COMMAND_TIMEOUT_S = 900.0
CORE_NAMESPACE = "plantline-system"
PASSPHRASE = "plantline-tests"  # encrypts the test stack's secrets; the state is a temporary directory
# What the core stack makes outside its namespace, and the namespace: gone once it is destroyed.
CORE_CLUSTER_WIDE = (
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/plantlines.plantline.dev",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/plantline-operator",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/plantline-prometheus",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/plantline-grafana",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/plantline-operator",
    f"/api/v1/namespaces/{CORE_NAMESPACE}",
)


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


def core_stack(
    bin_dir: Path,
    work_dir: Path,
    kubeconfig: Path,
    tls: Mapping[str, str],
    secrets: Mapping[str, str],
    plain: Mapping[str, str] | None = None,
) -> PulumiStack:
    """Return a new stack of this checkout's stacks/core for `kubeconfig`'s cluster, its config set.

    `tls` is `broker_tls()`'s (its key set as a secret), `secrets` are set with --secret, `plain`
    as is; `operatorManifests` is this checkout's operator/deploy unless `plain` names another.
    """
    stack = PulumiStack(bin_dir, CORE_PROJECT, work_dir, env={"KUBECONFIG": str(kubeconfig)})
    stack.init()
    stack.set_config({"tlsCert": tls["tlsCert"], "caBundle": tls["caBundle"], "operatorManifests": str(DEPLOY)})
    stack.set_config(plain or {})
    stack.set_config({"tlsKey": tls["tlsKey"], **secrets}, secret=True)
    return stack


def destroy_core(plane: ControlPlane, stack: PulumiStack) -> None:
    """Run `pulumi destroy`; return once nothing of the core stack is left, in the cluster or the state."""
    stack.run("destroy", "--yes")
    for path in CORE_CLUSTER_WIDE:
        wait_for(f"{path} to be gone", functools.partial(_absent, plane, path), timeout=120)
    selector = "labelSelector=app.kubernetes.io/part-of=plantline"
    left = plane.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles?{selector}")
    assert left["items"] == []
    state = json.loads(stack.run("stack", "export").stdout)
    assert [r["type"] for r in state["deployment"].get("resources") or []] in ([], ["pulumi:pulumi:Stack"])


def _absent(plane: ControlPlane, path: str) -> bool:
    try:
        plane.request("GET", path)
    except ApiError as error:
        if error.status == 404:
            return True
        raise
    return False


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
