"""The cloud bridge: sustained samples/s MQTT -> Kafka, batch sizes, and MQTT-to-Kafka latency.

Everything runs on this machine: mosquitto (mutual TLS, QoS 1), the bridge (a separate process),
and a one-node Kafka 4.1 (KRaft, SASL_SSL) from plantline_testing.kafka.

1. throughput: an edge node of `--machines` devices x `--signals` signals has `--messages` DDATA
   (`--metrics` samples each, one device each) queued at the broker for the bridge's persistent
   session while the bridge is stopped; the bridge is then started and drains them: samples per
   second from the first record Kafka acknowledged to the last (the bridge's status file). Then
   `--messages` more while the bridge runs (live), from the first publish to the last record.
   Baseline: the same Kafka client with the bridge's producer settings producing the same number
   of prebuilt records (the bridge's own JSON) to a topic of the same partitions. The ratio shows
   what MQTT, the host session and the records cost.
2. batches: records per Kafka batch (librdkafka's statistics: avg, p50, p99, max) during the drain.
3. latency: the edge publishes `--rate` DDATA per second (10 samples each, stamped at publish
   time) for `--seconds`; the topic appends with LogAppendTime, so a record's Kafka timestamp
   minus its sample's source time is MQTT-to-Kafka latency (the broker's append, after the bridge
   and the client's linger): p50, p99, max. Baseline: the linger the producer waits on purpose.
Run: uv run --all-packages python tests/bench/bridge_bench.py [--messages N] [--metrics M] [--seconds S]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from historian_bench import Publisher, _pki, _wait_for

import harness
from harness import Row
from plantline.bridge.config import parse_config
from plantline.bridge.kafka import producer_settings
from plantline.bridge.records import SAMPLE_HEADERS, Router
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sparkplug import MessageType
from plantline.connectors.sparkplug.host import HostSession
from plantline_testing import free_port
from plantline_testing.kafka import KafkaServer
from plantline_testing.lines import free_run

say = harness.progress("bridge")
TOPIC = "bench.machine"
LINGER_MS = 20


def _kafka(root: Path) -> KafkaServer:
    return KafkaServer.with_own_ca(root / "kafka", free_run(3), users={"bridge": "bridge-secret"})


def _create_topics(kafka: KafkaServer, names: list[str], partitions: int) -> None:
    """Create topics whose records carry the broker's append time (the latency's end)."""
    admin = AdminClient(kafka.client_settings())
    topics = [NewTopic(n, partitions, 1, config={"message.timestamp.type": "LogAppendTime"}) for n in names]
    for future in admin.create_topics(topics).values():
        future.result(60)


def _config(root: Path, broker_port: int, tls: dict[str, str], kafka: KafkaServer, machines: int,
            topic: str) -> Path:  # fmt: skip
    data = {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": broker_port, "tls": tls}], "client_id": "bench-bridge"},
        "kafka": {"bootstrap_servers": kafka.bootstrap, "ca_file": str(kafka.ca_file),
                  "sasl": {"username": "bridge", "password_file": str(kafka.directory / "bridge-password")},
                  "producer": {"linger_ms": LINGER_MS}, "dlq_topic": "bench.deadletter"},
        "lines": [{"site": "s1", "line": "l1", "group_id": "site1", "edge_node_ids": ["line1"],
                   "machines": {f"m{i}": "machine" for i in range(machines)}}],
        "topics": {"machine": topic},
        "health": {"port": free_port()},
        "status_file": str(root / "status.json"),
    }  # fmt: skip
    path = root / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class BridgeProcess:
    """`plantline-bridge run` as a child process, and its status file."""

    def __init__(self, root: Path, config: Path) -> None:
        self.root, self.config = root, config
        self.status_file = root / "status.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the bridge; return once its MQTT session is up."""
        self.status_file.unlink(missing_ok=True)
        log = (self.root / "bridge.log").open("ab")
        argv = [sys.executable, "-m", "plantline.bridge", "run", "--config", str(self.config)]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        _wait_for(lambda: self.status().get("mqtt") == "connected", 120, "the bridge online")

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def records(self) -> int:
        return int(self.status().get("records", 0))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def _prebuilt(config: Path, publisher: Publisher, messages: list[tuple[str, bytes]]) -> list[Any]:
    """Return the records the bridge makes of `messages` (built here once, for the baseline)."""
    bridge_config = parse_config(yaml.safe_load(config.read_text()), source=str(config))
    router, host = Router(bridge_config), HostSession[int](group_ids=["site1"])
    for topic, payload in publisher.births:
        host.receive(0, topic, payload, 0)
    records = []
    for topic, payload in messages:
        for release in host.receive(0, topic, payload, 0).released:
            records += router.make(release, topic, payload).records
    return records


