"""The connector pipeline end to end: samples/s, latency and outbox drain, against raw paho, in one run.

Everything runs on loopback with mutual TLS and QoS 1 against a real mosquitto started on a free
port (and stopped by its PID). The connector (`plantline.connectors.runtime.Connector`, fed by
`plantline_testing.synthetic.SyntheticSource`) runs in this process under asyncio; the
subscriber that decodes every DDATA (paho + `plantline.connectors.sparkplug.decode`) runs in a
separate process, so the two do not share a GIL. It counts metrics, and distinct values among
them: the synthetic values are a running counter, so duplicates and losses show.

1. throughput: a bounded count of samples (10 signals, as fast as the source can) through the
   real pipeline (batch -> durable outbox -> Sparkplug DDATA -> MQTT QoS 1 -> PUBACK -> ack);
   samples/s from the first DDATA received to the last, and the connector process's CPU seconds
   per 100k samples (getrusage of this process, all threads; the synthetic source included).
2. latency: a fixed rate (10k samples/s by default, in chunks of 100 every 10 ms) for ~10 s;
   the subscriber takes receive wall time minus each metric's source timestamp (ms), live
   metrics only (the few published as historical while the session came up are left out).
3. baseline: raw paho-mqtt 2 publishing pre-encoded DDATA payloads of the same shape and size
   (same TLS, broker, TCP_NODELAY, 1000 in flight) to the same kind of subscriber: what MQTT
   and the subscriber allow from Python here. The ratio pipeline / baseline is printed.
4. drain: the outbox filled with the broker stopped, then the broker (one that persists the
   subscriber's session) started; samples/s from the connector's CONNACK to the last sample
   received, and from the broker's start (which adds the connector's reconnect backoff).

With --profile, a further throughput run under cProfile prints the connector's hotspots (its
asyncio thread, and paho's network thread where there is one) after the table.

With --against REF, the connector code of commit REF (its `connectors/src`, taken with `git
archive`) is measured too, in the same run: each phase (throughput with the baseline, latency,
drain) runs in a child process for REF and for this tree, alternating, and a table gives both
figures and their ratio (with --repeat N, the medians of N runs each). The bench, the broker and
the synthetic source are this tree's for both.

The machine is shared by the broker, the subscriber and the connector (and, on a workstation or
CI runner, by anything else): the CPU that other programs took during each measurement is
reported from /proc/stat, and a figure taken while they used more than 5 % of the CPUs is
flagged as disturbed. Compare runs only where that share is low.

Run: uv run --all-packages python tests/bench/connector_pipeline_bench.py [--seconds S] [--count N]
     [--drain-count N] [--latency-rate R] [--latency-seconds S] [--latency-linger-ms MS]
     [--profile] [--against REF [--repeat N]] [--only PHASES] [--format table|json]
Progress goes to stderr, the results table (or JSON) to stdout. Linux only (reads /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import json
import logging
import multiprocessing
import os
import pstats
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import google.protobuf
import paho.mqtt.client as paho
from google.protobuf.internal import api_implementation
from paho.mqtt.enums import CallbackAPIVersion

import harness
from plantline.connectors import runtime as connector_runtime
from plantline.connectors.config import Batching, ConnectorConfig
from plantline.connectors.metric_names import SAMPLES
from plantline.connectors.runtime import Connector
from plantline.connectors.sparkplug import NAMESPACE, DataType, decode, encode_ddata
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import find_program, free_port
from plantline_testing.mosquitto import Broker
from plantline_testing.synthetic import SyntheticSource

GROUP = "bench"
DEVICE = "press"
SIGNALS = tuple(f"process.s{i}" for i in range(10))
FIRST_ALIAS = 100  # the session's first device alias: the baseline's payloads use the same ones
BASELINE_EDGE = "baseline"
BROKER_EXTRA = (
    # mosquitto drops QoS 1 messages to a subscriber beyond 1000 queued by default; a slow reader
    # must show up as a slow rate here, never as silent loss.
    "max_queued_messages 1000000",
)
TARGETS = {
    "samples_per_cpu_second": 400_000.0,
    "share_of_baseline": 0.8,
    "latency_p50_ms": 5.0,
    "latency_p99_ms": 25.0,
    "drain": 400_000.0,
}
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PHASES = ("throughput", "latency", "drain")  # throughput includes the raw paho baseline
PROFILE_COUNT = 100_000
PROFILE_LINES = 30
DISTURBED = 0.05  # other programs' share of the machine above which a figure is flagged
REPO = Path(__file__).resolve().parents[2]


progress = harness.progress("pipeline-bench")


# ---------------------------------------------------------------------------------------------
# The test PKI and the brokers


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """A client's CA bundle, certificate chain and key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Pki:
    connector: ClientFiles
    reader: ClientFiles
    baseline: ClientFiles
    broker_files: dict[str, bytes]  # file name in a Broker directory -> content


def make_pki(root: Path) -> Pki:
    """Return a throwaway CA's material: a broker certificate and three client identities."""
    ca = Authority.init(root / "ca", name="Pipeline Bench CA", passphrase=None, encrypt=False)
    ca.issue("broker", profile="mqtt-server", sans=["localhost", "127.0.0.1"])
    clients = {}
    for identity in ("bench-connector", "bench-reader", "bench-baseline"):
        ca.issue(identity, profile="mqtt-client")
        directory = root / identity
        directory.mkdir()
        files = ClientFiles(directory / "ca.crt", directory / "client.crt", directory / "client.key")
        files.ca.write_bytes(ca.trust_bundle())
        files.cert.write_bytes(ca.export(identity, CertFormat.CHAIN))
        files.key.write_bytes(ca.export(identity, CertFormat.KEY))
        files.key.chmod(0o600)
        clients[identity] = files
    broker_files = {
        "trust-bundle.pem": ca.trust_bundle(),
        "crl.pem": ca.crl_pem(),
        "broker.crt": ca.export("broker", CertFormat.CHAIN),
        "broker.key": ca.export("broker", CertFormat.KEY),
    }
    return Pki(clients["bench-connector"], clients["bench-reader"], clients["bench-baseline"], broker_files)


