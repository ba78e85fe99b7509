"""The cloud bridge against a real Apache Kafka 4.1 (KRaft, SASL_SSL): the demo line's samples, outages, dead letters.

`plantline up --simulate --cloud kafka://...` runs the demo line, its broker (the core broker here)
and the bridge; Kafka runs beside it from the jars Maven fetched (plantline_testing.kafka), its
certificate from a CA the toolkit made. Ground truth is an independent Sparkplug host: the
harness's reader with a persistent session at the same broker (the host identity, so that it may
ask for the births it missed), never killed. Over a span both
listened, Kafka must hold every (machine, signal, source time) the reader saw, and no other; a
record seen twice must be the same record (same id, same content), removable by its id.

With `--monitoring`, Prometheus scrapes the bridge: every query of its dashboard, its recording
rules and its alerts' probes find series, and Kafka stopped raises the Kafka alert, not the others.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.bridge.records import dedupe, sample_of
from plantline.connectors.sparkplug import DataType, Metric, Payload, encode
from plantline.dashboards.line import CLOUD_BRIDGE
from plantline.operator.api import parse_plantline
from plantline.operator.render import line_view, topology
from plantline_testing import free_port
from plantline_testing.kafka import Consumed, KafkaServer
from plantline_testing.lines import UpRun, free_run, line_copy
from plantline_testing.prometheus import PrometheusApi, line_queries, wait_for
from plantline_testing.sparkplug_reader import SparkplugReader

pytestmark = [pytest.mark.peer, pytest.mark.slow]

BRIDGE_USER, BRIDGE_PASSWORD = "bridge", "bridge-secret"
TYPES = {"filler": "bottling", "capper": "bottling", "labeler": "labelling"}  # machine -> equipmentType
Key = tuple[str, str, int]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    root = tmp_path_factory.mktemp("kafka")
    server = KafkaServer.with_own_ca(root, free_run(3), users={BRIDGE_USER: BRIDGE_PASSWORD})
    (root / "wrong-password").write_text("not-the-password\n")
    with server:
        yield server


def _url(kafka: KafkaServer, prefix: str, **options: object) -> str:
    query = f"password_file={kafka.directory / 'bridge-password'}&ca={kafka.ca_file}&topic_prefix={prefix}"
    query += "".join(f"&{name}={value}" for name, value in options.items())
    return f"kafka://{BRIDGE_USER}@{kafka.bootstrap}?{query}"


def _up(tmp_path: Path, kafka: KafkaServer, prefix: str, *, more: Sequence[str] = (), **options: object) -> UpRun:
    fields = {machine: {"equipmentType": kind} for machine, kind in TYPES.items()}
    line_copy(tmp_path / "line.yaml", machine_fields=fields)
    up_args = ["--cloud", _url(kafka, prefix, **options), "--bridge-port", str(free_port()), *more]
    run = UpRun(tmp_path / "line.yaml", tmp_path / "state", up_args=up_args)
    run.up_detached()
    return run


def _bridge(run: UpRun) -> dict[str, Any]:
    return dict(run.status().get("bridge") or {})


def _wait(check: Callable[[], bool], timeout: float, what: str, run: UpRun) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            log = run.state_dir / "logs" / "bridge.log"
            text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise TimeoutError(f"{what}; bridge: {_bridge(run)}\n{text}")
        time.sleep(0.5)


def _seen(reader: SparkplugReader, start_ms: int, end_ms: int) -> list[Key]:
    with reader._lock:  # the reader's paho thread appends meanwhile
        values = list(reader.values)
    return [(v.device_id, v.name, v.timestamp) for v in values if start_ms <= v.timestamp < end_ms]


def _topics(prefix: str) -> list[str]:
    return sorted({f"{prefix}.{kind}" for kind in TYPES.values()})


def _records(kafka: KafkaServer, prefix: str, until: Callable[[list[Consumed]], bool]) -> list[Consumed]:
    return kafka.read(_topics(prefix), until=until, timeout=120)


def _data_keys(records: list[Consumed], start_ms: int, end_ms: int) -> list[Key]:
    """Return (machine, signal, source time) of the DDATA samples in the span (births repeat values)."""
    out = []
    for record in records:
        sample = sample_of(record.value)
        if sample["kind"] == "DDATA" and start_ms <= sample["ts"] < end_ms:
            out.append((sample["machine"], sample["signal"], sample["ts"]))
    return out


def _once(records: list[Consumed]) -> list[Consumed]:
    """Return the DDATA records without repeats of an id, checking what the consumer's rule relies on.

    A repeated DDATA (a message delivered again after a crash) is the same record, byte for byte;
    a birth repeating a sample has its id and the same value, quality and time (kind, seq differ).
    """
    first: dict[str, Consumed] = {}
    facts: dict[str, tuple[object, ...]] = {}
    for record in records:
        sample = sample_of(record.value)
        fact = (sample["value"], sample["quality"], sample["ts"], sample["datatype"])
        assert facts.setdefault(sample["id"], fact) == fact, f"{sample['id']} came again with other facts"
        if sample["kind"] != "DDATA":
            continue
        if sample["id"] in first:
            assert first[sample["id"]].value == record.value, f"{sample['id']} came twice with different content"
            continue
        first[sample["id"]] = record
    data = [sample_of(r.value) for r in records if sample_of(r.value)["kind"] == "DDATA"]
    assert [sample_of(r.value) for r in first.values()] == dedupe(data), "the documented rule, as the bridge ships it"
    return list(first.values())


def _covers(truth: set[Key], start_ms: int, end_ms: int) -> Callable[[list[Consumed]], bool]:
    return lambda records: set(_data_keys(records, start_ms, end_ms)) >= truth


def test_every_sample_reaches_its_equipment_types_topic_keyed_by_machine_in_order(
    tmp_path: Path, kafka: KafkaServer
) -> None:
    run = _up(tmp_path, kafka, "flow")
    try:
        with _truth(run) as reader:
            _wait(lambda: _bridge(run).get("records", 0) > 0, 120, "the bridge produces records", run)
            start = int(time.time() * 1000) + 2000
            time.sleep(10)
            end = int(time.time() * 1000) - 2000
            truth = _seen(reader, start, end)
        records = _records(kafka, "flow", _covers(set(truth), start, end))
    finally:
        run.finish()
    assert len(truth) > 50
    assert sorted(_data_keys(_once(records), start, end)) == sorted(truth)
    for record in records:
        sample = sample_of(record.value)
        assert record.topic == f"flow.{TYPES[sample['machine']]}"
        assert record.key == f"site1/line1/{sample['machine']}".encode()
        assert record.headers["content-type"] == b"application/json"
        assert record.headers["schema"] == b"plantline.sample/1"
        assert sample["id"] == f"site1/line1/{sample['machine']}/{sample['signal']}/{sample['ts']}"
    _assert_per_key_order(records)


def _assert_per_key_order(records: list[Consumed]) -> None:
    """Within a partition, a machine's DDATA samples of one signal come in source-time order."""
    last: dict[tuple[int, bytes, str, str], int] = {}
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        sample = sample_of(record.value)
        if sample["kind"] != "DDATA":
            continue
        where = (record.partition, record.key, record.topic, sample["signal"])
        assert sample["ts"] >= last.get(where, 0), f"{sample['id']} after a later sample of its key"
        last[where] = sample["ts"]
    partitions: dict[tuple[str, bytes], set[int]] = {}
    for record in records:
        partitions.setdefault((record.topic, record.key), set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions.values()), "a machine's records in one partition"


