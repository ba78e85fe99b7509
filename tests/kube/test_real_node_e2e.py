"""The operator and its connectors as real pods on a real node: the platform team's install, end to end.

Beside the control plane built from source, `plantline_testing.node` runs a real node: the
kubelet of the same release, containerd and runc, the CNI bridge. The images are built from this
checkout (plantline_testing.images) and loaded into the node. The operator is installed with
`kubectl apply -k` of an overlay of operator/deploy that names the two images once, and runs as
its own pod and ServiceAccount. The demo line's broker and PLC simulators run on the host, at
the node's address on the pod network; the connector pod becomes Ready through its real /readyz.

Each connector group's outbox lives on a local PersistentVolume (StorageClass `plantline-local`,
passed to the operator with --storage-class). Replacing the pod, by a certificate renewal or by
deleting it, with the broker unreachable and samples buffered, loses no sample: counted as the
zero-loss end-to-end tests count (the PLCs frozen, the connectors' accepted-sample counters
against the distinct samples at a reader), and the new pod's NBIRTH carries a bdSeq after the old one's.

The tests run in file order on one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from plantline.connectors.sparkplug import MessageType
from plantline_testing import counting
from plantline_testing.controlplane import BUILD_TIMEOUT_S, ControlPlane
from plantline_testing.images import Images
from plantline_testing.kube import OPERATOR_NAMESPACE, apply, http_status, namespace, ready, wait_for
from plantline_testing.node import Node
from plantline_testing.nodeline import NodeLine, install_operator_overlay
from plantline_testing.sparkplug_reader import SparkplugReader

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 1800)]

NS = "lines"
LINE = "demo"
MACHINES = ("filler", "capper", "labeler")
STORAGE_CLASS = "plantline-local"
VOLUMES = 3
READY_S = 180.0
METRICS_PORT = 9400
CONNECT_TIMEOUT_S = 10  # the connector's, per MQTT CONNECT
CONNECT_ATTEMPTS = int(READY_S // CONNECT_TIMEOUT_S) + 1  # at most, while the old pod goes (broker frozen)


@pytest.fixture(scope="module")
def node(plane: ControlPlane, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(plane, tmp_path_factory.mktemp("node")) as started:
        started.load_image(images.operator)
        started.load_image(images.connectors)
        started.add_local_volumes(STORAGE_CLASS, VOLUMES)
        yield started


@pytest.fixture(scope="module")
def operator(plane: ControlPlane, node: Node, images: Images, tmp_path_factory: pytest.TempPathFactory) -> None:
    install_operator_overlay(
        plane,
        tmp_path_factory.mktemp("overlay"),
        operator_image=images.operator,
        connector_image=images.connectors,
        args=(f"--storage-class={STORAGE_CLASS}", "--resync-seconds=10"),
    )
    namespace(plane, NS)


@dataclass
class Run:
    """The line, its reader, and what the retired connector pods accepted (per machine)."""

    line: NodeLine
    reader: SparkplugReader
    bdseqs: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def run(plane: ControlPlane, node: Node, operator: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    line = NodeLine(plane, node, tmp_path_factory.mktemp("line"), name=LINE, namespace=NS)
    try:
        line.start_simulators()
        apply(plane, line.body)
        line.start_broker()
        with line.reader("node-reader") as reader:
            yield Run(line, reader)
    finally:
        line.stop()


# -- helpers -------------------------------------------------------------------------------------


def _pods(plane: ControlPlane, *, terminating: bool = False) -> list[dict[str, Any]]:
    """Return the line's connector pods; with `terminating`, also those being deleted (still running)."""
    found = plane.request("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=plantline.dev/line={LINE}")
    return [p for p in found.get("items", []) if terminating or not p["metadata"].get("deletionTimestamp")]


def _condition(obj: dict[str, Any], type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))


def _ready_pod(plane: ControlPlane, not_named: str = "") -> dict[str, Any] | None:
    pods = [p for p in _pods(plane) if p["metadata"]["name"] != not_named and _condition(p, "Ready")]
    return pods[0] if len(pods) == 1 else None


def _metrics(pod: dict[str, Any], path: str = "/metrics") -> str:
    return f"http://{pod['status']['podIP']}:{METRICS_PORT}{path}"


