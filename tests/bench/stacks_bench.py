"""The core stack's tools and its `pulumi up`: the Pulumi binaries' build, cold and warm; up, preview, destroy.

The Pulumi CLI and the Kubernetes provider (tests/harness/pulumi/build.sh): with `--cold`, built
again with an empty Go build cache (the modules already downloaded), then the warm run that finds
them. Then, on a fresh control plane (kwok runs the pods), `pulumi up` of stacks/core to every
workload Ready, `pulumi preview` with nothing to change, and `pulumi destroy`. The baseline, in
the same run and on the same control plane: `kubectl apply -k operator/deploy` and the operator's
Deployment Available (the part of the stack kubectl can install alone), then its deletion.

    uv run python tests/bench/stacks_bench.py [--cold] [--format table|json]
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import harness
from plantline_testing.controlplane import ControlPlane
from plantline_testing.kube import DEPLOY, wait_for
from plantline_testing.pulumi_cli import broker_tls, core_stack, ensure_pulumi

say = harness.progress("stacks-bench")
SECRETS = ("emqxApiSecret", "grafanaAdminPassword", "postgresPassword")


def timed(step: Callable[[], object]) -> float:
    started = time.monotonic()
    step()
    return time.monotonic() - started


def build(cold: bool) -> tuple[Path, float | None, float]:
    """Return the binaries' directory, the cold build's seconds (with --cold) and the warm run's."""
    cold_s = None
    if cold:
        with tempfile.TemporaryDirectory(prefix="pulumi-gocache-") as cache:
            os.environ["PLANTLINE_GOCACHE"] = cache
            try:
                cold_s = timed(lambda: ensure_pulumi(rebuild=True))
            finally:
                del os.environ["PLANTLINE_GOCACHE"]
        say(f"cold build: {cold_s:.0f} s")
    started = time.monotonic()
    bin_dir = ensure_pulumi()
    return bin_dir, cold_s, time.monotonic() - started


def baseline(plane: ControlPlane) -> tuple[float, float]:
    """Return the seconds of `kubectl apply -k operator/deploy` to the operator Available, and of its deletion."""

    def available() -> bool:
        found = plane.kubectl("get", "deployment", "-n", "plantline-system", "plantline-operator", check=False)
        return found.returncode == 0 and "1/1" in found.stdout

    def apply() -> None:
        plane.kubectl("apply", "-k", str(DEPLOY))
        wait_for("the operator Available", available, 300)

    applied = timed(apply)
    deleted = timed(lambda: plane.kubectl("delete", "-k", str(DEPLOY), "--wait=true"))
    return applied, deleted


def stack_times(plane: ControlPlane, bin_dir: Path, work: Path) -> tuple[float, float, float]:
    """Return the seconds of `pulumi up`, of a `preview` with no change and of `destroy`, for stacks/core."""
    secrets = {k: f"bench-{k}" for k in SECRETS}
    stack = core_stack(bin_dir, work / "pulumi", plane.kubeconfig, broker_tls(work), secrets)
    up = timed(lambda: stack.run("up", "--yes", "--skip-preview"))
    preview = timed(lambda: stack.run("preview", "--expect-no-changes"))
    destroy = timed(lambda: stack.run("destroy", "--yes"))
    return up, preview, destroy


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--cold", action="store_true", help="build the binaries again with an empty Go build cache")
    args = parser.parse_args()
    bin_dir, cold_s, warm_s = build(args.cold)
    env = harness.environment(
        go=harness.command_output("go", "version"), pulumi=harness.command_output(bin_dir / "pulumi", "version")
    )
    say(harness.environment_line(env))
    with tempfile.TemporaryDirectory(prefix="stacks-bench-") as tmp, ControlPlane(Path(tmp) / "cp") as plane:
        applied, deleted = baseline(plane)
        say(f"baseline: apply -k {applied:.1f} s, delete {deleted:.1f} s")
        up, preview, destroy = stack_times(plane, bin_dir, Path(tmp))
    apply_k = "kubectl apply -k operator/deploy -> operator Available"
    rows = [
        harness.Row("Pulumi binaries, cold build", cold_s, "s", notes="empty Go build cache; --cold only"),
        harness.Row("Pulumi binaries, warm run", warm_s, "s", "cold build", cold_s, "found by hash"),
        harness.Row("pulumi up stacks/core -> all Ready", up, "s", apply_k, applied, "kwok runs the pods"),
        harness.Row("pulumi preview, no change", preview, "s"),
        harness.Row("pulumi destroy stacks/core", destroy, "s", "kubectl delete -k operator/deploy", deleted),
    ]
    harness.report("The core stack: Pulumi's binaries and pulumi up", env, rows, args.format)


if __name__ == "__main__":
    main()
