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

Each is run once untimed, then repeatedly for --seconds. The baseline of each method is the
protobuf ceiling of the same direction and size (serialize for encoders, parse for decode); the
ratio is the method's rate over the ceiling's.

Run: uv run --all-packages python tests/bench/sparkplug_codec_bench.py [--seconds S] [--format json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial

import google.protobuf
from google.protobuf.internal import api_implementation

import harness
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
SERIALIZE, PARSE = "protobuf serialize", "protobuf parse"

MetricRow = tuple[int, int, DataType, object, Sequence[tuple[str, PropertyValue]] | None]
progress = harness.progress("sparkplug-bench")


def rows(size: int, with_properties: bool) -> list[MetricRow]:
    """The metrics of one DDATA: a mix of the datatypes a line reports most."""
    kinds: list[tuple[DataType, Callable[[int], object]]] = [
        (DataType.Double, lambda i: i * 1.25),
        (DataType.Int32, lambda i: -i),
        (DataType.Boolean, lambda i: i % 2 == 0),
        (DataType.Float, lambda i: i * 0.5),
    ]
    result: list[MetricRow] = []
    for index in range(size):
        datatype, value = kinds[index % len(kinds)]
        result.append((index + 1, TIMESTAMP + index, datatype, value(index), QUALITY if with_properties else None))
    return result


def build_pb2(data: Sequence[MetricRow]) -> pb.Payload:
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


def to_payload(data: Sequence[MetricRow]) -> Payload:
    metrics = tuple(Metric(None, a, t, d, v, properties=tuple(p or ())) for a, t, d, v, p in data)
    return Payload(TIMESTAMP, SEQ, metrics)


def build_and_serialize(data: Sequence[MetricRow]) -> bytes:
    return build_pb2(data).SerializeToString()


def build_and_encode(data: Sequence[MetricRow]) -> bytes:
    return encode(to_payload(data))


def steps(data: Sequence[MetricRow]) -> list[tuple[str, Callable[[], object]]]:
    """Return each method on one DDATA, after checking that they all agree on its bytes."""
    payload = to_payload(data)
    prebuilt = build_pb2(data)
    wire = prebuilt.SerializeToString()
    if encode(payload) != wire or encode_ddata(SEQ, TIMESTAMP, data) != wire:
        raise AssertionError("the codec and the hand-built protobuf message disagree")
    if decode(wire) != payload:
        raise AssertionError("decode does not give back the payload")
    return [
        (SERIALIZE, prebuilt.SerializeToString),
        ("protobuf build+serialize", partial(build_and_serialize, data)),
        ("encode", partial(encode, payload)),
        ("encode_ddata", partial(encode_ddata, SEQ, TIMESTAMP, data)),
        ("build+encode", partial(build_and_encode, data)),
        (PARSE, partial(pb.Payload().ParseFromString, wire)),
        ("decode", partial(decode, wire)),
    ]


def compared(method: str, size: int, with_properties: bool, rates: dict[str, harness.Rate]) -> harness.Row:
    """Return the row of one method, against the protobuf ceiling of its direction."""
    figure = rates[method]
    baseline = PARSE if method in {"decode", PARSE} else SERIALIZE
    us_per_message = 1e6 * figure.seconds / figure.operations
    return harness.Row(
        f"{method}, {size} metrics{' + props' if with_properties else ''}",
        figure.per_second,
        "msg/s",
        "" if method == baseline else baseline,
        None if method == baseline else rates[baseline].per_second,
        f"{us_per_message:.1f} us/msg, {us_per_message / size:.2f} us/metric",
    )


def run(seconds: float) -> list[harness.Row]:
    results: list[harness.Row] = []
    for with_properties in (False, True):
        for size in SIZES:
            rates: dict[str, harness.Rate] = {}
            for name, step in steps(rows(size, with_properties)):
                rates[name] = harness.timed(harness.repeated(step), harness.Budget(seconds), warm_up=True)
                shown = harness.number(rates[name].per_second)
                progress(f"{name}, {size} metrics{' + props' if with_properties else ''}: {shown}/s")
            results.extend(compared(name, size, with_properties, rates) for name in rates)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.arguments(__doc__, seconds=0.5, seconds_help="time per measurement")
    args = parser.parse_args(argv)
    budget = harness.budget(parser, args)
    env = harness.environment(protobuf=f"{google.protobuf.__version__} ({api_implementation.Type()})")
    progress(f"{harness.environment_line(env)}; {budget.seconds} s per measurement")
    results = run(budget.seconds)
    harness.report("Sparkplug B DDATA encode/decode per second, against plain protobuf", env, results, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
