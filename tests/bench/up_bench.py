"""`plantline up` on the demo line: time to first DDATA, and PLC -> core latency through the bridge.

Part 1 runs `plantline up --simulate` (foreground, as a user does) on a copy of the demo line and
times, from the command's start: the broker listening, the line's NBIRTH, and the first DDATA of
every machine, at a reader subscribed as the analytics identity. Cold = a new state directory (a
CA is created and every certificate issued); warm = the same directory again. The baseline, in
the same run, is a bare mosquitto started with the same rendered configuration; the ratio is the
time to the first DDATA of all machines over the bare start.

Part 2 runs the demo line with a bridge to a second mosquitto (the core broker) and measures, for
every DDATA metric, arrival time minus the metric's source timestamp, at the site broker and at
the core broker at once. The machines' samplingInterval fixes the rate. The site broker is the
baseline: the ratio core/site is what the bridge adds. OPC UA timestamps are the simulator's; S7
and CIP timestamps are the connector's read time, so their figures start at the read.

    uv run python tests/bench/up_bench.py [--seconds 30] [--sampling 0.1] [--format table|json]
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import harness
from plantline.connectors.sparkplug import MessageType
from plantline.operator.local import find_mosquitto, port_taken
from plantline_testing import free_port
from plantline_testing.lines import UpRun, line_copy, start_core_broker
from plantline_testing.sparkplug_reader import SparkplugReader

MACHINES = ("filler", "capper", "labeler")


say = harness.progress("up-bench")


def _wait(condition: Callable[[], object], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)
    return time.monotonic()


def time_up(run: UpRun) -> dict[str, float]:
    """Start `plantline up` in the foreground; return seconds to broker, NBIRTH, all first DDATA."""
    argv = [sys.executable, "-m", "plantline.operator.cli", "up", str(run.line_file), "--simulate"]
    argv += ["--state-dir", str(run.state_dir), "--metrics-base-port", str(run.metrics_base)]
    log = (run.state_dir.parent / "up-bench.log").open("ab")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cert = run.tls / f"{run.identity('reader')}.crt"
        broker = _wait(lambda: cert.exists() and port_taken("127.0.0.1", run.port), 120, "broker") - start
        with run.reader("up-bench") as reader:
            nbirth = _wait(lambda: reader.of(MessageType.NBIRTH), 120, "NBIRTH") - start
            firsts = [_wait(partial(reader.of, MessageType.DDATA, m), 120, f"DDATA {m}") - start for m in MACHINES]
        return {"broker": broker, "nbirth": nbirth, "all_ddata": max(firsts)}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def time_bare_mosquitto(run: UpRun) -> float:
    """Seconds from starting mosquitto with the line's rendered config to its port listening."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [find_mosquitto(), "-c", str(run.state_dir / "broker" / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return _wait(lambda: port_taken("127.0.0.1", run.port), 30, "bare mosquitto") - start
    finally:
        proc.terminate()
        proc.wait(10)


def latencies(reader: SparkplugReader, since_ms: int) -> list[float]:
    out = []
    for message in reader.of(MessageType.DDATA):
        arrived_ms = message.at * 1000
        for metric in message.payload.metrics:
            if metric.timestamp and metric.timestamp >= since_ms and not metric.is_historical:
                out.append(arrived_ms - metric.timestamp)
    return out


def bridge_latency(work: Path, seconds: float, sampling: float) -> dict[str, list[float]]:
    core_port = free_port()
    line_copy(work / "bridged.yaml", bridge=("127.0.0.1", core_port), sampling_interval=sampling)
    run = UpRun(work / "bridged.yaml", work / "bridged-state")
    core = None
    try:
        run.up_detached()
        core = start_core_broker(run, work / "core", core_port)
        with run.reader("site-host") as site, run.reader("core-host", port=core_port) as at_core:
            _wait(lambda: all(at_core.of(MessageType.DDATA, m) for m in MACHINES), 120, "DDATA at the core")
            time.sleep(2)  # past the births and the first burst
            since = int(time.time() * 1000)
            say(f"measuring {seconds:.0f} s at samplingInterval {sampling} s")
            time.sleep(seconds)
            return {"site": latencies(site, since), "core": latencies(at_core, since)}
    finally:
        run.down()
        run.kill_all()
        if core is not None:
            core.stop()


def start_rows(cold: dict[str, float], warm: dict[str, float], bare: float) -> list[harness.Row]:
    """Return the times of a cold and a warm start; the first DDATA of all against the bare broker."""
    rows = []
    for name, figures in (("cold", cold), ("warm", warm)):
        rows += [
            harness.Row(f"{name} start: broker listening", figures["broker"], "s"),
            harness.Row(f"{name} start: NBIRTH", figures["nbirth"], "s"),
            harness.Row(
                f"{name} start: first DDATA of all {len(MACHINES)}",
                figures["all_ddata"],
                "s",
                "bare mosquitto start, same config",
                bare,
            ),
        ]
    cold_warm = harness.ratio(cold["all_ddata"], warm["all_ddata"])
    notes = f"cold/warm to the first DDATA: {harness.number(cold_warm)}"
    return [*rows, harness.Row("bare mosquitto start, same config", bare, "s", notes=notes)]


def latency_rows(found: dict[str, list[float]], seconds: float) -> list[harness.Row]:
    """Return PLC -> broker latency percentiles at the site broker, and at the core against the site."""
    rows, site = [], found["site"]
    for where, values in found.items():
        notes = f"{len(values)} metrics, {len(values) / seconds:.0f} per s"
        compared = where != "site" and bool(site)
        for name, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            rows.append(
                harness.Row(
                    f"{where} broker: PLC -> broker latency {name}",
                    harness.percentile(values, fraction) if values else None,
                    "ms",
                    f"site broker {name}" if compared else "",
                    harness.percentile(site, fraction) if compared else None,
                    notes,
                )
            )
    return rows


def main() -> int:
    parser = harness.arguments(__doc__, seconds=30.0, seconds_help="latency measuring window")
    parser.add_argument("--sampling", type=float, default=0.1, help="samplingInterval of every machine (s)")
    args = parser.parse_args()
    harness.budget(parser, args)
    env = harness.environment()
    say(harness.environment_line(env))
    with tempfile.TemporaryDirectory(prefix="plantline-up-bench-") as tmp:
        work = Path(tmp)
        line_copy(work / "line.yaml")
        run = UpRun(work / "line.yaml", work / "state")
        say("cold start (new state directory: CA, certificates)")
        cold = time_up(run)
        say("warm start (same state directory)")
        warm = time_up(run)
        bare = time_bare_mosquitto(run)
        found = bridge_latency(work, args.seconds, args.sampling)
    title = (
        f"plantline up on the demo line ({len(MACHINES)} machines, one edge node), and PLC -> broker latency"
        f" at samplingInterval {args.sampling:g} s over {args.seconds:g} s"
    )
    harness.report(title, env, start_rows(cold, warm, bare) + latency_rows(found, args.seconds), args.format)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