def make_broker(root: Path, pki: Pki, name: str, *, persistence: bool = False) -> Broker:
    directory = root / name
    directory.mkdir()
    for file_name, content in pki.broker_files.items():
        (directory / file_name).write_bytes(content)
    (directory / "broker.key").chmod(0o600)
    return Broker(directory, free_port(), persistence=persistence, extra=BROKER_EXTRA)


def client_tls(files: ClientFiles) -> ssl.SSLContext:
    """The TLS context the connector's MqttLink builds, for the subscriber and the baseline."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


def set_nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---------------------------------------------------------------------------------------------
# The subscriber: a separate process that decodes every DDATA


@dataclass(frozen=True, slots=True)
class SubscriberSpec:
    port: int
    files: ClientFiles
    client_id: str
    topic: str
    expected: int  # distinct values 0..expected-1 to receive before reporting
    max_seconds: float
    persistent: bool = False  # a session the broker keeps (and persists) across restarts
    latency: bool = False


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float


@dataclass(frozen=True, slots=True)
class SubscriberReport:
    """What the subscriber received; times are time.monotonic() (system-wide on Linux)."""

    messages: int
    metrics: int
    unique: int
    duplicates: int
    unexpected: int  # values outside 0..expected-1
    historical: int
    payload_bytes: int
    first: float | None
    last: float | None
    cpu_s: float  # the subscriber process's CPU from its subscription to its report
    complete: bool
    errors: tuple[str, ...]
    latency: LatencySummary | None

    @property
    def window_s(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubscriberReport:
        latency = data.pop("latency")
        return cls(
            **{**data, "errors": tuple(data["errors"])},
            latency=LatencySummary(**latency) if latency is not None else None,
        )


@dataclass(slots=True)
class _Tally:
    expected: int
    latency: bool
    seen: bytearray = field(init=False)
    delays: array[float] = field(default_factory=lambda: array("d"))
    messages: int = 0
    metrics: int = 0
    unique: int = 0
    duplicates: int = 0
    unexpected: int = 0
    historical: int = 0
    payload_bytes: int = 0
    first: float | None = None
    last: float | None = None
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen = bytearray(self.expected)

    def on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        wall_ms = time.time() * 1000
        try:
            payload = decode(bytes(message.payload))
        except ValueError as exc:
            self.errors.append(f"{message.topic}: {exc}")
            return
        if self.first is None:
            self.first = now
        self.last = now
        self.messages += 1
        self.payload_bytes += len(message.payload)
        metrics = payload.metrics
        self.metrics += len(metrics)
        seen, size = self.seen, self.expected
        for metric in metrics:
            value = metric.value
            if type(value) is int and 0 <= value < size:
                if seen[value]:
                    self.duplicates += 1
                else:
                    seen[value] = 1
                    self.unique += 1
            else:
                self.unexpected += 1
            if metric.is_historical:
                self.historical += 1
            elif self.latency and metric.timestamp is not None:
                self.delays.append(wall_ms - metric.timestamp)

    def report(self, cpu_s: float) -> dict[str, Any]:
        latency = None
        if self.latency and self.delays:
            ordered = sorted(self.delays)
            latency = LatencySummary(
                count=len(ordered),
                p50_ms=harness.percentile(ordered, 0.50),
                p90_ms=harness.percentile(ordered, 0.90),
                p99_ms=harness.percentile(ordered, 0.99),
                max_ms=ordered[-1],
                min_ms=ordered[0],
            )
        return asdict(
            SubscriberReport(
                messages=self.messages,
                metrics=self.metrics,
                unique=self.unique,
                duplicates=self.duplicates,
                unexpected=self.unexpected,
                historical=self.historical,
                payload_bytes=self.payload_bytes,
                first=self.first,
                last=self.last,
                cpu_s=cpu_s,
                complete=self.unique >= self.expected,
                errors=tuple(self.errors[:5]),
                latency=latency,
            )
        )


def subscribe_and_count(spec: SubscriberSpec, conn: Connection) -> None:
    """The subscriber process: report ("ready"), then ("report", dict) or ("error", text)."""
    try:
        conn.send(("report", _subscribe(spec, conn)))
    except Exception as exc:  # noqa: BLE001 -- whatever it is, the parent must hear of it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _subscribe(spec: SubscriberSpec, conn: Connection) -> dict[str, Any]:
    tally = _Tally(spec.expected, spec.latency)
    subscribed = threading.Event()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=spec.client_id,
        clean_session=not spec.persistent,
        protocol=paho.MQTTv311,
    )
    client.tls_set_context(client_tls(spec.files))
    client.on_socket_open = set_nodelay
    client.on_message = tally.on_message

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(spec.topic, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", spec.port, keepalive=30)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not subscribed.is_set():
        client.loop(timeout=0.05)
        if time.monotonic() > deadline:
            raise TimeoutError("no SUBACK")
    cpu_start = time.process_time()
    conn.send(("ready", None))
    deadline = time.monotonic() + spec.max_seconds
    while tally.unique < spec.expected and time.monotonic() < deadline:
        if client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
            time.sleep(0.02)  # the broker is down on purpose (drain): retry quickly
            with contextlib.suppress(OSError):
                client.reconnect()
        if conn.poll():
            conn.recv()  # "stop": report what arrived so far
            break
    report = tally.report(time.process_time() - cpu_start)
    with contextlib.suppress(OSError):
        client.disconnect()
    return report


class Subscriber:
    """The subscriber process seen from here; stopped (by its PID) on close."""

    def __init__(self, spec: SubscriberSpec) -> None:
        self.spec = spec
        context = multiprocessing.get_context("spawn")  # no fork: this process runs threads
        self._conn, child = context.Pipe()
        self._child_conn: Connection | None = child
        self._proc = context.Process(target=subscribe_and_count, args=(spec, child), name=spec.client_id)

    def __enter__(self) -> Subscriber:
        self._proc.start()
        if self._child_conn is not None:
            self._child_conn.close()  # ours only: EOF then means the child is gone
            self._child_conn = None
        kind, _ = self._receive(READY_TIMEOUT_S, "to subscribe")
        if kind != "ready":
            raise RuntimeError(f"subscriber: unexpected {kind!r}")
        return self

    def __exit__(self, *_: object) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()

    def _receive(self, timeout: float, what: str) -> tuple[str, Any]:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"subscriber: nothing within {timeout:.0f} s {what}")
        try:
            kind, data = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"subscriber exited {self._proc.exitcode} {what}") from None
        if kind == "error":
            raise RuntimeError(f"subscriber failed: {data}")
        return str(kind), data

    def ready_report(self) -> SubscriberReport | None:
        """Return the report if the subscriber has sent it (it got everything or ran out of time)."""
        if not self._conn.poll():
            return None
        _, data = self._receive(0, "")
        return SubscriberReport.from_dict(data)

    def stop_and_report(self) -> SubscriberReport:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        _, data = self._receive(10, "to report")
        return SubscriberReport.from_dict(data)

    async def wait(self, *, seconds: float, watch: asyncio.Task[None] | None = None) -> SubscriberReport:
        """Return the report once everything arrived, or what arrived within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            report = self.ready_report()
            if report is not None:
                return report
            if watch is not None and watch.done():
                watch.result()  # the connector failed: raise its error
                raise RuntimeError("the connector stopped before the subscriber had everything")
            await asyncio.sleep(0.02)
        return self.stop_and_report()


