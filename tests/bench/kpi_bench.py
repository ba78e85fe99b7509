"""Samples per second into the KPI engine and snapshots per second out of it, against baselines.

The workload is the simulated filler (`sim.machine.MachineModel`, ideal cycle 2 s) stepped once a
second for --hours simulated hours, as the samples of its KPI signals (states, counters, fault,
ideal cycle: 11 per step), with a three-shift calendar in Europe/Berlin and a --window minute
rolling window. Each measurement is bounded by --count operations or --seconds, whichever first.

1. update: `KpiEngine.update(sample)` over the workload in order (a fresh engine when it runs
   out). Baseline: a plain dict update loop over the same samples (`last[signal] = value`): the
   least any consumer of a sample stream does.
2. snapshot: `KpiEngine.snapshot(now)` on an engine fed with the whole workload (window and
   current shift, faults, warnings). Baseline: recomputing the window's A, P and Q from the raw
   samples kept in a list (bisect to the window, then one pass over it): what running sums save.
   Both give the same figures (checked before timing).

The ratio is engine / baseline. Run: uv run --all-packages python tests/bench/kpi_bench.py
[--seconds S] [--count N] [--hours H] [--window MIN] [--format table|json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import time as clock
from typing import Any

from plantline.connectors.kpi import KpiConfig, KpiEngine, Shift, ShiftCalendar
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sim.machine import MachineModel

MACHINE = "filler-1"
START_S = 1_700_000_000
KPI_SIGNALS = (
    "state.run",
    "state.idle",
    "state.blocked",
    "state.starved",
    "state.planned_stop",
    "counter.good",
    "counter.reject",
    "counter.total",
    "cycle.ideal",
    "fault.active",
    "fault.code",
)
CALENDAR = ShiftCalendar(
    "Europe/Berlin",
    (
        Shift("early", clock(6), clock(14)),
        Shift("late", clock(14), clock(22)),
        Shift("night", clock(22), clock(6)),
    ),
)
CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class Budget:
    count: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Rate:
    operations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Result:
    operation: str
    engine: Rate
    baseline_name: str
    baseline: Rate

    @property
    def ratio(self) -> float:
        return self.engine.per_second / self.baseline.per_second if self.baseline.per_second else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "operations": self.engine.operations,
            "seconds": round(self.engine.seconds, 4),
            "per_second": round(self.engine.per_second),
            "baseline": self.baseline_name,
            "baseline_operations": self.baseline.operations,
            "baseline_per_second": round(self.baseline.per_second),
            "ratio": round(self.ratio, 4),
        }


def progress(message: str) -> None:
    print(f"[kpi-bench] {message}", file=sys.stderr, flush=True)


def workload(hours: float) -> list[Sample]:
    """Return the filler's KPI samples, one of each signal per simulated second, in time order."""
    model = MachineModel(seed=7, ideal_cycle_s=2.0, now=START_S)
    samples: list[Sample] = []
    for second in range(int(hours * 3600) + 1):
        values = model.step(START_S + second)
        ts = (START_S + second) * 1000
        samples.extend(Sample(MACHINE, s, values[s], Quality.GOOD, ts) for s in KPI_SIGNALS)
    return samples


def timed(step: Callable[[], int], budget: Budget) -> Rate:
    """Run `step` (which returns the operations it did) until the budget is spent."""
    done = 0
    start = time.perf_counter()
    while done < budget.count and time.perf_counter() - start < budget.seconds:
        done += step()
    return Rate(done, time.perf_counter() - start)


def config(window_min: float) -> KpiConfig:
    return KpiConfig(window_s=window_min * 60, resolution_s=5, calendar=CALENDAR)


def engine_updates(samples: Sequence[Sample], window_min: float, budget: Budget) -> Rate:
    engine, at = KpiEngine(MACHINE, config(window_min)), 0

    def step() -> int:
        nonlocal engine, at
        if at >= len(samples):  # the workload is used up: start again with a fresh engine
            engine, at = KpiEngine(MACHINE, config(window_min)), 0
        update = engine.update
        chunk = samples[at : at + CHUNK]
        for sample in chunk:
            update(sample)
        at += len(chunk)
        return len(chunk)

    return timed(step, budget)


def dict_updates(samples: Sequence[Sample], budget: Budget) -> Rate:
    last: dict[str, object] = {}
    at = 0

    def step() -> int:
        nonlocal at
        if at >= len(samples):
            at = 0
        chunk = samples[at : at + CHUNK]
        for sample in chunk:
            last[sample.signal] = sample.value
        at += len(chunk)
        return len(chunk)

    return timed(step, budget)


