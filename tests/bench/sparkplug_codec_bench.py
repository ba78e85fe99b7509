"""Sparkplug B DDATA encode/decode per second: plantline's codec against plain protobuf, in one run.

For a DDATA of 10 and of 100 aliased metrics (timestamp, datatype, value; a mix of Double,
Int32, Boolean and Float), without properties and with a Quality property on every metric:

- protobuf serialize / parse: SerializeToString of a prebuilt message, ParseFromString into
  one. The ceiling: no Python-side work per field.
- protobuf build+serialize: the same message built from Python values with metrics.add() and
  field assignments, then serialized. What any Python Sparkplug encoder must at least do.
- encode: plantline's encode() of a prebuilt Payload (validation included).
- encode_ddata: plantline's fast path from (alias, ts, datatype, value, props) tuples.
- build+encode: Metric dataclasses built from values, then encode(): the plain API end to end.
- decode: plantline's decode() to frozen dataclasses (range checks, signed integers, arrays).

Each is run once untimed, then repeatedly for --seconds. Ratios compare each method with the
protobuf ceiling of the same direction and size (serialize for encoders, parse for decode).

Run: uv run --all-packages python tests/bench/sparkplug_codec_bench.py [--seconds S] [--format json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import google.protobuf
from google.protobuf.internal import api_implementation

from plantline.connectors.sparkplug import (
    DataType,
    Metric,
    Payload,
    PropertyValue,
    decode,
    encode,
    encode_ddata,
)
from plantline.connectors.sparkplug import _sparkplug_b_pb2 as pb

TIMESTAMP = 1_700_000_000_000
SEQ = 42
SIZES = (10, 100)
QUALITY = (("Quality", PropertyValue(DataType.Int32, 192)),)

Row = tuple[int, int, DataType, object, Sequence[tuple[str, PropertyValue]] | None]


@dataclass(frozen=True, slots=True)
class Result:
    """One measurement: how many messages a method handled in how long."""

    method: str
    metrics: int
    properties: bool
    count: int
    seconds: float
    baseline: str

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def us_per_message(self) -> float:
        return 1e6 * self.seconds / self.count

    @property
    def us_per_metric(self) -> float:
        return self.us_per_message / self.metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "metrics": self.metrics,
            "properties": self.properties,
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "messages_per_second": round(self.rate, 1),
            "us_per_message": round(self.us_per_message, 3),
            "us_per_metric": round(self.us_per_metric, 3),
            "baseline": self.baseline,
        }


def progress(message: str) -> None:
    print(f"[sparkplug-bench] {message}", file=sys.stderr, flush=True)


def rows(size: int, with_properties: bool) -> list[Row]:
    """The metrics of one DDATA: a mix of the datatypes a line reports most."""
    kinds: list[tuple[DataType, Callable[[int], object]]] = [
        (DataType.Double, lambda i: i * 1.25),
        (DataType.Int32, lambda i: -i),
        (DataType.Boolean, lambda i: i % 2 == 0),
        (DataType.Float, lambda i: i * 0.5),
    ]
    result: list[Row] = []
    for index in range(size):
        datatype, value = kinds[index % len(kinds)]
        result.append((index + 1, TIMESTAMP + index, datatype, value(index), QUALITY if with_properties else None))
    return result


def build_pb2(data: Sequence[Row]) -> pb.Payload:
    """Build the protobuf message from Python values, as directly as protobuf allows."""
    message = pb.Payload()
    message.timestamp = TIMESTAMP
    add = message.metrics.add
    for alias, timestamp, datatype, value, properties in data:
        metric = add()
        metric.alias = alias
        metric.timestamp = timestamp
        metric.datatype = datatype
        if datatype is DataType.Double:
            metric.double_value = value  # type: ignore[assignment]
        elif datatype is DataType.Int32:
            metric.int_value = value & 0xFFFF_FFFF  # type: ignore[operator]
        elif datatype is DataType.Boolean:
            metric.boolean_value = value  # type: ignore[assignment]
        else:
            metric.float_value = value  # type: ignore[assignment]
        if properties:
            for key, prop in properties:
                metric.properties.keys.append(key)
                metric.properties.values.add(type=prop.type, int_value=prop.value)
    message.seq = SEQ
    return message


def to_payload(data: Sequence[Row]) -> Payload:
    metrics = tuple(Metric(None, a, t, d, v, properties=tuple(p or ())) for a, t, d, v, p in data)
    return Payload(TIMESTAMP, SEQ, metrics)


def build_and_serialize(data: Sequence[Row]) -> bytes:
    return build_pb2(data).SerializeToString()


def build_and_encode(data: Sequence[Row]) -> bytes:
    return encode(to_payload(data))


def measure(method: str, size: int, with_properties: bool, step: Callable[[], object], seconds: float) -> Result:
    """Run `step` once untimed, then in batches until `seconds` have passed; return the rate."""
    step()
    done = 0
    batch = 1
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(batch):
            step()
        done += batch
        elapsed = time.perf_counter() - start
        batch = min(batch * 2, 1000)
    baseline = "protobuf parse" if method in {"decode", "protobuf parse"} else "protobuf serialize"
    result = Result(method, size, with_properties, done, elapsed, baseline)
    progress(f"{method}, {size} metrics{' + props' if with_properties else ''}: {result.rate:,.0f}/s")
    return result


def run(seconds: float) -> list[Result]:
    results: list[Result] = []
    for with_properties in (False, True):
        for size in SIZES:
            data = rows(size, with_properties)
            payload = to_payload(data)
            prebuilt = build_pb2(data)
            wire = prebuilt.SerializeToString()
            if encode(payload) != wire or encode_ddata(SEQ, TIMESTAMP, data) != wire:
                raise AssertionError("the codec and the hand-built protobuf message disagree")
            if decode(wire) != payload:
                raise AssertionError("decode does not give back the payload")
            steps: list[tuple[str, Callable[[], object]]] = [
                ("protobuf serialize", prebuilt.SerializeToString),
                ("protobuf build+serialize", partial(build_and_serialize, data)),
                ("encode", partial(encode, payload)),
                ("encode_ddata", partial(encode_ddata, SEQ, TIMESTAMP, data)),
                ("build+encode", partial(build_and_encode, data)),
                ("protobuf parse", partial(pb.Payload().ParseFromString, wire)),
                ("decode", partial(decode, wire)),
            ]
            results.extend(measure(name, size, with_properties, step, seconds) for name, step in steps)
    return results


def ratio(result: Result, results: list[Result]) -> float:
    """How many times slower than the protobuf ceiling of the same direction and size."""
    for other in results:
        if (other.method, other.metrics, other.properties) == (result.baseline, result.metrics, result.properties):
            return other.rate / result.rate
    raise LookupError(result.baseline)


def table(results: list[Result]) -> str:
    header = f"{'method':26} {'metrics':>7} {'props':>5} {'msg/s':>11} {'us/msg':>9} {'us/metric':>9}  slower than"
    lines = [header, "-" * len(header)]
    for result in results:
        times = ratio(result, results)
        versus = "" if result.method == result.baseline else f"{times:6.1f}x {result.baseline}"
        lines.append(
            f"{result.method:26} {result.metrics:>7} {'yes' if result.properties else 'no':>5} {result.rate:>11,.0f}"
            f" {result.us_per_message:>9.1f} {result.us_per_metric:>9.2f}  {versus}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement (default 0.5)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    options = parser.parse_args(argv)
    if options.seconds <= 0:
        parser.error("--seconds must be positive")
    environment = {
        "python": platform.python_version(),
        "protobuf": google.protobuf.__version__,
        "protobuf_backend": api_implementation.Type(),
        "machine": platform.machine(),
    }
    progress(f"{environment}, {options.seconds} s per measurement")
    results = run(options.seconds)
    if options.format == "json":
        document = {
            "environment": environment,
            "results": [
                result.to_json() | {"slower_than_baseline": round(ratio(result, results), 2)} for result in results
            ],
        }
        print(json.dumps(document, indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