# ---------------------------------------------------------------------------------------------
# CPU accounting: this process (all threads, and per thread), the broker


@dataclass(frozen=True, slots=True)
class MachineLoad:
    """CPU the whole machine spent, against what this bench (and its reaped children) spent."""

    wall: float
    machine_busy: float
    ours: float

    @classmethod
    def take(cls) -> MachineLoad:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError):
            fields = []
        idle = sum(fields[3:5])  # idle + iowait
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal; guests are in user
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        return cls(time.monotonic(), busy, ours)

    @staticmethod
    def foreign(before: MachineLoad, after: MachineLoad, running: float = 0.0) -> tuple[float, float]:
        """Return CPU-s spent by other programs, and that as a share of the machine's capacity.

        `running` is CPU-s of our children not reaped yet (not in RUSAGE_CHILDREN).
        """
        wall = after.wall - before.wall
        other = max(0.0, (after.machine_busy - before.machine_busy) - (after.ours - before.ours) - running)
        capacity = wall * (os.cpu_count() or 1)
        return other, other / capacity if capacity > 0 else 0.0


def broker_cpu(broker: Broker | None) -> float:
    pid = broker.proc.pid if broker is not None and broker.proc is not None else None
    return (harness.cpu_seconds(f"/proc/{pid}/stat") if pid is not None else None) or 0.0


@contextlib.contextmanager
def watching_load(results: Results, phase: str, broker: Broker | None = None) -> Iterator[None]:
    """Record how much CPU other programs took during a phase (a running broker is ours)."""
    before, broker_before = MachineLoad.take(), broker_cpu(broker)
    try:
        yield
    finally:
        other, share = MachineLoad.foreign(before, MachineLoad.take(), broker_cpu(broker) - broker_before)
        results.foreign[phase] = share
        if share > DISTURBED:
            progress(f"{phase}: other programs took {other:.1f} CPU-s ({share:.0%} of the machine) meanwhile")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    wall: float
    process: float
    threads: dict[int, float]
    broker: float

    @classmethod
    def take(cls, broker: Broker) -> CpuSnapshot:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        threads = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc/self/task"):
                cpu = harness.cpu_seconds(f"{entry.path}/stat")
                if cpu is not None:
                    threads[int(entry.name)] = cpu
        return cls(time.monotonic(), usage.ru_utime + usage.ru_stime, threads, broker_cpu(broker))


@dataclass(frozen=True, slots=True)
class CpuUse:
    wall_s: float
    process_s: float
    by_thread: dict[str, float]
    broker_s: float

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        by_thread: dict[str, float] = {}
        for tid, cpu in after.threads.items():
            used = cpu - before.threads.get(tid, 0.0)
            if used > 0:
                name = names.get(tid, f"thread {tid}")
                name = "paho network thread" if name.startswith("paho-mqtt-client") else name
                by_thread[name] = by_thread.get(name, 0.0) + used
        return cls(after.wall - before.wall, after.process - before.process, by_thread, after.broker - before.broker)

    def describe(self) -> str:
        threads = ", ".join(f"{name} {cpu:.2f}" for name, cpu in sorted(self.by_thread.items(), key=lambda i: -i[1]))
        return (
            f"over {self.wall_s:.1f} s: this process {self.process_s:.2f} CPU-s ({threads}); "
            f"mosquitto {self.broker_s:.2f} CPU-s"
        )


# ---------------------------------------------------------------------------------------------
# The connector side


def connector_config(root: Path, files: ClientFiles, port: int, edge: str, batching: Batching) -> ConnectorConfig:
    """One device of 10 Int64 signals, default outbox settings, no metrics endpoint."""
    state = root / edge
    return ConnectorConfig.model_validate(
        {
            "sparkplug": {"group_id": GROUP, "edge_node_id": edge},
            "brokers": [
                {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": {"ca_file": str(files.ca), "cert_file": str(files.cert), "key_file": str(files.key)},
                }
            ],
            "outbox": {"directory": str(state / "outbox")},
            "state_directory": str(state / "state"),
            "metrics_port": 0,
            "batching": batching.model_dump(),
            "devices": [
                {
                    "id": DEVICE,
                    "protocol": "opcua",
                    "endpoint": "opc.tcp://127.0.0.1:4840/",  # never dialled: the source is synthetic
                    "tags": [{"signal": s, "address": f"ns=2;s=Bench.{s}", "datatype": "int64"} for s in SIGNALS],
                }
            ],
        }
    )


def reader_spec(port: int, pki: Pki, edge: str, expected: int, seconds: float, **options: bool) -> SubscriberSpec:
    return SubscriberSpec(
        port=port,
        files=pki.reader,
        client_id=f"bench-reader-{edge}",
        topic=f"{NAMESPACE}/{GROUP}/DDATA/{edge}/#",
        expected=expected,
        max_seconds=seconds,
        **options,
    )


@dataclass(frozen=True, slots=True)
class PipelineRun:
    report: SubscriberReport
    cpu: CpuUse
    produced: int
    started: float  # time.monotonic() when the connector task was created

    @property
    def from_start_s(self) -> float:
        return (self.report.last - self.started) if self.report.last is not None else 0.0