def test_no_sample_is_lost_through_a_bridge_kill_a_kafka_outage_and_a_broker_restart(
    tmp_path: Path, kafka: KafkaServer
) -> None:
    run = _up(tmp_path, kafka, "chaos")
    try:
        with _truth(run) as reader:
            _wait(lambda: _bridge(run).get("records", 0) > 0, 120, "the bridge produces records", run)
            start = int(time.time() * 1000) + 2000
            time.sleep(5)
            bridge = run.child_pid("bridge")
            os.kill(bridge, signal.SIGKILL)  # kill -9: its unacknowledged messages wait at the broker
            _wait(lambda: _restarted(run, "bridge", bridge), 60, "the bridge restarted", run)
            kafka.stop()
            time.sleep(20)  # Kafka away: records wait in the client, their MQTT messages unacknowledged
            kafka.start()
            _wait(lambda: _bridge(run).get("kafka_up") is True, 120, "the bridge reaches Kafka again", run)
            broker = run.child_pid("broker")
            os.kill(broker, signal.SIGTERM)  # the MQTT side: the broker saves its sessions; `up` restarts it
            _wait(lambda: _restarted(run, "broker", broker), 60, "the broker restarted", run)
            _wait(lambda: _bridge(run).get("mqtt") == "connected", 90, "the bridge reconnected to MQTT", run)
            time.sleep(8)
            end = int(time.time() * 1000) - 3000
            truth = _seen(reader, start, end)
        records = _records(kafka, "chaos", _covers(set(truth), start, end))
    finally:
        run.finish()
    got = _data_keys(_once(records), start, end)
    per_series = Counter((machine, sig) for machine, sig, _ in got)
    assert per_series == Counter((machine, sig) for machine, sig, _ in set(truth)), "exact counts per machine, signal"
    assert sorted(got) == sorted(set(truth))
    assert {machine for machine, _ in per_series} == {"filler", "capper", "labeler"}


