"""The operator SIGKILLed mid-reconcile, many times, converges: no orphans, no duplicate certificates.

`plantline operator run` runs as a real process, as the operator's ServiceAccount, on the real
control plane. While the spec of a `perMachine` line keeps changing (machines added and removed),
the operator is killed with SIGKILL at seeded random moments (0.3-3 s after its start) and
restarted; at least a quarter of the kills must find the line not yet Ready. At the end one clean
run must bring the line to `Ready` for its last generation with exactly the children that
generation asks for, one certificate Secret per identity, every removed identity's certificate
in the CRL, and a further restart must not issue any certificate again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from plantline_testing.controlplane import BUILD_TIMEOUT_S, ControlPlane
from plantline_testing.kube import (
    OPERATOR_NAMESPACE,
    apply,
    children,
    demo_line,
    install_operator,
    items,
    line_config_maps,
    namespace,
    ready,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 900)]

NS = "killed"
NAME = "kl"
KILLS = 12
RESYNC_S = 2.0
SEED = 20261122
# The machine sets the spec cycles through while the operator is being killed.
SHAPES: tuple[tuple[str, ...], ...] = (
    ("filler", "capper", "labeler"),
    ("filler",),
    ("capper", "labeler"),
    ("filler", "labeler"),
)


class OperatorProcess:
    """`plantline operator run` as a child process, its output appended to one log file."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "plantline.operator.cli",
                    "operator",
                    "run",
                    "--connector-image=plantline-connectors:e2e",
                    f"--resync-seconds={RESYNC_S}",
                    f"--kubeconfig={self.kubeconfig}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def operator(plane: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    kubeconfig = install_operator(plane)
    namespace(plane, NS)
    process = OperatorProcess(kubeconfig, tmp_path / "operator.log")
    try:
        yield process
    finally:
        process.kill()


def _identities(plane: ControlPlane) -> dict[str, tuple[str, int]]:
    """Return identity -> (Secret name, serial) of the line's certificate Secrets."""
    found: dict[str, tuple[str, int]] = {}
    for secret in items(plane, f"/api/v1/namespaces/{NS}/secrets", f"plantline.dev/line={NAME}"):
        if secret["type"] != "kubernetes.io/tls":
            continue
        identity = secret["metadata"]["annotations"]["plantline.dev/identity"]
        assert identity not in found, f"two Secrets for {identity}"
        serial = x509.load_pem_x509_certificate(b64decode(secret["data"]["tls.crt"])).serial_number
        found[identity] = (secret["metadata"]["name"], serial)
    return found


def _ca(plane: ControlPlane) -> tuple[x509.Certificate, set[int]]:
    trust = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/configmaps/plantline-ca-trust")["data"]
    crl = x509.load_pem_x509_crl(trust["crl.pem"].encode())
    return x509.load_pem_x509_certificate(trust["ca.crt"].encode()), {r.serial_number for r in crl}


def test_sigkill_mid_reconcile_converges_without_orphans_or_duplicates(
    plane: ControlPlane, operator: OperatorProcess
) -> None:
    rng = random.Random(SEED)
    body: dict[str, Any] = {}
    seen_serials: dict[str, set[int]] = {}
    interrupted = 0  # kills that found the line not yet Ready for the generation just applied
    for round_ in range(KILLS):
        shape = SHAPES[round_ % len(SHAPES)]
        body = demo_line(NAME, NS, line="line3", grouping="perMachine", machines=shape)
        apply(plane, body)
        operator.start()
        # The operator imports for ~1.5 s and reconciles in about one more: kills within 3 s land
        # before, during and after its reconcile.
        time.sleep(rng.uniform(0.3, 3.0))
        interrupted += ready(plane, NS, NAME) is None
        operator.kill()
        for identity, (_name, serial) in _identities(plane).items():
            seen_serials.setdefault(identity, set()).add(serial)

    print(f"{interrupted} of {KILLS} kills found the line not yet Ready", file=sys.stderr)
    assert interrupted >= KILLS // 4, f"only {interrupted} of {KILLS} kills came before the line was Ready"
    operator.start()
    line = wait_for("the line Ready after the last kill", lambda: ready(plane, NS, NAME), 120)
    final_shape = SHAPES[(KILLS - 1) % len(SHAPES)]
    assert line["status"]["machineCount"] == len(final_shape)

    made = wait_for(
        "exactly the last generation's children",
        lambda: (
            c if (c := children(plane, NS, NAME))["Deployment"] == sorted(f"{NAME}-{m}" for m in final_shape) else None
        ),
        60,
    )
    wanted_secrets = sorted([f"{NAME}-{m}-tls" for m in final_shape] + [f"{NAME}-broker-tls", f"{NAME}-reader-tls"])
    assert made["Secret"] == wanted_secrets
    assert made["ConfigMap"] == line_config_maps(NAME)
    assert made["NetworkPolicy"] == [f"{NAME}-connectors"]
    config = plane.request("GET", f"/api/v1/namespaces/{NS}/configmaps/{NAME}-connectors")["data"]
    assert sorted(config) == sorted(f"{m}.yaml" for m in final_shape)

    ca, revoked = _ca(plane)
    current = _identities(plane)
    for identity, (_name, serial) in current.items():
        assert serial not in revoked, f"{identity}'s current certificate is revoked"
    # Every certificate ever stored for an identity that is gone, or superseded, is revoked.
    for identity, serials in seen_serials.items():
        live = current.get(identity, ("", -1))[1]
        assert serials - {live} <= revoked, f"{identity}: stored certificates left valid: {serials - {live} - revoked}"
    for secret in items(plane, f"/api/v1/namespaces/{NS}/secrets", f"plantline.dev/line={NAME}"):
        x509.load_pem_x509_certificate(b64decode(secret["data"]["tls.crt"])).verify_directly_issued_by(ca)

    # Converged means idempotent: another kill and restart issues nothing new.
    time.sleep(RESYNC_S * 2)
    operator.kill()
    operator.start()
    time.sleep(RESYNC_S * 3)
    wait_for("Ready after the extra restart", lambda: ready(plane, NS, NAME), 60)
    assert _identities(plane) == current
    assert b"PRIVATE KEY" not in operator.log.read_bytes()