async def stop_connector(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    try:
        await asyncio.wait_for(task, STOP_TIMEOUT_S)
    except TimeoutError:
        progress("the connector did not stop in time; cancelled")


async def pipeline_run(
    config: ConnectorConfig,
    source: SyntheticSource,
    subscriber: Subscriber,
    broker: Broker,
    seconds: float,
    profile: cProfile.Profile | None = None,
) -> PipelineRun:
    """Run a connector until the subscriber has every sample (or `seconds` ran out)."""
    connector = Connector(config, source_factory=lambda _device: source)
    stop = asyncio.Event()
    before = CpuSnapshot.take(broker)
    if profile is not None:
        profile.enable()
    task = asyncio.create_task(connector.run(stop), name="connector")
    try:
        report = await subscriber.wait(seconds=seconds, watch=task)
        if profile is not None:
            profile.disable()
        cpu = CpuUse.between(before, CpuSnapshot.take(broker))
    finally:
        if profile is not None:
            profile.disable()
        await stop_connector(stop, task)
    return PipelineRun(report, cpu, source.produced, before.wall)


def throughput(
    root: Path,
    pki: Pki,
    broker: Broker,
    count: int,
    seconds: float,
    edge: str,
    profile: cProfile.Profile | None = None,
) -> PipelineRun:
    config = connector_config(root, pki.connector, broker.port, edge, Batching())
    source = SyntheticSource(DEVICE, SIGNALS, rate=0, limit=count)
    with Subscriber(reader_spec(broker.port, pki, edge, count, seconds + 30)) as subscriber:
        return asyncio.run(pipeline_run(config, source, subscriber, broker, seconds, profile))


def latency(root: Path, pki: Pki, broker: Broker, rate: int, seconds: float, batching: Batching) -> PipelineRun:
    count = int(rate * seconds)
    config = connector_config(root, pki.connector, broker.port, "latency", batching)
    source = SyntheticSource(DEVICE, SIGNALS, rate=rate, limit=count)
    with Subscriber(reader_spec(broker.port, pki, "latency", count, seconds + 60, latency=True)) as subscriber:
        return asyncio.run(pipeline_run(config, source, subscriber, broker, seconds + 30))


def source_alone(count: int) -> tuple[float, float]:
    """Return samples/s and CPU-s per 100k of the synthetic source with nothing behind it."""
    source = SyntheticSource(DEVICE, SIGNALS, rate=0, limit=count)

    async def drain() -> int:
        taken = 0
        async with source:
            async for batch in source.batches():
                taken += len(batch)
                if taken >= count:
                    break
        return taken

    cpu0, wall0 = time.process_time(), time.perf_counter()
    taken = asyncio.run(drain())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return taken / wall, cpu / taken * 100_000


# ---------------------------------------------------------------------------------------------
# The baseline: raw paho publishing pre-encoded DDATA


def baseline_payloads(count: int, per_message: int) -> list[bytes]:
    """DDATA payloads as the pipeline sends them: aliased Int64 metrics, datatypes stripped."""
    now_ms = int(time.time() * 1000)
    payloads: list[bytes] = []
    for start in range(0, count, per_message):
        metrics = [
            (FIRST_ALIAS + n % len(SIGNALS), now_ms, DataType.Int64, n, None)
            for n in range(start, min(count, start + per_message))
        ]
        payloads.append(encode_ddata(len(payloads) % 256, now_ms, metrics, strip_datatypes=True))
    return payloads


@dataclass(frozen=True, slots=True)
class BaselineRun:
    report: SubscriberReport
    cpu: CpuUse
    pubacks: int


def baseline(pki: Pki, broker: Broker, count: int, per_message: int, seconds: float) -> BaselineRun:
    payloads = baseline_payloads(count, per_message)
    topic = f"{NAMESPACE}/{GROUP}/DDATA/{BASELINE_EDGE}/{DEVICE}"
    connected = threading.Event()
    pubacks = [0]
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-baseline",
        clean_session=True,
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(1000)  # as the connector's MqttLink
    client.max_queued_messages_set(0)
    client.tls_set_context(client_tls(pki.baseline))
    client.on_socket_open = set_nodelay
    client.on_connect = lambda *_: connected.set()

    def on_publish(*_: Any) -> None:
        pubacks[0] += 1  # only paho's thread writes it

    client.on_publish = on_publish
    spec = reader_spec(broker.port, pki, BASELINE_EDGE, count, seconds + 30)
    with Subscriber(spec) as subscriber:
        before = CpuSnapshot.take(broker)
        client.connect("127.0.0.1", broker.port, keepalive=30)
        client.loop_start()
        try:
            if not connected.wait(READY_TIMEOUT_S):
                raise TimeoutError("baseline publisher: no CONNACK")
            for payload in payloads:
                client.publish(topic, payload, qos=1)
            report = asyncio.run(subscriber.wait(seconds=seconds))
            cpu = CpuUse.between(before, CpuSnapshot.take(broker))
        finally:
            client.disconnect()
            client.loop_stop()
    return BaselineRun(report, cpu, pubacks[0])


# ---------------------------------------------------------------------------------------------
# The drain: fill the outbox with the broker down, start it, time until all arrived


@dataclass(frozen=True, slots=True)
class DrainRun:
    report: SubscriberReport
    fill_s: float
    reconnect_s: float  # broker listening -> the connector's CONNACK (its reconnect backoff)
    drain_s: float  # CONNACK -> last sample received (births, replay, PUBACKs and acks included)
    cpu: CpuUse
    online: float  # time.monotonic() of the CONNACK


class SessionOpened(logging.Handler):
    """Notes when the connector's MQTT link logs its CONNACK: the session is up, births follow."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("mqtt session open"):
            self.times.append(time.monotonic())

    @contextlib.contextmanager
    def watching(self) -> Iterator[SessionOpened]:
        logger = logging.getLogger("plantline.connectors.mqtt")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


def samples_stored(connector: Connector) -> float:
    return connector.metrics.registry.get_sample_value(SAMPLES.name, {"device": DEVICE}) or 0.0


async def drain_scenario(
    config: ConnectorConfig, source: SyntheticSource, subscriber: Subscriber, broker: Broker, seconds: float
) -> DrainRun:
    count = source.limit
    connector = Connector(config, source_factory=lambda _device: source)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(connector.run(stop), name="connector")
    try:
        while samples_stored(connector) < count:  # every sample appended to the outbox
            if task.done():
                task.result()
            if time.monotonic() - started > seconds:
                raise TimeoutError(f"the outbox took more than {seconds} s to fill")
            await asyncio.sleep(0.005)
        fill_s = time.monotonic() - started
        progress(f"drain: {count:,} samples in the outbox after {fill_s:.2f} s; starting the broker")
        before = CpuSnapshot.take(broker)
        with SessionOpened().watching() as opened:
            await asyncio.to_thread(broker.start)
            listening = time.monotonic()
            report = await subscriber.wait(seconds=seconds + 60, watch=task)  # + the reconnect backoff
        cpu = CpuUse.between(before, CpuSnapshot.take(broker))
    finally:
        await stop_connector(stop, task)
    if not opened.times:
        raise RuntimeError("the connector never logged its MQTT session as open")
    online = opened.times[0]
    last = report.last if report.last is not None else time.monotonic()
    return DrainRun(report, fill_s, online - listening, last - online, cpu, online)


def drain(root: Path, pki: Pki, count: int, seconds: float) -> DrainRun:
    # A broker of its own that persists sessions: the subscriber's subscription survives the
    # outage, so it misses nothing whether it or the connector is back first.
    broker = make_broker(root, pki, "broker-drain", persistence=True)
    config = connector_config(root, pki.connector, broker.port, "drain", Batching())
    source = SyntheticSource(DEVICE, SIGNALS, rate=0, limit=count)
    broker.start()
    try:
        spec = reader_spec(broker.port, pki, "drain", count, 3 * seconds + 90, persistent=True)
        with Subscriber(spec) as subscriber:
            broker.stop()
            return asyncio.run(drain_scenario(config, source, subscriber, broker, seconds))
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------------------
# Profiling the connector: its asyncio thread and paho's network thread


class ThreadProfiles:
    """Starts a cProfile in every new thread whose name starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.profiles: list[cProfile.Profile] = []

    def _hook(self, _frame: FrameType, _event: str, _arg: Any) -> None:
        sys.setprofile(None)  # this hook only starts the real profiler, once per thread
        if threading.current_thread().name.startswith(self.prefix):
            profile = cProfile.Profile()
            self.profiles.append(profile)
            profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._hook)
        return self

    def __exit__(self, *_: object) -> None:
        threading.setprofile(None)