def _restarted(run: UpRun, name: str, old_pid: int) -> bool:
    try:
        return run.child_pid(name) != old_pid
    except (KeyError, FileNotFoundError, ValueError):
        return False


def _truth(run: UpRun) -> SparkplugReader:
    """The independent host: a persistent session with the host identity, which may ask for the births it missed."""
    host = run.identity("host")
    return SparkplugReader(port=run.port, group_id=run.group, ca=run.tls / "ca.crt", cert=run.tls / f"{host}.crt",
                           key=run.tls / f"{host}.key", client_id="truth", persistent=True)  # fmt: skip


def _edge_client(run: UpRun, client_id: str) -> SparkplugReader:
    """A client with the line's edge identity: it may publish in the line's namespace (the reader may not)."""
    (connector,) = topology(parse_plantline(yaml.safe_load(run.line_file.read_text())).spec)
    return SparkplugReader(port=run.port, group_id=run.group, ca=run.tls / "ca.crt",
                           cert=run.tls / f"{connector.identity}.crt", key=run.tls / f"{connector.identity}.key",
                           client_id=client_id)  # fmt: skip


def test_garbage_and_oversized_payloads_land_in_the_dead_letters_and_the_bridge_keeps_running(
    tmp_path: Path, kafka: KafkaServer
) -> None:
    run = _up(tmp_path, kafka, "dlq", max_record_bytes=4096)
    try:
        _wait(lambda: _bridge(run).get("records", 0) > 0, 120, "the bridge produces records", run)
        (connector,) = topology(parse_plantline(yaml.safe_load(run.line_file.read_text())).spec)
        topic = f"spBv1.0/{run.group}/DDATA/{connector.edge_node_id}/filler"
        garbage = b"\x0a\xff\xffnot sparkplug"
        # a known signal of the filler with a 10 kB text: its record is above the 4096 bytes allowed
        big = encode(Payload(int(time.time() * 1000), None,
                             (Metric("process.temperature", None, None, DataType.String, "x" * 10_000),)))  # fmt: skip
        with _edge_client(run, "injector") as injector:
            injector.publish(topic, garbage)
            injector.publish(topic, big)
        _wait(lambda: _bridge(run).get("dead_letters", 0) >= 2, 60, "two dead letters", run)
        before = _bridge(run)["records"]
        _wait(lambda: _bridge(run)["records"] > before, 60, "the bridge keeps producing", run)
        dead = kafka.read(["dlq.deadletter"], until=lambda r: len(r) >= 2, timeout=60)
        assert _bridge(run).get("fatal") is None
    finally:
        run.finish()
    reasons = {d.headers["reason"]: d for d in dead}
    assert set(reasons) == {b"undecodable", b"too-large"}
    assert reasons[b"undecodable"].value == garbage
    assert reasons[b"undecodable"].headers["mqtt-topic"] == topic.encode()
    assert b"process.temperature" in reasons[b"too-large"].headers["detail"]
    too_large = reasons[b"too-large"]
    assert too_large.headers["original-sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert big.startswith(too_large.value), "the original bytes, cut to the limit"
    assert too_large.key == b"site1/line1/filler"


def test_a_wrong_password_stops_the_bridge_with_an_error_naming_the_endpoint_without_a_retry_storm(
    tmp_path: Path, kafka: KafkaServer
) -> None:
    config = {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": free_port(), "insecure_plaintext": True}]},
        "kafka": {"bootstrap_servers": kafka.bootstrap, "ca_file": str(kafka.ca_file),
                  "sasl": {"username": BRIDGE_USER, "password_file": str(kafka.directory / "wrong-password")}},
        "lines": [{"site": "s", "line": "l", "group_id": "g", "edge_node_ids": ["e"], "machines": {"m": "t"}}],
        "topics": {"t": "plantline.t"},
        "health": {"port": free_port()},
    }  # fmt: skip
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    mark = len(kafka.log_text())
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "plantline.bridge", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert f"Kafka at {kafka.bootstrap} refused the bridge" in done.stderr
    assert "Authentication failed" in done.stderr or "SASL_AUTHENTICATION_FAILED" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    assert took < 30, f"it took {took:.0f} s to give up"
    failed = kafka.log_text()[mark:].count("Failed authentication")
    assert 1 <= failed <= 3, f"{failed} authentication attempts"


def test_with_monitoring_every_bridge_query_finds_series_and_a_kafka_outage_raises_the_kafka_alert_alone(
    tmp_path: Path, kafka: KafkaServer
) -> None:
    port = free_run(3)
    run = _up(tmp_path, kafka, "watched", more=["--monitoring", "--prometheus-port", str(port)])
    api = PrometheusApi(f"http://127.0.0.1:{port}")
    view = line_view(parse_plantline(yaml.safe_load(run.line_file.read_text())), cloud_bridge=True)
    try:
        _wait(lambda: _bridge(run).get("records", 0) > 0, 120, "the bridge produces records", run)
        wait_for(lambda: api.query(f'up{{component="{CLOUD_BRIDGE}"}} == 1'), 60, "the bridge scraped")
        wait_for(lambda: api.query("plantline:bridge_produce_slow:ratio_rate5m"), 120, "the bridge's SLO recorded")
        queries = line_queries(view, boards={"cloud"}, sources={CLOUD_BRIDGE})
        assert len(queries) > 20
        empty = [(where, expr) for where, expr in queries if not api.query(expr)]
        assert empty == [], "\n".join(f"{where}: {expr}" for where, expr in empty)

        kafka.stop()
        try:
            wait_for(lambda: api.active("PlantLineCloudBridgeKafkaUnreachable"), 120, "the Kafka alert pending")
            others = ("PlantLineCloudBridgeDown", "PlantLineCloudBridgeProduceStalled")
            assert [name for name in others if api.active(name)] == []
        finally:
            kafka.start()
        _wait(lambda: _bridge(run).get("kafka_up") is True, 120, "the bridge reaches Kafka again", run)
        wait_for(lambda: not api.active("PlantLineCloudBridgeKafkaUnreachable") or None, 60, "the Kafka alert cleared")
    finally:
        run.finish()
