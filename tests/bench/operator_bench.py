"""The operator on the real control plane: apply -> Ready for 1 and for N PlantLines, and its memory.

Starts the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok; built from
source on first use), installs `operator/deploy`, and runs `plantline operator run` as a process
authenticated as its ServiceAccount, waiting for its liveness endpoint. Then it times, from
`kubectl apply` returning:

- the baselines, in the same run: one, then N bare one-pod Deployments becoming Available (what
  the controller-manager, scheduler and kwok take at least; every connector waits for this too);
- one demo PlantLine becoming Ready (certificates issued, children applied, Deployment Available),
  first when the operator still has to create its CA, then once more with the CA in place;
- N PlantLines applied in one `kubectl apply` (one namespace each), until the last is Ready, with
  the median and p95 of the per-line times (polled every 0.25 s);
- the operator's resident memory (VmRSS) and peak (VmHWM) with N lines, and its CPU seconds.

Each PlantLine time is compared with its bare-Deployment baseline: the ratio is line / baseline.

    uv run python tests/bench/operator_bench.py [--lines 100] [--format table|json]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import harness
from plantline.operator.api import PLURAL
from plantline_testing import free_port
from plantline_testing.controlplane import ControlPlane, ensure_binaries
from plantline_testing.kube import (
    PLANTLINES,
    bare_deployment,
    demo_line,
    install_operator,
    namespace,
    plantline,
    ready,
    wait_for,
)

say = harness.progress("operator-bench")


def _proc_status(pid: int) -> dict[str, int]:
    found = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = row.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])  # kB
    return found


def _cpu_seconds(pid: int) -> float:
    return harness.cpu_seconds(f"/proc/{pid}/stat") or 0.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def baseline_deployments(plane: ControlPlane, count: int) -> float:
    """Seconds from applying `count` bare one-pod Deployments at once until all are Available."""
    ns = namespace(plane, f"baseline-{count}")
    listing = {"apiVersion": "v1", "kind": "List", "items": [bare_deployment(f"bare-{i}", ns) for i in range(count)]}
    start = time.monotonic()
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(listing))

    def available() -> bool:
        answer = plane.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments")
        up = [
            d
            for d in answer.get("items", [])
            if any(
                c["type"] == "Available" and c["status"] == "True" for c in d.get("status", {}).get("conditions", [])
            )
        ]
        return len(up) == count

    wait_for(f"{count} bare Deployments Available", available, 60 + count * 3, interval=0.05)
    return time.monotonic() - start


def one_line(plane: ControlPlane, name: str) -> float:
    namespace(plane, f"single-{name}")
    start = time.monotonic()
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(demo_line(name, f"single-{name}", line=name)))
    wait_for("one PlantLine Ready", lambda: ready(plane, f"single-{name}", name), 120, interval=0.05)
    return time.monotonic() - start


def many_lines(plane: ControlPlane, count: int) -> tuple[float, list[float]]:
    """Apply `count` lines at once; return the time to the last Ready and each line's time."""
    names = [(f"bench-{i:03d}", f"l{i:03d}") for i in range(count)]
    for ns, _name in names:
        namespace(plane, ns)
    listing: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [demo_line(name, ns, line=name) for ns, name in names],
    }
    start = time.monotonic()
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(listing))
    done: dict[str, float] = {}
    deadline = start + 60 + count * 6
    while len(done) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(done)}/{count} PlantLines Ready")
        answer = plane.request("GET", f"{PLANTLINES}/{PLURAL}")
        now = time.monotonic() - start
        for item in answer.get("items", []):
            meta = item["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            if key in done or not meta["namespace"].startswith("bench-"):
                continue
            if ready_item(item):
                done[key] = now
        if len(done) % 10 == 0 and done:
            say(f"{len(done)}/{count} Ready after {now:.1f} s")
        time.sleep(0.25)
    return max(done.values()), sorted(done.values())


def ready_item(item: dict[str, Any]) -> bool:
    generation = item["metadata"].get("generation")
    for condition in item.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return bool(condition["status"] == "True" and condition.get("observedGeneration") == generation)
    return False


@dataclass(frozen=True, slots=True)
class Figures:
    """What one run measured: seconds, the per-line times, the operator's CPU and memory (kB)."""

    build_s: float
    base: float
    base_many: float
    first: float
    single: float
    last: float
    each: list[float]
    cpu: float
    before: dict[str, int]
    memory: dict[str, int]


def measure(plane: ControlPlane, operator: int, lines: int, build_s: float) -> Figures:
    """Time the baselines and the PlantLines on a running operator (PID `operator`); read its CPU and memory."""
    base = baseline_deployments(plane, 1)
    say(f"baseline: a bare Deployment Available in {base:.2f} s")
    base_many = baseline_deployments(plane, lines)
    say(f"baseline: {lines} bare Deployments Available in {base_many:.2f} s")
    first = one_line(plane, "first")
    say(f"the first PlantLine Ready in {first:.2f} s (the operator creates its CA)")
    single = one_line(plane, "second")
    say(f"1 more PlantLine Ready in {single:.2f} s")
    before = _proc_status(operator)
    cpu_before = _cpu_seconds(operator)
    last, each = many_lines(plane, lines)
    memory = _proc_status(operator)
    cpu = _cpu_seconds(operator) - cpu_before
    if plantline(plane, "single-first", "first") is None:
        raise RuntimeError("the first line vanished")
    return Figures(build_s, base, base_many, first, single, last, each, cpu, before, memory)


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--lines", type=harness.positive, default=100, help="PlantLines applied at once (default 100)")
    args = parser.parse_args()
    env = harness.environment()
    say(harness.environment_line(env))

    start = time.monotonic()
    ensure_binaries()
    build_s = time.monotonic() - start
    say(f"control plane binaries ready in {build_s:.2f} s (cached)" if build_s < 60 else f"built in {build_s:.0f} s")
    with tempfile.TemporaryDirectory(prefix="operator-bench-") as tmp, ControlPlane(Path(tmp) / "cp") as plane:
        kubeconfig = install_operator(plane)
        log = (Path(tmp) / "operator.log").open("wb")
        port = free_port()
        started = time.monotonic()
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantline.operator.cli",
                "operator",
                "run",
                "--connector-image=plantline-connectors:bench",
                f"--kubeconfig={kubeconfig}",
                f"--liveness=http://127.0.0.1:{port}/healthz",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for("the operator's liveness endpoint", partial(_healthy, port), 60, interval=0.1)
            say(f"operator up in {time.monotonic() - started:.1f} s")
            figures = measure(plane, operator.pid, args.lines, build_s)
        finally:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()

    title = f"The operator on the real control plane: apply -> Ready for 1 and {args.lines} PlantLines"
    harness.report(title, env, rows(figures, args.lines), args.format)


def rows(f: Figures, lines: int) -> list[harness.Row]:
    """Return the table: each PlantLine time against its bare-Deployment baseline, then CPU and memory."""
    bare, bare_many = "a bare Deployment -> Available", f"{lines} bare Deployments -> all Available"
    median, p95 = (harness.number(harness.percentile(f.each, q)) for q in (0.5, 0.95))
    spread = f"per line: median {median} s, p95 {p95} s; {lines / f.last:.1f} lines/s"
    return [
        harness.Row("control plane binaries ready", f.build_s, "s", notes="built on first use, cached after"),
        harness.Row(bare, f.base, "s"),
        harness.Row(bare_many, f.base_many, "s", notes="in one apply"),
        harness.Row("first PlantLine -> Ready", f.first, "s", bare, f.base, "the operator creates its RSA-3072 CA"),
        harness.Row("1 PlantLine -> Ready", f.single, "s", bare, f.base),
        harness.Row(f"{lines} PlantLines -> all Ready", f.last, "s", bare_many, f.base_many, spread),
        harness.Row("operator CPU per line", f.cpu / lines * 1000, "ms", notes=f"{f.cpu:.1f} CPU-s for {lines} lines"),
        harness.Row("operator memory with 2 lines", f.before.get("VmRSS", 0) / 1024, "MiB"),
        harness.Row(
            f"operator memory with {lines + 2} lines",
            f.memory.get("VmRSS", 0) / 1024,
            "MiB",
            notes=f"peak {f.memory.get('VmHWM', 0) / 1024:.0f} MiB",
        ),
    ]


if __name__ == "__main__":
    main()