def top(profiles: Sequence[cProfile.Profile], sort: str, lines: int) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=stream)
    for more in profiles[1:]:
        stats.add(more)
    stats.strip_dirs().sort_stats(sort).print_stats(lines)
    text = stream.getvalue()
    return text[text.find("   ncalls") :] if "   ncalls" in text else text


def profiled_throughput(root: Path, pki: Pki, broker: Broker, count: int, seconds: float) -> tuple[PipelineRun, str]:
    main = cProfile.Profile()  # on while the connector runs: from its start to the last sample received
    with ThreadProfiles("paho-mqtt-client") as threads:
        run = throughput(root, pki, broker, count, seconds, "profiled", main)
    parts = [
        f"asyncio thread, by cumulative time ({count:,} samples; waits in select/epoll are idle time):",
        top([main], "cumulative", PROFILE_LINES),
        "asyncio thread, by own time:",
        top([main], "tottime", PROFILE_LINES),
    ]
    if threads.profiles:
        parts += ["paho network thread, by own time:", top(threads.profiles, "tottime", 15)]
    return run, "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Results


def delivered(report: SubscriberReport, expected: int) -> str:
    text = f"{report.unique:,} of {expected:,} distinct samples"
    if not report.complete:
        text += " (INCOMPLETE: time budget ran out)"
    if report.duplicates:
        text += f", {report.duplicates:,} duplicates"
    if report.unexpected or report.errors:
        text += f", {report.unexpected} unexpected values, errors {list(report.errors)}"
    return text


def subscriber_load(report: SubscriberReport) -> str:
    """How busy the decoding subscriber was: near 100 % means it, not the publisher, set the pace."""
    if report.window_s <= 0:
        return f"subscriber {report.cpu_s:.2f} CPU-s"
    return f"subscriber {report.cpu_s:.2f} CPU-s = {report.cpu_s / report.window_s:.0%} of one core over the window"


def avg_payload(report: SubscriberReport) -> str:
    if not report.messages:
        return "no messages"
    per_message = report.metrics / report.messages
    return f"{report.messages:,} DDATA of {per_message:.0f} metrics, {report.payload_bytes / report.messages:,.0f} B"


@dataclass(slots=True)
class Results:
    rows: list[harness.Row] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    footer: list[str] = field(default_factory=list)
    foreign: dict[str, float] = field(default_factory=dict)  # phase -> other programs' share of the CPUs
    figures: dict[str, float | None] = field(default_factory=dict)  # the key figures, for --against

    def add(self, measurement: str, figure: float | None, unit: str, notes: str) -> None:
        self.rows.append(harness.Row(measurement, figure, unit, notes=notes))
        progress(self.rows[-1].describe())

    def compare(self, measurement: str, baseline: str, figure: float | None) -> None:
        """Give the row of `measurement` its baseline, measured after it in the same run."""
        self.rows = [
            replace(r, baseline=baseline, baseline_figure=figure) if r.measurement == measurement else r
            for r in self.rows
        ]

    def target(self, name: str, measured: float | None, wanted: float, *, at_most: bool = False) -> None:
        met = measured is not None and (measured <= wanted if at_most else measured >= wanted)
        shown = f"{wanted:,.0f}" if wanted >= 10 else f"{wanted:g}"
        self.targets.append(
            {
                "target": f"{name} {'<=' if at_most else '>='} {shown}",
                "measured": measured,
                "met": met,
                "share_of_target": None if measured is None or not wanted else measured / wanted,
            }
        )


