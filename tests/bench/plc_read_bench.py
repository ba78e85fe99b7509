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
whichever comes first. Run:
     uv run --all-packages python tests/bench/plc_read_bench.py [--seconds S] [--polls N] [--tags N]
     [--cip-tags N] [--format table|json]
Progress goes to stderr, the results (table or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import snap7
from pycomm3 import LogixDriver

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


@dataclass(frozen=True, slots=True)
class Result:
    protocol: str
    mode: str
    tags: int
    polls: int
    requests_per_poll: int
    seconds: float

    @property
    def values_per_s(self) -> float:
        return self.tags * self.polls / self.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "mode": self.mode,
            "tags": self.tags,
            "polls": self.polls,
            "requests_per_poll": self.requests_per_poll,
            "seconds": round(self.seconds, 3),
            "values_per_s": round(self.values_per_s, 1),
        }


def _measure(poll: Callable[[], None], seconds: float, polls: int) -> tuple[int, float]:
    poll()  # warm up
    done, start = 0, time.perf_counter()
    while done < polls and time.perf_counter() - start < seconds:
        poll()
        done += 1
    return done, time.perf_counter() - start


def bench_s7(tags: int, seconds: float, polls: int) -> list[Result]:
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
                "unmerged (one read per tag)": plan_reads(locations, pdu_size=pdu, max_gap=None, max_items=1),
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
                print(f"s7 {mode}: {len(plan.jobs)} requests per poll of {tags} tags (PDU {pdu})", file=sys.stderr)
                done, elapsed = _measure(lambda plan=plan: poll(plan), seconds, polls)  # type: ignore[misc]
                results.append(Result("s7", mode, tags, done, len(plan.jobs), elapsed))
        finally:
            client.disconnect()
    return results


def bench_cip(tags: int, seconds: float, polls: int) -> list[Result]:
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

            print(f"cip batched: {tags} tags per read (connection size {driver.connection_size})", file=sys.stderr)
            done, elapsed = _measure(batched, seconds, polls)
            results.append(Result("cip", "batched (multi-tag)", tags, done, 0, elapsed))
            print(f"cip one tag per request: {tags} requests per poll", file=sys.stderr)
            done, elapsed = _measure(one_by_one, seconds, polls)
            results.append(Result("cip", "one tag per request", tags, done, tags, elapsed))
        finally:
            driver.close()  # type: ignore[no-untyped-call]
    return results


def ratios(results: Sequence[Result]) -> dict[str, float]:
    by = {(r.protocol, r.mode): r.values_per_s for r in results}
    return {
        "s7 merged / unmerged": round(by[("s7", "merged")] / by[("s7", "unmerged (one read per tag)")], 2),
        "s7 merged / packed, not merged": round(by[("s7", "merged")] / by[("s7", "packed, not merged")], 2),
        "cip batched / one tag per request": round(
            by[("cip", "batched (multi-tag)")] / by[("cip", "one tag per request")], 2
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="at most this long per measurement")
    parser.add_argument("--polls", type=int, default=2000, help="at most this many polls per measurement")
    parser.add_argument("--tags", type=int, default=100, help="S7 tags per poll")
    parser.add_argument("--cip-tags", type=int, default=50, help="CIP tags per poll")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.polls < 1 or args.tags < 1 or args.cip_tags < 2:
        parser.error("--seconds > 0, --polls >= 1, --tags >= 1 and --cip-tags >= 2 are required")
    results = bench_s7(args.tags, args.seconds, args.polls) + bench_cip(args.cip_tags, args.seconds, args.polls)
    summary = ratios(results)
    if args.format == "json":
        env = {"python": platform.python_version(), "machine": platform.machine(), "snap7": snap7.__version__}
        print(json.dumps({"environment": env, "results": [r.to_json() for r in results], "ratios": summary}, indent=2))
        return 0
    print(f"{'protocol':<6} {'mode':<30} {'tags':>5} {'req/poll':>8} {'polls':>6} {'values/s':>10}")
    for r in results:
        requests = str(r.requests_per_poll) if r.requests_per_poll else "packed"
        print(f"{r.protocol:<6} {r.mode:<30} {r.tags:>5} {requests:>8} {r.polls:>6} {r.values_per_s:>10.0f}")
    for name, value in summary.items():
        print(f"{name}: x{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