def naive_window(samples: Sequence[Sample], stamps: Sequence[int], since: int, now: int) -> tuple[float, float, float]:
    """Return (A, P, Q) of [since, now] from the raw samples: the recompute that running sums avoid."""
    at = bisect.bisect_left(stamps, since)
    bits: dict[str, bool] = {}
    for sample in samples[max(0, at - len(KPI_SIGNALS)) : at]:  # the state going into the window
        if sample.signal.startswith("state."):
            bits[sample.signal] = bool(sample.value)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    times = {"run": 0, "down": 0}
    t, ideal = since, 2.0
    for sample in samples[at:]:
        if sample.source_ts_ms > now:
            break
        if sample.source_ts_ms > t:
            kind = "run" if bits.get("state.run") else None if bits.get("state.planned_stop") else "down"
            if kind:
                times[kind] += sample.source_ts_ms - t
            t = sample.source_ts_ms
        if sample.signal.startswith("state."):
            bits[sample.signal] = bool(sample.value)
        elif sample.signal.startswith("counter.") and isinstance(sample.value, int):
            first.setdefault(sample.signal, sample.value)
            last[sample.signal] = sample.value
        elif sample.signal == "cycle.ideal" and isinstance(sample.value, float):
            ideal = sample.value
    total = last["counter.total"] - first["counter.total"]
    good = last["counter.good"] - first["counter.good"]
    run, planned = times["run"] / 1000, (times["run"] + times["down"]) / 1000
    return run / planned, ideal * total / run, good / total


def engine_snapshots(engine: KpiEngine, now: int, budget: Budget) -> Rate:
    def step() -> int:
        for i in range(100):
            engine.snapshot(now + i)
        return 100

    return timed(step, budget)


def naive_snapshots(samples: Sequence[Sample], since: int, now: int, budget: Budget) -> Rate:
    stamps = [s.source_ts_ms for s in samples]

    def step() -> int:
        naive_window(samples, stamps, since, now)
        return 1

    return timed(step, budget)


def run(hours: float, window_min: float, budget: Budget) -> list[Result]:
    progress(f"simulating {hours} h of the filler ...")
    samples = workload(hours)
    progress(f"{len(samples):,} samples; measuring updates")
    updates = engine_updates(samples, window_min, budget)
    plain = dict_updates(samples, budget)
    results = [Result("update", updates, "dict update loop", plain)]

    engine = KpiEngine(MACHINE, config(window_min))
    for sample in samples:
        engine.update(sample)
    now = samples[-1].source_ts_ms
    snap = engine.snapshot(now)
    since = snap.window.start_ms
    stamps = [s.source_ts_ms for s in samples]
    a, p, q = naive_window(samples, stamps, since, now)
    assert snap.availability is not None
    assert snap.performance is not None
    assert snap.quality is not None
    assert abs(snap.availability - a) < 1e-9, (snap.availability, a)
    assert abs(snap.performance - p) < 1e-9, (snap.performance, p)
    assert abs(snap.quality - q) < 1e-9, (snap.quality, q)
    progress(f"window A={a:.4f} P={p:.4f} Q={q:.4f} (engine and recompute agree); measuring snapshots")
    results.append(
        Result(
            "snapshot",
            engine_snapshots(engine, now, budget),
            f"recompute from the {window_min:g}-min window's raw samples",
            naive_snapshots(samples, since, now, budget),
        )
    )
    for r in results:
        progress(
            f"{r.operation:<9} {r.engine.per_second:>12,.0f}/s ({r.engine.operations:,} in {r.engine.seconds:.2f} s);"
            f" {r.baseline_name}: {r.baseline.per_second:,.0f}/s; ratio {r.ratio:.3f}"
        )
    return results


def table(results: Sequence[Result]) -> str:
    header = f"{'operation':<10}{'ops':>10}{'per second':>14}  {'baseline':<44}{'per second':>14}{'ratio':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.operation:<10}{r.engine.operations:>10}{r.engine.per_second:>14,.0f}"
            f"  {r.baseline_name:<44}{r.baseline.per_second:>14,.0f}{r.ratio:>9.3f}"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per measurement (default 2)")
    parser.add_argument("--count", type=int, default=5_000_000, help="operation budget per measurement")
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of samples (default 2)")
    parser.add_argument("--window", type=float, default=15.0, help="rolling window in minutes (default 15)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.count < 1 or args.hours <= 0 or not 0 < args.window <= args.hours * 60:
        parser.error("--seconds, --count, --hours must be positive and --window within --hours")
    env = environment()
    progress(f"python {env['python']}, {env['cpus']} CPUs; {args.seconds} s per measurement")
    results = run(args.hours, args.window, Budget(args.count, args.seconds))
    if args.format == "json":
        parameters = {"hours": args.hours, "window_min": args.window, "signals_per_second": len(KPI_SIGNALS)}
        print(
            json.dumps(
                {"environment": env, "parameters": parameters, "results": [r.to_json() for r in results]}, indent=2
            )
        )
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
