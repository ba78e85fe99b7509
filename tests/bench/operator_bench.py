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

    uv run python tests/bench/operator_bench.py [--lines 100]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from plantline_testing import free_port
from plantline_testing.controlplane import ControlPlane, ensure_binaries
from plantline_testing.kube import demo_line, install_operator, namespace, plantline, ready, wait_for


def say(text: str) -> None:
    print(f"operator_bench: {text}", file=sys.stderr, flush=True)


def _proc_status(pid: int) -> dict[str, int]:
    found = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = row.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])  # kB
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _bare(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "bare"}},
            "template": {
                "metadata": {"labels": {"app": "bare"}},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "c",
                            "image": "bare:0",
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                },
            },
        },
    }


def baseline_deployments(plane: ControlPlane, count: int) -> float:
    """Seconds from applying `count` bare one-pod Deployments at once until all are Available."""
    ns = namespace(plane, f"baseline-{count}")
    listing = {"apiVersion": "v1", "kind": "List", "items": [_bare(f"bare-{i}", ns) for i in range(count)]}
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
        answer = plane.request("GET", "/apis/plantline.dev/v1alpha1/plantlines")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100)
    args = parser.parse_args()

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
            base = baseline_deployments(plane, 1)
            say(f"baseline: a bare Deployment Available in {base:.2f} s")
            base_many = baseline_deployments(plane, args.lines)
            say(f"baseline: {args.lines} bare Deployments Available in {base_many:.2f} s")
            first = one_line(plane, "first")
            say(f"the first PlantLine Ready in {first:.2f} s (the operator creates its CA)")
            single = one_line(plane, "second")
            say(f"1 more PlantLine Ready in {single:.2f} s")
            before = _proc_status(operator.pid)
            cpu_before = _cpu_seconds(operator.pid)
            last, each = many_lines(plane, args.lines)
            memory = _proc_status(operator.pid)
            cpu = _cpu_seconds(operator.pid) - cpu_before
            if plantline(plane, "single-first", "first") is None:
                raise RuntimeError("the first line vanished")
        finally:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()

    p95 = each[min(len(each) - 1, round(0.95 * (len(each) - 1)))]
    print(f"control plane binaries (warm cache): {build_s:.2f} s")
    print(f"baseline, a bare Deployment apply -> Available: {base:.2f} s")
    print(f"baseline, {args.lines} bare Deployments in one apply -> all Available: {base_many:.2f} s")
    print(f"first PlantLine apply -> Ready, creating the RSA-3072 CA: {first:.2f} s (x{first / base:.1f} the baseline)")
    print(f"1 PlantLine apply -> Ready: {single:.2f} s (x{single / base:.1f} the baseline)")
    print(
        f"{args.lines} PlantLines apply -> all Ready: {last:.1f} s "
        f"(median {statistics.median(each):.1f} s, p95 {p95:.1f} s; {args.lines / last:.1f} lines/s; "
        f"x{last / base_many:.1f} the baseline)"
    )
    print(f"operator CPU for {args.lines} lines: {cpu:.1f} s ({cpu / args.lines * 1000:.0f} ms per line)")
    print(
        f"operator memory: {before.get('VmRSS', 0) / 1024:.0f} MiB with 1 line, "
        f"{memory.get('VmRSS', 0) / 1024:.0f} MiB with {args.lines + 2} (peak {memory.get('VmHWM', 0) / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
