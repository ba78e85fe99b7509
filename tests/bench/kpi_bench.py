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

The ratio is engine / baseline, in operations per second. Run: uv run --all-packages python tests/bench/kpi_bench.py
[--seconds S] [--count N] [--hours H] [--window MIN] [--format table|json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Sequence
from datetime import time as clock

import harness
from harness import Budget, Rate
from plantline.connectors.kpi import STATE_PRECEDENCE, KpiConfig, KpiEngine, Shift, ShiftCalendar
from plantline.connectors.kpi.engine import COUNTER_SIGNALS
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sim.machine import MachineModel

MACHINE = "filler-1"
START_S = 1_700_000_000
# What the KPI engine reads of a machine's signals.
KPI_SIGNALS = (*STATE_PRECEDENCE, *COUNTER_SIGNALS, "cycle.ideal", "fault.active", "fault.code")
CALENDAR = ShiftCalendar(
    "Europe/Berlin",
    (
        Shift("early", clock(6), clock(14)),
        Shift("late", clock(14), clock(22)),
        Shift("night", clock(22), clock(6)),
    ),
)
CHUNK = 10_000


progress = harness.progress("kpi-bench")


def workload(hours: float) -> list[Sample]:
    """Return the filler's KPI samples, one of each signal per simulated second, in time order."""
    model = MachineModel(seed=7, ideal_cycle_s=2.0, now=START_S)
    samples: list[Sample] = []
    for second in range(int(hours * 3600) + 1):
        values = model.step(START_S + second)
        ts = (START_S + second) * 1000
        samples.extend(Sample(MACHINE, s, values[s], Quality.GOOD, ts) for s in KPI_SIGNALS)
    return samples


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

    return harness.timed(step, budget)


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

    return harness.timed(step, budget)


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

    return harness.timed(step, budget)


def naive_snapshots(samples: Sequence[Sample], since: int, now: int, budget: Budget) -> Rate:
    stamps = [s.source_ts_ms for s in samples]

    def step() -> int:
        naive_window(samples, stamps, since, now)
        return 1

    return harness.timed(step, budget)


def run(hours: float, window_min: float, budget: Budget) -> list[harness.Row]:
    progress(f"simulating {hours} h of the filler ...")
    samples = workload(hours)
    progress(f"{len(samples):,} samples; measuring updates")
    results = [
        row(
            "update",
            "samples/s",
            engine_updates(samples, window_min, budget),
            "dict update loop",
            dict_updates(samples, budget),
        )
    ]

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
        row(
            "snapshot",
            "snapshots/s",
            engine_snapshots(engine, now, budget),
            f"recompute from the {window_min:g}-min window's raw samples",
            naive_snapshots(samples, since, now, budget),
        )
    )
    for result in results:
        progress(result.describe())
    return results


def row(operation: str, unit: str, engine: Rate, baseline: str, plain: Rate) -> harness.Row:
    notes = f"{engine.operations:,} in {engine.seconds:.2f} s; baseline {plain.operations:,} in {plain.seconds:.2f} s"
    return harness.Row(operation, engine.per_second, unit, baseline, plain.per_second, notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.arguments(__doc__, seconds=2.0, count=5_000_000)
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of samples (default 2)")
    parser.add_argument("--window", type=float, default=15.0, help="rolling window in minutes (default 15)")
    args = parser.parse_args(argv)
    budget = harness.budget(parser, args)
    if args.hours <= 0 or not 0 < args.window <= args.hours * 60:
        parser.error("--hours must be positive and --window within --hours")
    env = harness.environment()
    progress(f"{harness.environment_line(env)}; {budget.seconds} s per measurement")
    results = run(args.hours, args.window, budget)
    parameters = {"hours": args.hours, "window_min": args.window, "signals_per_second": len(KPI_SIGNALS)}
    title = f"KPI engine: {len(KPI_SIGNALS)} signals a second for {args.hours:g} h, {args.window:g}-min window"
    harness.report(title, env, results, args.format, extra={"parameters": parameters})
    return 0


if __name__ == "__main__":
    sys.exit(main())