def measure_baseline(config: Path, records: list[Any]) -> float:
    """Records/s of the same Kafka client and settings producing prebuilt records, to acknowledgement."""
    settings = producer_settings(parse_config(yaml.safe_load(config.read_text()), source=str(config)).kafka)
    producer = Producer(settings)
    producer.list_topics(timeout=30)
    acked = 0

    def delivered(error: Any, _message: Any) -> None:
        nonlocal acked
        if error is None:
            acked += 1

    start = time.perf_counter()
    for index, record in enumerate(records):
        while True:
            try:
                producer.produce(record.topic, record.value, record.key, headers=SAMPLE_HEADERS, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:  # serve delivery reports now and then, as the bridge does between messages
            producer.poll(0)
    producer.flush(300)
    took = time.perf_counter() - start
    if acked != len(records):
        raise RuntimeError(f"the baseline producer had {len(records) - acked} records refused")
    return len(records) / took


def measure_throughput(root: Path, args: Any) -> tuple[list[Row], dict[str, Any]]:
    broker, tls = _pki(root / "mqtt")
    kafka = _kafka(root)
    with kafka:
        _create_topics(kafka, [TOPIC, "bench.baseline", "bench.deadletter"], args.partitions)
        broker.start()
        config = _config(root, broker.port, tls["historian"], kafka, args.machines, TOPIC)
        publisher = Publisher(broker, tls["edge"], root, args.machines, args.signals)
        messages = publisher.messages(2 * args.messages, args.metrics)
        per_phase = args.messages * args.metrics
        bridge = BridgeProcess(root, config)
        try:
            bridge.start()  # the persistent session exists at the broker from here on
            bridge.stop()
            publisher.publish(messages[: args.messages])  # queued for the bridge's session
            say(f"throughput: {args.messages} DDATA ({per_phase:,} samples) queued; starting the bridge")
            bridge.start()
            _wait_for(lambda: bridge.records() >= per_phase, 900, "the backlog produced")
            drained = bridge.status()
            # from the first record Kafka acknowledged to the last, by the bridge's own clock
            drain = per_phase / (drained["last_record_at"] - drained["first_record_at"])
            batches = drained.get("batch_records", {})
            start = time.time()
            publisher.publish(messages[args.messages :])
            _wait_for(lambda: bridge.records() >= 2 * per_phase, 900, "the live messages produced")
            status = bridge.status()
            live = per_phase / (status["last_record_at"] - start)
        finally:
            bridge.stop()
            publisher.stop()
            broker.stop()
        records = _prebuilt(config, publisher, messages[: args.messages])
        baseline_config = config.with_name("baseline.yaml")
        baseline_config.write_text(config.read_text().replace(TOPIC, "bench.baseline"))
        for record in records:
            record.topic = "bench.baseline"
        say(f"baseline: {len(records):,} prebuilt records")
        baseline = measure_baseline(baseline_config, records)
    notes = f"{args.metrics} samples per DDATA, {args.machines} machines, linger {LINGER_MS} ms"
    rows = [
        Row("MQTT -> Kafka, a queued backlog drained", drain, "samples/s", "the same client, prebuilt records",
            baseline, notes=notes),
        Row("MQTT -> Kafka, live (the edge publishing meanwhile)", live, "samples/s",
            "the same client, prebuilt records", baseline, notes=notes + "; the publisher shares the cores"),
    ]  # fmt: skip
    for name in ("avg", "p50", "p99", "max"):
        rows.append(Row(f"records per Kafka batch, {name}", batches.get(name), "records", notes="during the drain"))
    return rows, status


def measure_latency(root: Path, args: Any) -> list[Row]:
    broker, tls = _pki(root / "mqtt")
    kafka = _kafka(root)
    with kafka:
        _create_topics(kafka, ["bench.latency", "bench.deadletter"], args.partitions)
        broker.start()
        config = _config(root, broker.port, tls["historian"], kafka, 4, "bench.latency")
        publisher = Publisher(broker, tls["edge"], root, 4, 10)
        bridge = BridgeProcess(root, config)
        sent = 0
        try:
            publisher.publish(publisher.messages(1, 10))  # births and one message, to connect
            bridge.start()
            say(f"latency: {args.rate} DDATA/s of 10 samples for {args.seconds:g} s")
            paced_from = int(time.time() * 1000)
            sent = _paced(publisher, args.rate, args.seconds)
            _wait_for(lambda: bridge.records() >= sent * 10, 300, "every paced sample produced")
        finally:
            bridge.stop()
            publisher.stop()
            broker.stop()
        consumed = kafka.read(["bench.latency"], until=lambda r: len(r) >= sent * 10 + 10, timeout=120)
    samples = [(record.timestamp_ms, json.loads(record.value)) for record in consumed]
    # the connecting message's samples (a day old) are not paced ones
    latencies = [float(at - s["ts"]) for at, s in samples if s["kind"] == "DDATA" and s["ts"] >= paced_from]
    notes = f"{args.rate} DDATA/s x 10 samples, {len(latencies):,} samples, LogAppendTime - source time"
    return [
        Row("MQTT -> Kafka latency p50", harness.percentile(latencies, 0.5), "ms", "linger.ms", LINGER_MS, notes),
        Row("MQTT -> Kafka latency p99", harness.percentile(latencies, 0.99), "ms", "linger.ms", LINGER_MS, notes),
        Row("MQTT -> Kafka latency max", max(latencies, default=float("nan")), "ms", "linger.ms", LINGER_MS, notes),
    ]


def _paced(publisher: Publisher, rate: int, seconds: float) -> int:
    """Publish `rate` DDATA per second, each stamped with the time it is built; return how many."""
    session, devices, signals = publisher.session, publisher.devices, publisher.signals
    sent, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        due = int((time.perf_counter() - start) * rate)
        while sent < due:
            now = int(time.time() * 1000)
            device = devices[sent % len(devices)]
            samples = [Sample(device, s, float(sent), Quality.GOOD, now) for s in signals]
            for message in session.data(samples, now, historical=False).messages:
                if message.kind is MessageType.DDATA:
                    publisher.client.publish(message.topic, message.payload, 1)
            sent += 1
        time.sleep(0.001)
    return sent


def main() -> None:
    parser = harness.arguments(__doc__, seconds=10.0, seconds_help="the latency phase's duration")
    parser.add_argument("--messages", type=int, default=2000, help="DDATA per throughput phase (default 2,000)")
    parser.add_argument("--metrics", type=int, default=100, help="samples per DDATA (default 100)")
    parser.add_argument("--machines", type=int, default=20, help="machines (default 20)")
    parser.add_argument("--signals", type=int, default=50, help="signals per machine (default 50)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic (default 3)")
    parser.add_argument("--rate", type=int, default=500, help="DDATA/s in the latency phase (default 500)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        root = Path(tmp)
        (root / "throughput").mkdir()
        (root / "latency").mkdir()
        rows, status = measure_throughput(root / "throughput", args)
        rows += measure_latency(root / "latency", args)
    import confluent_kafka

    env = harness.environment(
        kafka="4.1.1 (KRaft, SASL_SSL)",
        librdkafka=confluent_kafka.libversion()[0],
        confluent_kafka=confluent_kafka.version()[0],
        mosquitto=(harness.command_output("mosquitto", "-h", any_status=True).splitlines() or ["?"])[0],
    )
    counters = {k: status.get(k) for k in ("messages", "records", "dead_letters", "acks_lost")}
    harness.report("bridge: MQTT -> Kafka", env, rows, args.format, after=[f"bridge counters: {json.dumps(counters)}"])


if __name__ == "__main__":
    main()