def after_table(results: Results) -> list[str]:
    """Return the lines under the table: the targets, the machine's load, the profile."""
    lines = []
    for t in results.targets:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:,.1f}"
        share = "" if t["share_of_target"] is None else f" ({t['share_of_target']:.0%} of target)"
        lines.append(f"target {t['target']}: measured {measured}{share} -> {'MET' if t['met'] else 'NOT MET'}")
    lines += ["", *results.footer]
    if results.foreign:
        shares = ", ".join(f"{phase} {share:.0%}" for phase, share in results.foreign.items())
        lines.append(f"other programs' share of the CPUs per measurement: {shares} (flagged above {DISTURBED:.0%})")
    if results.profile:
        lines += ["", "Profile of the connector side (cProfile):", results.profile]
    return lines


def environment() -> dict[str, object]:
    mosquitto = harness.command_output(find_program("mosquitto"), "-h", any_status=True)  # -h exits 3
    changed = harness.command_output(
        "git", "status", "--porcelain", "--", "connectors/src", "tests/harness/src", cwd=REPO
    )
    return harness.environment(
        paho_mqtt=version("paho-mqtt"),
        protobuf=f"{google.protobuf.__version__} ({api_implementation.Type()})",
        mosquitto=mosquitto.splitlines()[0] if mosquitto else "?",
        commit=harness.command_output("git", "rev-parse", "--short", "HEAD", cwd=REPO),
        uncommitted_in_src=[line[3:] for line in changed.splitlines()],
        connectors_from=str(Path(connector_runtime.__file__).resolve().parents[2]),
    )


# ---------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float
    count: int
    drain_count: int
    latency_rate: int
    latency_seconds: float
    latency_batching: Batching
    profile: bool
    phases: tuple[str, ...] = PHASES


def measure_throughput(results: Results, root: Path, pki: Pki, broker: Broker, s: Settings) -> None:
    progress(f"throughput: {s.count:,} samples through the pipeline (budget {s.seconds:.0f} s)")
    run = throughput(root, pki, broker, s.count, s.seconds, "throughput")
    report = run.report
    figure = harness.rate(report.unique, report.window_s)
    results.add(
        "pipeline throughput",
        figure,
        "samples/s",
        f"first to last DDATA received; {delivered(report, s.count)}; {avg_payload(report)}; "
        f"{harness.number(harness.rate(report.unique, run.from_start_s))}/s from the connector's start"
        " (TLS connect included)",
    )
    per_100k = run.cpu.process_s / report.unique * 100_000 if report.unique else None
    per_cpu_second = 100_000 / per_100k if per_100k else None
    results.add(
        "connector CPU",
        per_100k,
        "CPU-s per 100k samples",
        f"= {per_cpu_second or 0:,.0f} samples per connector CPU-second; {run.cpu.describe()}",
    )
    results.add(
        "subscriber CPU (pipeline)",
        report.cpu_s / report.unique * 100_000 if report.unique else None,
        "CPU-s per 100k samples",
        f"the decoding subscriber process: {subscriber_load(report)}",
    )
    source_rate, source_cpu = source_alone(s.count)
    results.add(
        "synthetic source alone",
        source_rate,
        "samples/s",
        f"no connector behind it; {source_cpu:.3f} CPU-s per 100k, included in the connector CPU above",
    )
    results.details["throughput"] = {"cpu": asdict(run.cpu), "report": asdict(report), "produced": run.produced}
    results.target("samples per connector CPU-second", per_cpu_second, TARGETS["samples_per_cpu_second"])
    results.figures.update(throughput=figure, samples_per_cpu_second=per_cpu_second)


def measure_latency(results: Results, root: Path, pki: Pki, broker: Broker, s: Settings) -> None:
    b = s.latency_batching
    progress(
        f"latency: {s.latency_rate:,} samples/s for {s.latency_seconds:.0f} s"
        f" (max_metrics {b.max_metrics}, linger {b.linger_ms} ms)"
    )
    run = latency(root, pki, broker, s.latency_rate, s.latency_seconds, b)
    summary = run.report.latency
    setting = f"at {s.latency_rate:,}/s, batching max_metrics={b.max_metrics} linger_ms={b.linger_ms}"
    if summary is None:
        results.add("latency source -> subscriber", None, "ms", f"no live metric received; {setting}")
        results.target("latency p50 ms", None, TARGETS["latency_p50_ms"], at_most=True)
        results.target("latency p99 ms", None, TARGETS["latency_p99_ms"], at_most=True)
        return
    notes = {
        "p50": setting,
        "p90": "source timestamps are whole ms (truncated): figures read 0-1 ms high",
        "p99": f"a batch waits for the acknowledgement of the one before, at most linger_ms ({b.linger_ms} ms)",
    }
    for name, value in (("p50", summary.p50_ms), ("p90", summary.p90_ms), ("p99", summary.p99_ms)):
        results.add(f"latency {name}", value, "ms", notes[name])
    results.add(
        "latency max",
        summary.max_ms,
        "ms",
        f"{summary.count:,} live metrics ({run.report.historical:,} published as historical at start-up left out); "
        f"{delivered(run.report, int(s.latency_rate * s.latency_seconds))}",
    )
    results.add(
        "connector CPU at fixed rate",
        run.cpu.process_s / run.cpu.wall_s * 100 if run.cpu.wall_s else None,
        "% of one core",
        run.cpu.describe(),
    )
    results.details["latency"] = {"summary": asdict(summary), "cpu": asdict(run.cpu), "batching": b.model_dump()}
    results.target("latency p50 ms", summary.p50_ms, TARGETS["latency_p50_ms"], at_most=True)
    results.target("latency p99 ms", summary.p99_ms, TARGETS["latency_p99_ms"], at_most=True)
    results.figures.update(latency_p50_ms=summary.p50_ms, latency_p99_ms=summary.p99_ms)


def measure_baseline(results: Results, pki: Pki, broker: Broker, s: Settings) -> None:
    per_message = Batching().max_metrics
    progress(f"baseline: raw paho, {s.count:,} samples pre-encoded as DDATA of {per_message} metrics")
    run = baseline(pki, broker, s.count, per_message, s.seconds)
    report = run.report
    figure = harness.rate(report.unique, report.window_s)
    messages = harness.rate(report.messages, report.window_s)
    results.add(
        "baseline raw paho QoS 1",
        figure,
        "samples/s",
        f"= {messages or 0:,.0f} DDATA/s; {delivered(report, s.count)}; {avg_payload(report)}; "
        f"{run.pubacks:,} PUBACKs; {run.cpu.describe()}; {subscriber_load(report)}",
    )
    results.compare("pipeline throughput", "raw paho QoS 1", figure)
    results.details["baseline"] = {"cpu": asdict(run.cpu), "report": asdict(report)}
    share = harness.ratio(results.figures.get("throughput"), figure)
    results.target("pipeline / raw paho baseline", share, TARGETS["share_of_baseline"])
    results.figures.update(baseline=figure, share_of_baseline=share)


