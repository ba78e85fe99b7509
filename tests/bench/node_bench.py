"""The images and a real node: image builds cold and warm; apply -> pod Ready -> first DDATA, 5 times.

Builds the connector and operator images (plantline_testing.images, on the tests' Debian 12
base): once from scratch (`build.sh --rebuild`: no layer cached; the base image and the
dependency wheels at hand), then again with nothing changed, which finds both images by their
hash. Then starts the control plane and a real node (kubelet, containerd, runc, the CNI bridge;
plantline_testing.node), installs the operator from an overlay of operator/deploy as its own pod,
and starts the demo line's PLC simulators and broker on the node's address, with a reader.

Each of the `--runs` rounds applies a PlantLine (the same line under a new name, so its
certificates, claim and pod are new), and times from `kubectl apply` returning to the connector
pod Ready (its /readyz: connected, born) and to the first DDATA at the reader; then deletes the
line and waits until its pod is gone. The baseline, in the same run: a bare one-pod Deployment
of the connector image (sleeping, no probes, no volume) becoming Available on the same node.

    uv run python tests/bench/node_bench.py [--runs 5] [--format table|json]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from plantline.connectors.sparkplug import MessageType
from plantline_testing.controlplane import ControlPlane
from plantline_testing.images import Images, ensure_images, size_bytes
from plantline_testing.kube import apply, bare_deployment, namespace, wait_for
from plantline_testing.node import Node
from plantline_testing.nodeline import NodeLine, install_operator_overlay
from plantline_testing.sparkplug_reader import SparkplugReader

say = harness.progress("node-bench")
NS = "bench"
STORAGE_CLASS = "bench-local"
TIMEOUT_S = 180.0


@dataclass
class Figures:
    cold_s: float
    warm_s: float
    sizes: dict[str, int]
    bare: list[float]
    ready: list[float]
    first_data: list[float]


def _pods(plane: ControlPlane, selector: str) -> list[dict[str, Any]]:
    answer = plane.request("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector={selector}")
    found: list[dict[str, Any]] = answer["items"]
    return found


def _pod_ready(plane: ControlPlane, selector: str) -> bool:
    for pod in _pods(plane, selector):
        conditions = pod.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return True
    return False


def _timed_bare(plane: ControlPlane, image: str, index: int) -> float:
    name = f"bare-{index}"
    started = time.monotonic()
    bare = bare_deployment(name, NS, image=image, command=["sleep", "3600"])
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(bare))
    wait_for(f"{name} Ready", lambda: _pod_ready(plane, f"app={name}"), TIMEOUT_S, interval=0.05)
    elapsed = time.monotonic() - started
    plane.kubectl("delete", "deployment", "-n", NS, name, "--wait=false")
    wait_for(f"{name}'s pod gone", lambda: not _pods(plane, f"app={name}"), TIMEOUT_S)
    return elapsed


def _timed_line(plane: ControlPlane, line: NodeLine, reader: SparkplugReader, name: str) -> tuple[float, float]:
    body = json.loads(json.dumps(line.body))
    body["metadata"]["name"] = name
    selector = f"plantline.dev/line={name}"
    births = len(reader.of(MessageType.NBIRTH))
    started_at, started = time.time(), time.monotonic()
    apply(plane, body)
    wait_for(f"{name}'s connector pod Ready", lambda: _pod_ready(plane, selector), TIMEOUT_S, interval=0.05)
    ready = time.monotonic() - started
    reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) > births, TIMEOUT_S, f"{name}'s NBIRTH")
    reader.wait_for(
        lambda: any(m.at > started_at for m in reader.of(MessageType.DDATA)), TIMEOUT_S, f"{name}'s first DDATA"
    )
    first = min(m.at for m in reader.of(MessageType.DDATA) if m.at > started_at) - started_at
    plane.kubectl("delete", "pl", "-n", NS, name, "--wait=false")
    wait_for(f"{name}'s pod gone", lambda: not _pods(plane, selector), TIMEOUT_S)
    return ready, first


def build_images() -> tuple[Images, float, float]:
    """Return the images and the seconds of a build from scratch and of a warm one."""
    ensure_images()  # the base image and the wheels at hand
    started = time.monotonic()
    ensure_images(rebuild=True)
    cold = time.monotonic() - started
    started = time.monotonic()
    images = ensure_images()
    warm = time.monotonic() - started
    say(f"images: cold {cold:.1f} s, warm {warm:.2f} s")
    return images, cold, warm


def measure(images: Images, work: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Return, per round, the bare Deployment's time to Ready, the line's pod Ready and first DDATA."""
    bare: list[float] = []
    ready: list[float] = []
    first: list[float] = []
    with ControlPlane(work / "cp") as plane, Node(plane, work / "node") as node:
        for image in (images.operator, images.connectors):
            node.load_image(image)
        node.add_local_volumes(STORAGE_CLASS, runs + 1)
        install_operator_overlay(
            plane,
            work / "overlay",
            operator_image=images.operator,
            connector_image=images.connectors,
            args=(f"--storage-class={STORAGE_CLASS}",),
        )
        namespace(plane, NS)
        line = NodeLine(plane, node, work / "line", name="warmup", namespace=NS)
        try:
            line.start_simulators()
            apply(plane, line.body)
            line.start_broker()  # the broker's certificate and trust come from the first line
            with line.reader("bench-reader") as reader:
                say("warm-up round (the operator creates its CA)")
                _timed_line(plane, line, reader, "warmup")
                for index in range(runs):
                    bare.append(_timed_bare(plane, images.connectors, index))
                    pod, data = _timed_line(plane, line, reader, f"bench-{index}")
                    ready.append(pod)
                    first.append(data)
                    say(f"round {index + 1}: bare {bare[-1]:.2f} s, pod Ready {pod:.2f} s, first DDATA {data:.2f} s")
        finally:
            line.stop()
    return bare, ready, first


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument(
        "--runs", type=harness.positive, default=5, help="rounds of apply -> Ready -> first DDATA (default 5)"
    )
    args = parser.parse_args()
    env = harness.environment(
        podman=harness.command_output("podman", "--version"),
        containerd=harness.command_output("containerd", "--version"),
    )
    say(harness.environment_line(env))
    images, cold, warm = build_images()
    sizes = {"connectors": size_bytes(images.connectors), "operator": size_bytes(images.operator)}
    with tempfile.TemporaryDirectory(prefix="node-bench-") as tmp:
        bare, ready, first = measure(images, Path(tmp), args.runs)
    figures = Figures(cold, warm, sizes, bare, ready, first)
    harness.report(f"Images, and a PlantLine on a real node ({args.runs} rounds)", env, rows(figures), args.format)


def rows(f: Figures) -> list[harness.Row]:
    """Return the table: builds, sizes, then each line time (median and worst) against the bare pod's."""
    bare = "bare pod of the connector image -> Ready"
    median_bare, worst_bare = statistics.median(f.bare), max(f.bare)
    return [
        harness.Row("image build from scratch (both)", f.cold_s, "s", notes="base image and wheels at hand"),
        harness.Row("image build, nothing changed", f.warm_s, "s", "from scratch", f.cold_s, "found by hash"),
        harness.Row("connector image size", f.sizes["connectors"] / 1e6, "MB", notes="uncompressed"),
        harness.Row("operator image size", f.sizes["operator"] / 1e6, "MB", notes="uncompressed"),
        harness.Row("apply -> connector pod Ready, median", statistics.median(f.ready), "s", bare, median_bare),
        harness.Row("apply -> connector pod Ready, worst", max(f.ready), "s", bare, worst_bare),
        harness.Row("apply -> first DDATA, median", statistics.median(f.first_data), "s", bare, median_bare),
        harness.Row("apply -> first DDATA, worst", max(f.first_data), "s", bare, worst_bare),
    ]


if __name__ == "__main__":
    main()
