"""The historian: sustained ingest through the Sparkplug path, and the KPI API's latency under load.

1. ingest: an edge node of `--machines` devices x `--signals` signals publishes DDATA (QoS 1, mutual
   TLS, `--metrics` per message, one device each) to mosquitto; the historian (a separate process)
   resolves them through the births, COPYs them into PostgreSQL and acknowledges after each commit.
   Figures, samples per second: live (from the first publish to the last sample committed, the
   publisher running on the same cores) and backlog (the historian drains `--messages` DDATA that
   queued at the broker while it was stopped, from its connection on). Baseline: plain `COPY` of the
   same rows (series, time, value, quality) straight into the same `samples` table, in one process.
   The ratio shows what the Sparkplug path (broker, decode, alias resolution, staging, ON CONFLICT,
   acknowledgement) costs.
2. API: a day (`--hours`) of simulated data for `--machines` machines (the PLC simulators' model:
   states, counters, faults; changes only), loaded by the historian's own store, rollups and KPI
   minutes; then `plantline-historian api` under `--clients` concurrent keep-alive clients for
   `--seconds` per endpoint. Figures: p50 and p95 latency per endpoint (one machine per request,
   rotating; `/kpi/current` also for the whole line, at times spread over the day, which it
   answers from the KPI refresh's checkpoints, and without a time, as the refresh keeps it).
   Baseline: the 250 ms p95 objective.
Run: uv run --all-packages python tests/bench/historian_bench.py [--messages N] [--hours H] [--seconds S]
     [--skip-ingest | --skip-api]
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion

import harness
from harness import Row
from plantline.connectors.config import Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.session import BdSeqStore, EdgeNodeSession
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.config import HistorianConfig
from plantline.historian.kpi_refresh import refresh_kpis
from plantline.historian.refresh import refresh_rollups
from plantline.historian.rows import Rows
from plantline.historian.schema import migrate
from plantline.historian.store import Store, connect
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import free_port
from plantline_testing.machines import simulated_samples
from plantline_testing.mosquitto import Broker
from plantline_testing.postgres import PostgresCluster, server_bin

say = harness.progress("historian")
OBJECTIVE_MS = 250.0
T_DAY = 1_763_769_600_000  # the simulated day starts 2025-11-22 00:00 UTC


# -- the line around the historian -----------------------------------------------------------------


def _pki(root: Path) -> tuple[Broker, dict[str, dict[str, str]]]:
    ca = Authority.init(root / "ca", name="bench CA", passphrase=b"x" * 16, encrypt=False)
    ca.issue("broker", profile="mqtt-server", sans=["ip:127.0.0.1"])
    broker_dir, tls_dir = root / "broker", root / "tls"
    broker_dir.mkdir()
    tls_dir.mkdir()
    (broker_dir / "broker.crt").write_bytes(ca.export("broker", CertFormat.CHAIN))
    (broker_dir / "broker.key").write_bytes(ca.export("broker", CertFormat.KEY))
    (broker_dir / "trust-bundle.pem").write_bytes(ca.trust_bundle())
    (broker_dir / "crl.pem").write_bytes(ca.crl_pem())
    (tls_dir / "ca.crt").write_bytes(ca.trust_bundle())
    files = {}
    for identity in ("historian", "edge"):
        ca.issue(identity, profile="mqtt-client")
        (tls_dir / f"{identity}.crt").write_bytes(ca.export(identity, CertFormat.CHAIN))
        key = tls_dir / f"{identity}.key"
        key.write_bytes(ca.export(identity, CertFormat.KEY))
        key.chmod(0o600)
        files[identity] = {"ca_file": str(tls_dir / "ca.crt"), "cert_file": str(key.with_suffix(".crt")),
                           "key_file": str(key)}  # fmt: skip
    # The historian acknowledges after each commit: the broker must hold what it has not yet acknowledged
    # (mosquitto drops QoS 1 messages beyond max_queued_messages, 1000 by default).
    extra = ["max_inflight_messages 1000", "max_queued_messages 10000000"]
    return Broker(broker_dir, free_port(), extra=extra), files


def _config(root: Path, dsn: str, broker: Broker | None, tls: dict[str, str] | None, machines: int) -> Path:
    data = {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": broker.port if broker else 1, "tls": tls,
                              "insecure_plaintext": tls is None}]},  # no broker: the API's configuration only
        "database": {"dsn": dsn},
        "lines": [{"site": "s1", "line": "l1", "group_id": "site1", "edge_node_ids": ["line1"],
                   "machines": {f"m{i}": {"ideal_cycle_s": 0.5} for i in range(machines)}}],
        "api": {"token_file": str(root / "tokens"), "port": free_port()},
        "ingest": {"max_rows": 50_000, "linger_ms": 50, "refresh_interval_s": 3600},
        "status_file": str(root / "status.json"),
    }  # fmt: skip
    (root / "tokens").write_text("bench-token\n")
    path = root / "historian.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _database(cluster: PostgresCluster, name: str) -> str:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.dsn.replace("dbname=plantline", f"dbname={name}")


# -- 1. ingest ---------------------------------------------------------------------------------------


class Publisher:
    """An edge node publishing pre-encoded DDATA as fast as QoS 1 with 1000 in flight allows."""

    def __init__(self, broker: Broker, tls: dict[str, str], root: Path, machines: int, signals: int) -> None:
        tags = [Tag(signal=f"process.p{i}", address=f"ns=2;s=p{i}", datatype="double") for i in range(signals)]
        self.devices = [f"m{i}" for i in range(machines)]
        self.signals = [t.signal for t in tags]
        self.session = EdgeNodeSession(
            group_id="site1", edge_node_id="line1", devices=dict.fromkeys(self.devices, tags),
            bdseq=BdSeqStore(root / "bdseq"),
        )  # fmt: skip
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-edge")
        context = ssl.create_default_context(cafile=tls["ca_file"])
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
        self.client.tls_set_context(context)
        self.client.max_inflight_messages_set(1000)
        self.broker = broker

    def messages(self, count: int, per_message: int) -> list[tuple[str, bytes]]:
        """Return `count` DDATA of `per_message` metrics each, every sample with its own (series, time)."""
        now = int(time.time() * 1000) - 86_400_000
        will = self.session.prepare_connect()
        self.will = will
        births = self.session.on_connected(now)
        for device in self.devices:
            births += self.session.device_online(device, now)
        self.births = [(m.topic, m.payload) for m in births]
        out = []
        signals = self.signals
        for n in range(count):
            device = self.devices[n % len(self.devices)]  # one device per DDATA, as a connector batches
            first = now + (n // len(self.devices)) * per_message  # every sample its own (series, time): a row
            samples = [
                Sample(device, signals[k % len(signals)], float(n), Quality.GOOD, first + k) for k in range(per_message)
            ]
            out += [(m.topic, m.payload) for m in self.session.data(samples, first, historical=False).messages]
        return out

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish `messages` at QoS 1 and return once the broker has them all (connecting first)."""
        if not self.client.is_connected():
            self.client.will_set(self.will.topic, self.will.payload, self.will.qos)
            self.client.on_message = self._rebirth
            self.client.connect("127.0.0.1", self.broker.port)
            self.client.loop_start()
            self.client.subscribe("spBv1.0/site1/NCMD/line1", 1)
            for topic, payload in self.births:
                self.client.publish(topic, payload, 0)
        infos = [self.client.publish(topic, payload, 1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(300)

    def _rebirth(self, _c: paho.Client, _u: Any, _m: paho.MQTTMessage) -> None:
        for topic, payload in self.births:  # the same aliases: the session's births do not change them
            self.client.publish(topic, payload, 0)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def _start_historian(root: Path, config: Path) -> subprocess.Popen[bytes]:
    log = (root / "historian.log").open("ab")
    argv = [sys.executable, "-m", "plantline.historian", "run", "--config", str(config)]
    historian = subprocess.Popen(argv, stdout=log, stderr=log)
    status = root / "status.json"
    status.unlink(missing_ok=True)
    _wait_for(lambda: status.exists() and '"mqtt": "connected"' in status.read_text(), 60, "historian online")
    return historian


def _stop(historian: subprocess.Popen[bytes]) -> None:
    historian.send_signal(signal.SIGTERM)
    historian.wait(timeout=60)


def measure_ingest(root: Path, cluster: PostgresCluster, args: Any) -> tuple[list[Row], dict[str, Any]]:
    """Live: publish while the historian runs. Backlog: the historian drains what queued while it was down."""
    broker, tls = _pki(root)
    broker.start()
    dsn = _database(cluster, "ingest")
    config = _config(root, dsn, broker, tls["historian"], args.machines)
    publisher = Publisher(broker, tls["edge"], root, args.machines, args.signals)
    per_phase = args.messages * args.metrics
    messages = publisher.messages(2 * args.messages, args.metrics)
    say(f"ingest: {len(messages)} DDATA, {2 * per_phase:,} samples in two phases")
    historian = _start_historian(root, config)
    progress = Progress(dsn)
    try:
        start = time.perf_counter()
        publisher.publish(messages[: len(messages) // 2])
        _wait_for(lambda: progress.inserted() >= per_phase, 900, "every live sample committed")
        live = per_phase / (time.perf_counter() - start)
        _stop(historian)
        publisher.publish(messages[len(messages) // 2 :])  # queued by the broker for the historian's session
        start = time.perf_counter()
        historian = _start_historian(root, config)
        started = time.perf_counter()
        _wait_for(lambda: progress.inserted() >= 2 * per_phase, 900, "the backlog committed")
        backlog = per_phase / (time.perf_counter() - started)
        say(f"ingest: backlog drained {time.perf_counter() - start:.1f} s after the historian was started")
        rows = _baseline_rows(dsn)
    finally:
        progress.conn.close()
        _stop(historian)
        publisher.stop()
        broker.stop()
    copy = _plain_copy(cluster, rows)
    stats = json.loads((root / "status.json").read_text())
    notes = f"{args.metrics} metrics per DDATA, {args.machines} machines"
    return [
        Row("ingest, live: edge publishing meanwhile", live, "samples/s", "plain COPY of the same rows", copy,
            notes=notes + "; the publisher shares the cores"),
        Row("ingest, a queued backlog drained", backlog, "samples/s", "plain COPY of the same rows", copy,
            notes=notes + "; from the historian connected; births by rebirth"),
    ], stats  # fmt: skip


class Progress:
    """How many samples the historian has committed, from its own batch records, on one connection."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)

    def inserted(self) -> int:
        if self.conn.execute("SELECT to_regclass('ingest_batches')").fetchone() == (None,):
            return 0
        row = self.conn.execute("SELECT coalesce(sum(inserted), 0) FROM ingest_batches").fetchone()
        return int(row[0]) if row else 0


def _baseline_rows(dsn: str) -> list[tuple[int, int, float, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT series_id, ms(ts), value, quality FROM samples").fetchall()
    return [(int(s), int(t), float(v), int(q)) for s, t, v, q in rows]


def _plain_copy(cluster: PostgresCluster, rows: list[tuple[int, int, float, int]]) -> float:
    dsn = _database(cluster, "baseline")
    with connect(dsn) as conn:
        migrate(conn)
        store = Store(conn)
        with conn.transaction():
            store.ensure_days({dt.datetime.fromtimestamp(t / 1000, dt.UTC).date() for _, t, _, _ in rows})
        text = "".join(
            f"{s}\t{dt.datetime.fromtimestamp(t / 1000, dt.UTC).isoformat()}\t{v!r}\t{q}\n" for s, t, v, q in rows
        )
        start = time.perf_counter()
        with conn.transaction(), conn.cursor().copy("COPY samples (series_id, ts, value, quality) FROM STDIN") as copy:
            copy.write(text)
        return len(rows) / (time.perf_counter() - start)


# -- 2. API ------------------------------------------------------------------------------------------

TYPES = {"state": DataType.Boolean, "counter": DataType.UInt32, "fault": DataType.Int32, "cycle": DataType.Double}


def load_day(cluster: PostgresCluster, root: Path, args: Any) -> tuple[Path, int]:
    dsn = _database(cluster, "day")
    config_path = _config(root, dsn, None, None, args.machines)
    config = HistorianConfig.model_validate(yaml.safe_load(config_path.read_text()))
    total = 0
    with connect(dsn) as conn:
        migrate(conn)
        store = Store(conn, config.lines)
        for i in range(args.machines):
            device = f"m{i}"
            samples = list(simulated_samples(device, args.hours * 3600, seed=i + 1, start_ms=T_DAY, step_s=1.0))
            for start in range(0, len(samples), 50_000):
                rows = Rows()
                chunk = samples[start : start + 50_000]
                metrics = tuple(HostMetric(s.signal, TYPES.get(s.signal.split(".")[0], DataType.Double), s.value,
                                           s.source_ts_ms, s.quality, False) for s in chunk)  # fmt: skip
                rows.add(Release(0, MessageType.DDATA, NodeKey("site1", "line1"), device, metrics), T_DAY)
                store.write(rows, messages=1)
            total += len(samples)
            say(f"day: {device} {len(samples):,} samples")
        started = time.perf_counter()
        refresh_rollups(conn, max_batches=1_000_000)
        refresh_kpis(conn, config, max_batches=1_000_000)
        say(f"day: {total:,} samples; rollups and KPI minutes in {time.perf_counter() - started:.0f} s")
    return config_path, total


def _latencies(port: int, paths: list[str], clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = offset
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            conn.request("GET", paths[n % len(paths)], headers={"Authorization": "Bearer bench-token"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{paths[n % len(paths)]}: {response.status}")
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)
            n += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def measure_api(config: Path, args: Any) -> list[Row]:
    port = yaml.safe_load(config.read_text())["api"]["port"]
    api = subprocess.Popen([sys.executable, "-m", "plantline.historian", "api", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    end = T_DAY + int(args.hours * 3600_000)
    iso, day = _iso(end), _iso(T_DAY)
    machines = [f"m{i}" for i in range(args.machines)]
    # The API answers a past time from checkpoints the refresh saved every 15 s: asking one fixed
    # instant would measure one checkpoint and its tail over and over, so the times vary over the day.
    rng = random.Random(42)
    times = [_iso(rng.randrange(T_DAY + 900_000, end)) for _ in range(2000)]
    endpoints = {
        "/machines/status (line)": ["/machines/status?line=l1"],
        "/kpi/current (machine, at a time of the day)": [
            f"/kpi/current?machine={machines[n % len(machines)]}&at={at}" for n, at in enumerate(times)
        ],
        f"/kpi/current (line of {args.machines}, at a time of the day)": [
            f"/kpi/current?line=l1&at={at}" for at in times
        ],
        f"/kpi/current (line of {args.machines}, now: kept by the refresh)": ["/kpi/current?line=l1"],
        "/kpi/trend 5m, 8 h (machine)": [f"/kpi/trend?machine={m}&to={iso}&bucket=5m" for m in machines],
        "/kpi/trend 1h, day (machine)": [f"/kpi/trend?machine={m}&from={day}&to={iso}&bucket=1h" for m in machines],
        "/faults/active (line)": ["/faults/active?line=l1"],
        "/faults/history, day (line, page)": [f"/faults/history?line=l1&from={day}&to={iso}"],
        "/signals/history 1m, 1 h (machine)": [
            f"/signals/history?machine={m}&signal=counter.total&to={iso}&bucket=1m" for m in machines
        ],
    }
    rows = []
    try:
        _wait_for(lambda: _listening(port), 60, "the API listening")
        for name, paths in endpoints.items():
            latencies = _latencies(port, paths, args.clients, args.seconds)
            p50, p95 = harness.percentile(latencies, 0.5), harness.percentile(latencies, 0.95)
            rows.append(Row(f"{name} p95", p95, "ms", "objective", OBJECTIVE_MS,
                            notes=f"p50 {p50:.1f} ms, {len(latencies)} requests, {args.clients} clients"))  # fmt: skip
            say(rows[-1].describe())
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    return rows


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _listening(port: int) -> bool:
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
    except OSError:
        return False
    return True


def main() -> None:
    parser = harness.arguments(__doc__, seconds=10.0, seconds_help="load per API endpoint")
    parser.add_argument("--messages", type=int, default=2000, help="DDATA messages to ingest (default 2,000)")
    parser.add_argument("--metrics", type=int, default=500, help="metrics per DDATA (default 500)")
    parser.add_argument("--machines", type=int, default=20, help="machines (default 20)")
    parser.add_argument("--signals", type=int, default=50, help="signals per machine for ingest (default 50)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated data per machine for the API (default 24)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent API clients (default 8)")
    parser.add_argument("--skip-api", action="store_true", help="measure ingest only")
    parser.add_argument("--skip-ingest", action="store_true", help="measure the API only")
    args = parser.parse_args()
    rows: list[Row] = []
    stats: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="historian-bench-") as tmp:
        root = Path(tmp)
        cluster = PostgresCluster()
        cluster.start()
        try:
            if not args.skip_ingest:
                (root / "ingest").mkdir()
                rows, stats = measure_ingest(root / "ingest", cluster, args)
            if not args.skip_api:
                (root / "api").mkdir()
                config, loaded = load_day(cluster, root / "api", args)
                rows += measure_api(config, args)
        finally:
            cluster.stop()
    env = harness.environment(
        postgres=harness.command_output(server_bin() / "postgres", "--version"),
        mosquitto=(harness.command_output("mosquitto", "-h", any_status=True).splitlines() or ["?"])[0],
    )
    after = []
    if stats is not None:
        counters = {k: stats[k] for k in ("batches", "messages", "samples_inserted")}
        after.append(f"historian counters (ingest): {json.dumps(counters)}")
    if not args.skip_api:
        after.append(f"API data: {loaded:,} samples of {args.machines} machines over {args.hours:g} h")
    harness.report("historian: ingest and KPI API", env, rows, args.format, after=after)


if __name__ == "__main__":
    main()