def measure_drain(results: Results, root: Path, pki: Pki, s: Settings) -> None:
    progress(f"drain: {s.drain_count:,} samples into the outbox with the broker stopped")
    run = drain(root, pki, s.drain_count, s.seconds)
    report = run.report
    fill = harness.rate(s.drain_count, run.fill_s)
    results.add("outbox fill, broker down", fill, "samples/s", "source -> batches -> outbox.append, no MQTT")
    figure = harness.rate(report.unique, run.drain_s)
    results.add(
        "outbox drain",
        figure,
        "samples/s",
        f"CONNACK -> last received; {delivered(report, s.drain_count)}; {avg_payload(report)}; {run.cpu.describe()}",
    )
    # Which side set the drain's pace: the connector's own cost per sample, and how busy the subscriber was.
    drain_per_cpu_second = harness.rate(report.unique, run.cpu.process_s)
    results.add(
        "connector CPU (drain)",
        run.cpu.process_s / report.unique * 100_000 if report.unique else None,
        "CPU-s per 100k samples",
        f"= {drain_per_cpu_second or 0:,.0f} samples per connector CPU-second while draining (reconnect included); "
        f"{subscriber_load(report)} (its retries while the broker was down included)",
    )
    first = f"{report.first - run.online:.2f} s" if report.first is not None else "never"
    results.add(
        "drain incl. reconnect",
        harness.rate(report.unique, run.reconnect_s + run.drain_s),
        "samples/s",
        f"from broker start; the connector's reconnect backoff took {run.reconnect_s:.2f} s of it; "
        f"the first DDATA arrived {first} after the CONNACK",
    )
    results.details["drain"] = {
        "fill_s": run.fill_s,
        "reconnect_s": run.reconnect_s,
        "drain_s": run.drain_s,
        "first_ddata_after_connack_s": None if report.first is None else report.first - run.online,
        "cpu": asdict(run.cpu),
        "report": asdict(report),
    }
    results.target("drain samples/s", figure, TARGETS["drain"])
    results.figures.update(drain=figure, fill=fill, drain_per_cpu_second=drain_per_cpu_second)


def run_all(s: Settings) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        root = Path(tmp)
        progress("making a test PKI")
        pki = make_pki(root)
        broker = make_broker(root, pki, "broker")
        broker.start()
        try:
            if "throughput" in s.phases:
                with watching_load(results, "throughput", broker):
                    measure_throughput(results, root, pki, broker, s)
                with watching_load(results, "baseline", broker):
                    measure_baseline(results, pki, broker, s)
            if "latency" in s.phases:
                with watching_load(results, "latency", broker):
                    measure_latency(results, root, pki, broker, s)
            if s.profile:
                progress(f"profile: {PROFILE_COUNT:,} samples through the pipeline under cProfile")
                run, results.profile = profiled_throughput(root, pki, broker, PROFILE_COUNT, s.seconds)
                profiled = harness.rate(run.report.unique, run.report.window_s)
                progress(f"profiled run: {profiled or 0:,.0f} samples/s (slowed by the profiler)")
        finally:
            broker.stop()
        if "drain" in s.phases:
            with watching_load(results, "drain"):
                measure_drain(results, root, pki, s)
    return results


# ---------------------------------------------------------------------------------------------
# Against another commit: the same measurements of its connector code, in the same run


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: str | None = None  # the key in TARGETS this figure is held to


FIGURES = (
    Figure("throughput", "pipeline throughput", "samples/s", True),
    Figure(
        "samples_per_cpu_second", "samples per connector CPU-second", "samples/CPU-s", True, "samples_per_cpu_second"
    ),
    Figure("baseline", "raw paho baseline", "samples/s", True),
    Figure("share_of_baseline", "pipeline / raw paho baseline", "ratio", True, "share_of_baseline"),
    Figure("latency_p50_ms", "latency p50", "ms", False, "latency_p50_ms"),
    Figure("latency_p99_ms", "latency p99", "ms", False, "latency_p99_ms"),
    Figure("fill", "outbox fill, broker down", "samples/s", True),
    Figure("drain", "outbox drain", "samples/s", True, "drain"),
    Figure("drain_per_cpu_second", "drain: samples per connector CPU-second", "samples/CPU-s", True),
)


def connectors_at(ref: str, into: Path) -> Path:
    """Return the `connectors/src` of commit `ref`, extracted into `into` (git archive)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "connectors/src"], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--against {ref}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "connectors" / "src"


def measure_in_child(source: Path, phase: str, argv: Sequence[str]) -> dict[str, Any]:
    """Run one phase of this bench in a process that imports the connectors from `source`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--only", phase, "--format", "json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the {phase} measurement of {source} failed (exit {done.returncode})")
    document: dict[str, Any] = json.loads(done.stdout)
    if Path(document["environment"]["connectors_from"]) != source.resolve():
        raise SystemExit(f"the child measured {document['environment']['connectors_from']}, not {source}")
    return document


Runs = dict[str, dict[str, list[float]]]  # version -> figure (or phase) -> one value per run


def measure_alternating(
    versions: dict[str, Path], argv: Sequence[str], phases: Sequence[str], repeat: int
) -> tuple[Runs, Runs]:
    """Return the figures and other programs' CPU shares of every run, each phase alternating between versions."""
    runs: Runs = {name: {} for name in versions}
    foreign: Runs = {name: {} for name in versions}
    for phase in phases:
        for turn in range(repeat):
            for name, source in versions.items():  # alternating: the machine's load drifts for both
                progress(f"--against: {phase} of {name} ({turn + 1}/{repeat})")
                document = measure_in_child(source, phase, argv)
                for key, value in document["figures"].items():
                    if value is not None:
                        runs[name].setdefault(key, []).append(value)
                for key, share in document["other_programs"]["cpu_share_by_measurement"].items():
                    foreign[name].setdefault(key, []).append(share)
    return runs, foreign