def _bdseqs(reader: SparkplugReader) -> list[int]:
    births = reader.of(MessageType.NBIRTH)
    return [int(next(m.value for m in b.payload.metrics if m.name == "bdSeq")) for b in births]  # type: ignore[call-overload]


def _received(reader: SparkplugReader) -> dict[str, set[tuple[str, int]]]:
    return {m: counting.unique_samples(reader.values, m) for m in MACHINES}


def _settled_reader(reader: SparkplugReader) -> dict[str, set[tuple[str, int]]]:
    """Return what the reader holds once it stops growing (everything in flight has arrived)."""
    previous = {m: len(v) for m, v in _received(reader).items()}
    while True:
        time.sleep(1.0)
        current = {m: len(v) for m, v in _received(reader).items()}
        if current == previous:
            return _received(reader)
        previous = current


def _arrivals(
    reader: SparkplugReader, since: int, produced: dict[str, int], allowance: dict[str, int]
) -> dict[str, int]:
    """Return the distinct samples per machine arrived since `since`: once all are there, or nothing more comes."""
    deadline = time.monotonic() + 120
    last: dict[str, int] = {}
    steady = 0
    while True:
        received = {m: len(counting.unique_samples(reader.values[since:], m)) for m in MACHINES}
        enough = all(received[m] >= produced[m] - allowance[m] for m in MACHINES)
        steady = steady + 1 if received == last else 0
        if received == produced or (enough and steady >= 10) or time.monotonic() > deadline:
            return received
        last = received
        time.sleep(0.5)


