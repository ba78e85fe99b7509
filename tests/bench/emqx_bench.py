"""The EMQX reconcile of 1 and N lines: time and REST API requests per line, against FakeEmqxApi.

No EMQX runs here, so the lines are reconciled against the stand-in (`plantline_testing.emqx`),
which answers at once: the times measure the operator's client and plan, not EMQX. What carries
over to a real cluster is the load: requests and bytes read per line, for
1. create: a new line's first reconcile (its rules, default deny, bridge connector and actions);
2. resync: a reconcile that finds nothing to change (what the resync timer costs every line);
3. remove: the finalizer's removal.
Each line is the demo line (3 machines, an edge node each, a primary host and a bridge) in its own
namespace. Baseline: the same figure for one line alone; the ratio is how the cost per line grows
with the lines EMQX holds (the shared all-list is read whole). With --validate, every
exchange is also checked against EMQX's OpenAPI (slower; the request counts are the same).

Run: uv run --all-packages python tests/bench/emqx_bench.py [--lines N] [--validate] [--format table|json].
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

import harness
from harness import Row
from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.emqx import Credentials, EmqxBroker
from plantline.operator.emqx_model import LineRef, Result
from plantline_testing.emqx import FakeEmqxApi, emqx_openapi

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-line.yaml"


def lines(count: int) -> list[tuple[LineRef, PlantLine]]:
    """Return `count` demo lines, each its own edge nodes, in namespaces ns0, ns1, ..."""
    base: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    made = []
    for index in range(count):
        data = {**base, "metadata": {**base["metadata"], "namespace": f"ns{index}"}, "spec": dict(base["spec"])}
        data["spec"] |= {
            "line": f"l{index}",
            "connectors": {"grouping": "perMachine"},
            "primaryHostId": "scada",
            "broker": {**base["spec"]["broker"], "bridge": {"host": "core.example"}},
        }
        line = parse_plantline(data)
        made.append((LineRef(f"ns{index}", line.metadata.name), line))
    return made


@dataclass
class Counted:
    """The stand-in behind a transport that counts the bytes it answers."""

    fake: FakeEmqxApi
    read: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        response = self.fake.handle(request)
        self.read += len(response.content)
        return response


@dataclass(frozen=True)
class Phase:
    seconds: float
    requests: int
    read: int


def phase(
    counted: Counted, work: list[tuple[LineRef, PlantLine]], call: Callable[[LineRef, PlantLine], Result]
) -> Phase:
    requests, read = 0, counted.read
    start = time.perf_counter()
    for ref, line in work:
        requests += call(ref, line).requests
    return Phase(time.perf_counter() - start, requests, counted.read - read)


def measure(count: int, *, validate: bool) -> dict[str, Phase]:
    counted = Counted(FakeEmqxApi(validate=validate))
    broker = EmqxBroker("http://emqx:18083", Credentials(counted.fake.key, counted.fake.secret),
                        transport=httpx.MockTransport(counted.handle))  # fmt: skip
    work = lines(count)
    return {
        "create": phase(counted, work, lambda ref, line: broker.sync(line, ref, None, b"")),
        "resync": phase(counted, work, lambda ref, line: broker.sync(line, ref, None, b"")),
        "remove": phase(counted, work, lambda ref, line: broker.remove(ref, line)),
    }


def rows(count: int, validate: bool, say: Callable[[str], None]) -> list[Row]:
    say("1 line")
    one = measure(1, validate=validate)
    say(f"{count} lines")
    many = measure(count, validate=validate)
    out = []
    for name, phase_many in many.items():
        phase_one = one[name]
        for what, unit, figure, baseline in (
            ("time", "ms/line", phase_many.seconds * 1000 / count, phase_one.seconds * 1000),
            ("requests", "requests/line", phase_many.requests / count, float(phase_one.requests)),
            ("read", "KiB/line", phase_many.read / 1024 / count, phase_one.read / 1024),
        ):
            row = Row(f"{name}, {count} lines: {what}", figure, unit, f"{name}, 1 line", baseline)
            say(row.describe())
            out.append(row)
    return out


def main() -> int:
    parser = harness.arguments(__doc__)
    parser.add_argument("--lines", type=int, default=100, help="lines reconciled together (default 100)")
    parser.add_argument("--validate", action="store_true", help="check every exchange against EMQX's OpenAPI")
    args = parser.parse_args()
    if args.lines < 1:
        parser.error("--lines must be positive")
    if args.validate:
        emqx_openapi()  # loading the description takes seconds: not part of any reconcile
    result = rows(args.lines, args.validate, harness.progress("emqx"))
    env = harness.environment(httpx=httpx.__version__, emqx_api="5.8.1 (FakeEmqxApi)", validated=args.validate)
    harness.report("emqx: reconcile time and REST API load per line", env, result, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
