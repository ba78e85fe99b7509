"""What the site broker's autosave costs live traffic while it holds a queue for an absent client.

The rendered mosquitto.conf writes the broker's in-memory state to disk every `autosaveSeconds`
(default 5), so a crash loses at most that much of what waits for the bridge. Mosquitto writes
the whole state each time, in its one thread, so the cost grows with the queue. This benchmark
parks a persistent session (the stand-in for a bridge whose core is away), fills its queue with
N messages of 300 bytes, then measures the delivery latency of live QoS 1 messages (one every
10 ms, publisher and subscriber on loopback) for a while.

Baseline, in the same run: the same broker and queue with autosave off (`autosave_interval 0`,
mosquitto saves only on exit). The ratio is the p99 (and the max) latency with autosave over the
baseline's.

    uv run python tests/bench/broker_queue_bench.py [--queued 0,10000,100000] [--seconds 10] [--autosave 2]
        [--format table|json]
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

import harness
from plantline.operator.local import find_mosquitto, port_taken
from plantline_testing import free_port

PAYLOAD = b"x" * 300


say = harness.progress("broker-queue-bench")


@contextlib.contextmanager
def mosquitto(directory: Path, autosave: int) -> Iterator[int]:
    """Run a plain loopback mosquitto with persistence; yield its port; stop it by its PID."""
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                *(["user root"] if os.geteuid() == 0 else []),
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {directory}/",
                f"autosave_interval {autosave}",
                "max_queued_messages 100000000",
                "log_dest none",
            ]
        )
        + "\n"
    )
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_taken("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not listen on {port}")
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(port: int, client_id: str, *, clean: bool = True) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def park_queue(port: int, count: int) -> None:
    """Leave `count` messages queued for an offline persistent session."""
    subscribed = threading.Event()
    parked = _client(port, "parked", clean=False)
    parked.on_subscribe = lambda *_: subscribed.set()
    parked.subscribe("queue/#", qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK for the parked session")
    parked.disconnect()
    parked.loop_stop()
    if not count:
        return
    publisher = _client(port, "filler")
    started = time.monotonic()
    pending = []
    for i in range(count):
        pending.append(publisher.publish("queue/data", PAYLOAD, qos=1))
        if len(pending) >= 5000:
            for message in pending:
                message.wait_for_publish(60)
            pending.clear()
            say(f"  queued {i + 1}/{count}")
    for message in pending:
        message.wait_for_publish(60)
    publisher.disconnect()
    publisher.loop_stop()
    say(f"  queued {count} messages in {time.monotonic() - started:.1f}s")


def live_latency(port: int, seconds: float) -> list[float]:
    """Publish a QoS 1 message every 10 ms for `seconds`; return each one's delivery latency (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        sent = float(message.payload.decode())
        with lock:
            latencies.append((time.monotonic() - sent) * 1000)

    subscriber = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="live-sub")
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.connect("127.0.0.1", port)
    subscriber.loop_start()
    subscriber.subscribe("live/#", qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    publisher = _client(port, "live-pub")
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        publisher.publish("live/data", repr(time.monotonic()).encode(), qos=1)
        sent += 1
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while len(latencies) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    for client in (publisher, subscriber):
        client.disconnect()
        client.loop_stop()
    if len(latencies) < sent:
        raise RuntimeError(f"only {len(latencies)} of {sent} live messages arrived")
    return latencies


def measure(queued: int, autosave: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="plantline-broker-bench-") as tmp:
        directory = Path(tmp)
        with mosquitto(directory, autosave) as port:
            park_queue(port, queued)
            latencies = live_latency(port, seconds)
        db = directory / "mosquitto.db"
        return {
            "p50": harness.percentile(latencies, 0.50),
            "p99": harness.percentile(latencies, 0.99),
            "max": max(latencies),
            "db_mib": db.stat().st_size / 2**20 if db.exists() else 0.0,
        }


def rows(queued: int, autosave: int, figures: dict[str, float], base: dict[str, float]) -> list[harness.Row]:
    """Return the p99 and max latency with `queued` messages held, against autosave off (unless it is off)."""
    setting = f"autosave {autosave} s" if autosave else "autosave off"
    notes = f"p50 {figures['p50']:.2f} ms, mosquitto.db {figures['db_mib']:.1f} MiB"
    return [
        harness.Row(
            f"{queued} queued, {setting}: {what} latency",
            figures[what],
            "ms",
            "autosave off" if autosave else "",
            base[what] if autosave else None,
            notes,
        )
        for what in ("p99", "max")
    ]


def main() -> None:
    parser = harness.arguments(__doc__, seconds=10.0, seconds_help="live traffic per measurement")
    parser.add_argument("--queued", default="0,10000,100000", help="queue sizes to hold, comma-separated")
    parser.add_argument("--autosave", type=int, default=5, help="autosave_interval under test (seconds)")
    args = parser.parse_args()
    harness.budget(parser, args)
    mosquitto_help = harness.command_output(find_mosquitto(), "-h", any_status=True)  # -h exits 3
    env = harness.environment(mosquitto=mosquitto_help.splitlines()[0])
    say(harness.environment_line(env))
    results = []
    for queued in (int(q) for q in args.queued.split(",")):
        base: dict[str, float] = {}
        for autosave in (0, args.autosave):
            say(f"{queued} queued, autosave {autosave or 'off'}: measuring {args.seconds:.0f}s of live traffic")
            figures = measure(queued, autosave, args.seconds)
            base = base or figures
            results += rows(queued, autosave, figures, base)
    title = f"Live QoS 1 latency while mosquitto holds a queue for an absent client ({args.seconds:g} s each)"
    harness.report(title, env, results, args.format)


if __name__ == "__main__":
    main()
