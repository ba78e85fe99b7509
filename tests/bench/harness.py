"""What every benchmark shares: budgets and bounded loops, rates and ratios, the environment, the table.

A benchmark measures its figures, each with the baseline it is compared with in the same run, as
`Row`s, and hands them to `report`: a table (or JSON) on stdout that starts with the environment
line, so a figure never travels without the machine and versions it was taken on. Progress goes to
stderr. The ratio of a row is always its figure over its baseline's, in the row's unit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Budget:
    """A measurement stops after `seconds`, or once `count` operations are done, whichever comes first."""

    seconds: float
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Rate:
    """How many operations were done in how many seconds."""

    operations: int
    seconds: float

    @property
    def per_second(self) -> float | None:
        """Operations per second; None when no time was measured."""
        return rate(self.operations, self.seconds)


def rate(operations: float, seconds: float) -> float | None:
    """Return operations per second, or None when `seconds` is not positive."""
    return operations / seconds if seconds > 0 else None


def ratio(figure: float | None, baseline: float | None) -> float | None:
    """Return figure / baseline, or None when either is missing or the baseline is zero."""
    return figure / baseline if figure is not None and baseline else None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile (`fraction` in [0, 1]) of the values; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # the smallest value with at least `fraction` of them at or below it (rounding keeps 0.07 * 100 at 7)
    rank = max(1, min(len(ordered), math.ceil(round(fraction * len(ordered), 9))))
    return ordered[rank - 1]


def timed(step: Callable[[], int], budget: Budget, *, warm_up: bool = False) -> Rate:
    """Return the rate of `step` run until the budget is spent.

    `step` returns how many operations it did; 0 means there is nothing left, and ends the
    measurement early. With `warm_up`, one step runs first, untimed, so first-use costs (imports,
    caches, pages) are not measured.
    """
    if warm_up:
        step()
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while (budget.count is None or done < budget.count) and elapsed < budget.seconds:
        did = step()
        if not did:
            break
        done += did
        elapsed = time.perf_counter() - start
    return Rate(done, time.perf_counter() - start)


def repeated(call: Callable[[], object], *, most: int = 1000) -> Callable[[], int]:
    """Return a step for `timed` that calls `call` 1, 2, 4 … up to `most` times a step.

    Fast calls are timed in batches so that reading the clock does not dominate; `most=1` times
    every call on its own.
    """
    batch = 1

    def step() -> int:
        nonlocal batch
        done = batch
        for _ in range(done):
            call()
        batch = min(batch * 2, most)
        return done

    return step


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of a benchmark, and the baseline measured alongside it in the same run, if any."""

    measurement: str
    figure: float | None
    unit: str
    baseline: str = ""
    baseline_figure: float | None = None
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        """The figure over the baseline's figure."""
        return ratio(self.figure, self.baseline_figure)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}

    def describe(self) -> str:
        """The row as one line, for progress messages."""
        text = f"{self.measurement}: {number(self.figure)} {self.unit}"
        if self.baseline:
            text += f"; {self.baseline}: {number(self.baseline_figure)}; ratio {number(self.ratio)}"
        return text + (f" ({self.notes})" if self.notes else "")


def number(value: float | None) -> str:
    """Return a figure with the digits that matter: thousands grouped, three significant below 100."""
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


TABLE_HEADER = ("measurement", "figure", "unit", "baseline", "baseline figure", "ratio", "notes")
RIGHT_ALIGNED = {1, 4, 5}


def _cells(row: Row) -> tuple[str, ...]:
    compared = bool(row.baseline)
    return (
        row.measurement,
        number(row.figure),
        row.unit,
        row.baseline,
        number(row.baseline_figure) if compared else "",
        number(row.ratio) if compared else "",
        row.notes,
    )


def table(rows: Sequence[Row]) -> str:
    """Return the rows as an aligned text table: figure, unit, baseline, ratio, notes."""
    cells = [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in [TABLE_HEADER, *cells]) for i in range(len(TABLE_HEADER))]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if i in RIGHT_ALIGNED else value.ljust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    header = line(TABLE_HEADER)
    return "\n".join([header, "-" * len(header), *(line(c) for c in cells)])


def environment(**versions: object) -> dict[str, object]:
    """Return the machine, its cores and the Python version, then the given versions."""
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
        "cpus": os.cpu_count(),
        **versions,
    }


def command_output(*argv: str | Path, any_status: bool = False, cwd: Path | None = None) -> str:
    """Return what a command printed (stdout, else stderr), for a version in the environment.

    "?" when it could not run or (unless `any_status`) exited non-zero.
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    if done.returncode != 0 and not any_status:
        return "?"
    return (done.stdout or done.stderr).rstrip()


def environment_line(env: Mapping[str, object]) -> str:
    """Return the environment as one line: `python 3.11.2, machine x86_64 Linux 6.1.0, cpus 2, …`."""
    return ", ".join(f"{key} {value}" for key, value in env.items())


def report(
    title: str,
    env: Mapping[str, object],
    rows: Sequence[Row],
    output: str,
    *,
    after: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Print the results to stdout: a title, the environment line, the table and `after`; or JSON."""
    if output == "json":
        document = {"benchmark": title, "environment": dict(env), "results": [r.to_json() for r in rows]}
        print(json.dumps(document | dict(extra or {}), indent=2, default=str))
        return
    print("\n".join([title, environment_line(env), "", table(rows), *([""] if after else []), *after]))


def progress(name: str) -> Callable[[str], None]:
    """Return a function that prints `[name] message` to stderr at once."""

    def say(message: str) -> None:
        print(f"[{name}] {message}", file=sys.stderr, flush=True)

    return say


def arguments(
    doc: str | None,
    *,
    seconds: float | None = None,
    seconds_help: str = "time budget per measurement",
    count: int | None = None,
    count_help: str = "operation budget per measurement",
) -> argparse.ArgumentParser:
    """Return a parser with the module's docstring as help, `--format`, and `--seconds`/`--count` if given."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if seconds is not None:
        parser.add_argument("--seconds", type=float, default=seconds, help=f"{seconds_help} (default {seconds:g})")
    if count is not None:
        parser.add_argument("--count", type=int, default=count, help=f"{count_help} (default {count:,})")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
    return parser


def positive(text: str) -> int:
    """Return the argument as a positive int: an argparse `type` that refuses 0, negatives and non-numbers."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def budget(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Budget:
    """Return the budget of `--seconds` (and `--count`), or exit through the parser if they are not positive."""
    count: int | None = getattr(args, "count", None)
    if args.seconds <= 0 or (count is not None and count < 1):
        parser.error("--seconds must be positive" if count is None else "--seconds and --count must be positive")
    return Budget(args.seconds, count)


def cpu_seconds(stat: str | Path) -> float | None:
    """Return the user + system CPU seconds in a /proc/<pid>/stat (or task) file; None if unreadable."""
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
