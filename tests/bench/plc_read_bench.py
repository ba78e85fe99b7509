"""PLC read throughput (values per second): S7 merged vs unmerged reads, CIP batched vs one tag per request.

Both against the simulators on loopback, in one run, so the ratios compare like with like:

1. S7 (python-snap7 3.x client and server, PDU as granted, 480): `--tags` INT tags 4 bytes apart
   in one DB, read with the S7 source's own planner and codec (`plan_reads`, `encode_read_request`,
   `decode_read_response`, `take_values`, sent with `Client.iso_exchange_buffer`, as `S7Source`
   does), planned three ways: merged (one range, split to the PDU: what the source does), items
   packed but not merged (one item per tag, up to 20 per job), and unmerged (one job per tag,
   what a naive client does with `db_read` per tag).
2. CIP (pycomm3 against cpppo's simulator): `--cip-tags` scalar DINT tags, with the CIP source's
   definitions (`logix_tag_definitions`), read batched (one `LogixDriver.read` of all tags, which
   packs them into Multiple Service Packets up to the connection size: what the source does) and
   one tag per request.

Each measurement repeats whole polls until `--seconds` have passed or `--polls` polls were made,
whichever comes first. The baseline of each protocol is its one-tag-per-request read; the ratio
is a mode's values per second over the baseline's. Run:
     uv run --all-packages python tests/bench/plc_read_bench.py [--seconds S] [--polls N] [--tags N]
     [--cip-tags N] [--format table|json]
Progress goes to stderr, the results (table or JSON) to stdout.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version

import snap7
from pycomm3 import LogixDriver

import harness
from harness import Budget, Rate
from plantline.connectors.addressing.s7 import parse_s7_address
from plantline.connectors.config import Tag
from plantline.connectors.sim.cip_server import CipMachineServer
from plantline.connectors.sim.s7_server import Area, S7MachineServer
from plantline.connectors.sources.cip import logix_tag_definitions
from plantline.connectors.sources.s7_plan import (
    ReadPlan,
    decode_read_response,
    encode_read_request,
    plan_reads,
    take_values,
)
from plantline_testing import free_port

S7_BASELINE = "unmerged (one read per tag)"
CIP_BASELINE = "one tag per request"
progress = harness.progress("plc-read-bench")


@dataclass(frozen=True, slots=True)
class Result:
    protocol: str
    mode: str
    tags: int
    requests_per_poll: int | None  # None: as many as the packing needs
    polls: Rate


def measure(poll: Callable[[], None], budget: Budget) -> Rate:
    """Return whole polls per second, one untimed poll first."""
    return harness.timed(harness.repeated(poll, most=1), budget, warm_up=True)


def bench_s7(tags: int, budget: Budget) -> list[Result]:
    locations = [parse_s7_address(f"DB10.DBW{100 + 4 * i}", "int16") for i in range(tags)]
    results = []
    with S7MachineServer(free_port(), db_size=max(1024, 100 + 4 * tags + 2)) as sim:
        for i in range(tags):
            sim.poke(Area.DB, 100 + 4 * i, struct.pack(">h", i))
        client = snap7.Client()
        client.connect("127.0.0.1", 0, 1, sim.port)
        try:
            pdu = int(client.pdu_length)
            plans = {
                "merged": plan_reads(locations, pdu_size=pdu),
                "packed, not merged": plan_reads(locations, pdu_size=pdu, max_gap=None),
                S7_BASELINE: plan_reads(locations, pdu_size=pdu, max_gap=None, max_items=1),
            }
            ref = [0]

            def poll(plan: ReadPlan) -> None:
                answers = []
                for job in plan.jobs:
                    ref[0] = ref[0] % 0xFFFF + 1
                    raw = client.iso_exchange_buffer(bytearray(encode_read_request(ref[0], job)))
                    answers.append(decode_read_response(bytes(raw), pdu_ref=ref[0], job=job))
                values = take_values(plan, answers)
                if values[-1].value != tags - 1:
                    raise AssertionError(f"read {values[-1]}, expected {tags - 1}")

            for mode, plan in plans.items():
                progress(f"s7 {mode}: {len(plan.jobs)} requests per poll of {tags} tags (PDU {pdu})")
                polls = measure(partial(poll, plan), budget)
                results.append(Result("s7", mode, tags, len(plan.jobs), polls))
        finally:
            client.disconnect()
    return results


def bench_cip(tags: int, budget: Budget) -> list[Result]:
    names = [f"Bench_{i}" for i in range(tags)]
    sim = CipMachineServer(free_port(), extra_tags=dict.fromkeys(names, "DINT"), update_interval_s=1.0)
    results = []
    with sim:
        for first in range(0, tags, 50):
            sim.poke({name: i for i, name in enumerate(names) if first <= i < first + 50})
        definitions = logix_tag_definitions(
            [Tag(signal=f"process.b{i}", address=n, datatype="int32") for i, n in enumerate(names)]
        )
        driver = LogixDriver(f"127.0.0.1:{sim.port}", init_tags=False)
        driver.open()  # type: ignore[no-untyped-call]
        try:
            driver._tags = definitions

            def batched() -> None:
                replies = driver.read(*names)
                assert isinstance(replies, list)
                if replies[-1].value != tags - 1:
                    raise AssertionError(f"read {replies[-1]}, expected {tags - 1}")

            def one_by_one() -> None:
                for name in names:
                    reply = driver.read(name)
                    if isinstance(reply, list) or reply.error:
                        raise AssertionError(f"read {reply}")

            progress(f"cip batched: {tags} tags per read (connection size {driver.connection_size})")
            results.append(Result("cip", "batched (multi-tag)", tags, None, measure(batched, budget)))
            progress(f"cip {CIP_BASELINE}: {tags} requests per poll")
            results.append(Result("cip", CIP_BASELINE, tags, tags, measure(one_by_one, budget)))
        finally:
            driver.close()  # type: ignore[no-untyped-call]
    return results


def values_per_second(result: Result) -> float | None:
    return harness.rate(result.tags * result.polls.operations, result.polls.seconds)


def rows(results: Sequence[Result]) -> list[harness.Row]:
    """Return a row per read mode, against its protocol's one-tag-per-request read."""
    baselines = {r.protocol: r for r in results if r.mode in (S7_BASELINE, CIP_BASELINE)}
    out = []
    for r in results:
        base = baselines[r.protocol] if r is not baselines[r.protocol] else None
        requests = "packed" if r.requests_per_poll is None else str(r.requests_per_poll)
        out.append(
            harness.Row(
                f"{r.protocol} {r.mode}",
                values_per_second(r),
                "values/s",
                f"{base.protocol} {base.mode}" if base else "",
                values_per_second(base) if base else None,
                f"{r.tags} tags, {requests} requests per poll, {r.polls.operations} polls",
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.arguments(__doc__, seconds=2.0, seconds_help="at most this long per measurement")
    parser.add_argument("--polls", type=int, default=2000, help="at most this many polls per measurement")
    parser.add_argument("--tags", type=int, default=100, help="S7 tags per poll")
    parser.add_argument("--cip-tags", type=int, default=50, help="CIP tags per poll")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.polls < 1 or args.tags < 1 or args.cip_tags < 2:
        parser.error("--seconds > 0, --polls >= 1, --tags >= 1 and --cip-tags >= 2 are required")
    budget = Budget(args.seconds, args.polls)
    env = harness.environment(snap7=snap7.__version__, pycomm3=version("pycomm3"))
    progress(harness.environment_line(env))
    results = bench_s7(args.tags, budget) + bench_cip(args.cip_tags, budget)
    harness.report("PLC reads over loopback: values per second", env, rows(results), args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