def _replace_pod(plane: ControlPlane, run: Run, replace: Callable[[], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replace the connector pod with the broker unreachable and samples buffered; assert none is lost.

    Returns the old and the new pod.
    """
    line, reader = run.line, run.reader
    old = wait_for("one Ready connector pod", lambda: _ready_pod(plane), READY_S)
    counting.wait_caught_up(_metrics(old))
    with counting.frozen(line.simulator_groups):
        baseline = counting.settled_samples_total(_metrics(old))
        wait_for("the outbox drained", lambda: counting.outbox_samples(_metrics(old)) == 0, 60)
        _settled_reader(reader)
        arrived = len(reader.values)  # what arrives from here on was accepted after the baseline
    time.sleep(3)  # samples flow
    births = len(reader.of(MessageType.NBIRTH))
    with counting.frozen([line.process_group("broker")]):
        time.sleep(2)  # samples pile up unacknowledged in the outbox
        with counting.frozen(line.simulator_groups):
            final = counting.settled_samples_total(_metrics(old))
            replace()
            # Gone, not only marked for deletion: a terminating pod still runs, and would get its
            # PUBACKs (and empty its outbox) if the broker woke up now.
            wait_for(
                "the old pod gone",
                lambda: all(p["metadata"]["name"] != old["metadata"]["name"] for p in _pods(plane, terminating=True)),
                READY_S,
            )
    # The PLCs run again: the new pod reads them (its sources cannot connect to frozen ones), births
    # its devices, and replays the outbox; once it has, they freeze for its count (frozen earlier,
    # a device would die and hold the rest of its backlog until its PLC is back: see counting).
    new = wait_for("a new Ready connector pod", lambda: _ready_pod(plane, old["metadata"]["name"]), READY_S)
    reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) > births, 60, "the new pod's NBIRTH")
    bdseq = _bdseqs(reader)[births]
    # The session counter goes on from the volume. A deleted pod's replacement starts while the old
    # one ends and the broker stands still: each CONNECT it tries meanwhile takes a bdSeq of its own.
    assert 1 <= (bdseq - run.bdseqs[-1]) % 256 <= CONNECT_ATTEMPTS, (run.bdseqs, _bdseqs(reader))
    counting.wait_caught_up(_metrics(new))
    with counting.frozen(line.simulator_groups):
        accepted = counting.settled_samples_total(_metrics(new))
        produced = {m: final.get(m, 0) - baseline.get(m, 0) + accepted.get(m, 0) for m in MACHINES}
        allowance = counting.rereads(line.line)
        received = _arrivals(reader, arrived, produced, allowance)
    counting.assert_none_lost(produced, received, allowance)
    run.bdseqs.append(bdseq)
    assert old["spec"]["volumes"] == new["spec"]["volumes"]  # the same claim: the outbox came along
    assert any(v.historical for v in reader.values), "samples replayed from the outbox are historical"
    assert not reader.errors
    return old, new


# -- the install ---------------------------------------------------------------------------------


def test_the_operator_runs_as_its_own_pod_from_the_overlay_s_images(
    plane: ControlPlane, node: Node, images: Images, operator: None
) -> None:
    pods = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods").get("items", [])
    (pod,) = pods
    # Kopf serves its liveness probe once it has started and logged in, from inside its pod.
    wait_for("the operator's /healthz", lambda: http_status(f"http://{pod['status']['podIP']}:8080/healthz") == 200, 60)
    pod = plane.request("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod['metadata']['name']}")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert pod["spec"]["nodeName"] == node.name
    assert pod["spec"]["serviceAccountName"] == "plantline-operator"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == images.operator
    # The connector image, named once in the overlay, reached the operator through its environment.
    assert {"name": "PLANTLINE_CONNECTOR_IMAGE", "value": images.connectors} in container["env"]
    assert not any(a.startswith("--connector-image") for a in container["args"])
    assert _condition(pod, "Ready")


def test_the_demo_line_becomes_ready_on_the_node_and_its_samples_reach_the_broker(
    plane: ControlPlane, node: Node, images: Images, run: Run
) -> None:
    wait_for("the PlantLine Ready", lambda: ready(plane, NS, LINE), READY_S)
    pod = wait_for("one Ready connector pod", lambda: _ready_pod(plane), READY_S)
    assert pod["spec"]["nodeName"] == node.name
    assert pod["spec"]["containers"][0]["image"] == images.connectors
    assert pod["status"]["podIP"].startswith(node.address.rsplit(".", 1)[0] + ".")
    assert http_status(_metrics(pod, "/readyz")) == 200
    claim = plane.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/{LINE}-{LINE}-data")
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == STORAGE_CLASS
    assert claim["spec"]["volumeName"].startswith(f"{STORAGE_CLASS}-")  # a local volume on the node
    reader = run.reader
    reader.wait_for(lambda: all(reader.of(MessageType.DDATA, m) for m in MACHINES), 120, "DDATA from all three")
    run.bdseqs.append(max(_bdseqs(reader)))


def test_a_certificate_renewal_rolls_the_pod_and_the_new_one_resumes_from_its_outbox(
    plane: ControlPlane, run: Run
) -> None:
    def renew() -> None:
        # Renew the client certificates (issued for 30 days) 40 days before they expire, that is
        # now, and for 90 days: the renewed ones are not due again.
        run.line.body["spec"]["pki"] = {"validityDays": {"mqtt-client": 90}, "renewBefore": 40}
        apply(plane, run.line.body)

    before = _secret(plane, f"{LINE}-{LINE}-tls")
    old, new = _replace_pod(plane, run, renew)
    after = _secret(plane, f"{LINE}-{LINE}-tls")
    assert after["data"]["tls.crt"] != before["data"]["tls.crt"]
    assert after["data"]["tls.key"] == before["data"]["tls.key"]  # a renewal keeps the key
    hash_key = "plantline.dev/certificate-hash"
    assert old["metadata"]["annotations"][hash_key] != new["metadata"]["annotations"][hash_key]
    wait_for("the PlantLine Ready again", lambda: ready(plane, NS, LINE), READY_S)


def test_deleting_the_pod_loses_no_sample_and_the_next_pod_continues_the_session(plane: ControlPlane, run: Run) -> None:
    def delete() -> None:
        (pod,) = _pods(plane)
        plane.kubectl("delete", "pod", "-n", NS, pod["metadata"]["name"], "--wait=false")

    old, new = _replace_pod(plane, run, delete)
    assert old["metadata"]["annotations"] == new["metadata"]["annotations"]  # the same template
    deaths = run.reader.of(MessageType.NDEATH)
    assert len(deaths) >= 2  # each replaced pod's session ended with its NDEATH


def _secret(plane: ControlPlane, name: str) -> dict[str, Any]:
    return plane.request("GET", f"/api/v1/namespaces/{NS}/secrets/{name}")