def medians(runs: Runs) -> dict[str, dict[str, float]]:
    return {name: {key: statistics.median(values) for key, values in by.items()} for name, by in runs.items()}


def compare(ref: str, argv: Sequence[str], output: str, phases: Sequence[str], repeat: int) -> int:
    """Measure the connectors of `ref` and of this tree, phase by phase, alternating; print both.

    With `repeat` > 1 every phase runs that many times for each, alternating, and the medians
    are shown: on a shared machine single figures move a lot.
    """
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-against-") as tmp:
        versions = {ref: connectors_at(ref, Path(tmp)), "this tree": REPO / "connectors" / "src"}
        runs, foreign = measure_alternating(versions, argv, phases, repeat)
    figures, shares = medians(runs), medians(foreign)
    if output == "json":
        document = {"against": ref, "repeat": repeat, "figures": figures, "runs": runs, "foreign_cpu_share": shares}
        print(json.dumps(document, indent=2))
        return 0
    print("\n".join(comparison_table(ref, figures, shares, repeat)))
    return 0


def comparison_table(
    ref: str, figures: dict[str, dict[str, float]], shares: dict[str, dict[str, float]], repeat: int
) -> list[str]:
    """Return the lines of both versions' figures with their ratios, the targets and the machine's load."""
    old, new = figures[ref], figures["this tree"]
    rows = [
        harness.Row(f.label, new.get(f.key), f.unit, baseline=ref[:12], baseline_figure=old.get(f.key)) for f in FIGURES
    ]
    lines = [f"this tree against {ref}" + (f": medians of {repeat} runs each, alternating" if repeat > 1 else "")]
    lines += [harness.table(rows), "", "targets (this tree):"]
    for f in FIGURES:
        if f.target is None:
            continue
        wanted, value = TARGETS[f.target], new.get(f.key)
        met = value is not None and (value >= wanted if f.higher_is_better else value <= wanted)
        relation = ">=" if f.higher_is_better else "<="
        shown = f"{harness.number(wanted)} {f.unit}"
        lines.append(f"  {f.label} {relation} {shown}: {harness.number(value)} -> {'MET' if met else 'NOT MET'}")
    summary = "; ".join(
        f"{name}: " + ", ".join(f"{phase} {share:.0%}" for phase, share in by_phase.items())
        for name, by_phase in shares.items()
    )
    lines += ["", f"other programs' share of the CPUs per measurement (flagged above {DISTURBED:.0%}): {summary}"]
    return lines


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, str, str | None, int]:
    parser = harness.arguments(__doc__, seconds=20.0, count=300_000, count_help="samples for throughput and baseline")
    parser.add_argument("--drain-count", type=int, default=200_000, help="samples filled into the outbox")
    parser.add_argument("--latency-rate", type=int, default=10_000, help="samples/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="duration of the latency run")
    parser.add_argument("--latency-linger-ms", type=int, help="batching linger of the latency run (default: config)")
    parser.add_argument("--profile", action="store_true", help="profile the connector in a further throughput run")
    parser.add_argument("--verbose", action="store_true", help="show the connector's own log warnings")
    parser.add_argument(
        "--against",
        metavar="REF",
        help="also measure the connectors of this commit (e.g. HEAD~3), phase by phase, and print both with ratios",
    )
    parser.add_argument("--only", help=f"run only these phases, comma-separated ({', '.join(PHASES)})")
    parser.add_argument("--repeat", type=int, default=1, help="with --against: runs per phase and version (medians)")
    args = parser.parse_args(argv)
    if min(args.seconds, args.count, args.drain_count, args.latency_rate, args.latency_seconds) <= 0:
        parser.error("--seconds, --count, --drain-count, --latency-rate and --latency-seconds must be positive")
    # The level sits on the handler: SessionOpened lowers the mqtt logger to INFO meanwhile.
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING if args.verbose else logging.ERROR)
    handler.setFormatter(logging.Formatter("[pipeline-bench] %(name)s %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    batching = Batching() if args.latency_linger_ms is None else Batching(linger_ms=args.latency_linger_ms)
    settings = Settings(
        seconds=args.seconds,
        count=args.count,
        drain_count=args.drain_count,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        latency_batching=batching,
        profile=args.profile,
        phases=tuple(args.only.split(",")) if args.only else PHASES,
    )
    if set(settings.phases) - set(PHASES):
        parser.error(f"--only: choose from {', '.join(PHASES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return settings, str(args.format), args.against, args.repeat


def main(argv: Sequence[str] | None = None) -> int:
    settings, output, against, repeat = parse_args(argv)
    if against is not None:
        given = list(sys.argv[1:] if argv is None else argv)
        child = _without(given, "--against", "--format", "--profile", "--only", "--repeat")
        return compare(against, child, output, settings.phases, repeat)
    env = environment()
    progress(harness.environment_line(env))
    started, load = time.monotonic(), MachineLoad.take()
    results = run_all(settings)
    other, share = MachineLoad.foreign(load, MachineLoad.take())
    results.footer.append(
        f"other programs on this machine used {other:.1f} CPU-s during the run ({share:.0%} of its "
        f"{env['cpus']} CPUs){': the figures are disturbed' if share > DISTURBED else ''}"
    )
    progress(f"done in {time.monotonic() - started:.1f} s; {results.footer[-1]}")
    extra = {
        "settings": {**asdict(settings), "latency_batching": settings.latency_batching.model_dump()},
        "targets": results.targets,
        "details": results.details,
        "profile": results.profile,
        "figures": results.figures,
        "other_programs": {
            "cpu_s": round(other, 2),
            "cpu_share": round(share, 3),
            "cpu_share_by_measurement": {k: round(v, 3) for k, v in results.foreign.items()},
        },
    }
    title = "The connector pipeline end to end (mutual TLS, QoS 1, loopback), against raw paho"
    harness.report(title, env, results.rows, output, after=after_table(results), extra=extra)
    return 0


def _without(argv: list[str], *options: str) -> list[str]:
    """Return the command line without these options (and their values)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = "=" not in arg and name != "--profile"
            continue
        out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())
