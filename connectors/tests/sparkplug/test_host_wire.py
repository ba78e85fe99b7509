"""A plain data message read off the wire resolves as decoding it and then resolving its metrics does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from plantline.connectors.sparkplug import DataType, decode
from plantline.connectors.sparkplug import _sparkplug_b_pb2 as pb
from plantline.connectors.sparkplug.codec import DataMetric, encode_ddata
from plantline.connectors.sparkplug.host import _Device, _resolve, _resolve_wire

BIRTH = {1: ("a", DataType.Double), 2: ("b", DataType.Int32), 3: ("c", DataType.Boolean), 4: ("d", DataType.UInt64)}
BIRTH |= {5: ("e", DataType.String), 6: ("f", DataType.Float), 7: ("g", DataType.UInt8)}


def born() -> _Device:
    device = _Device(born=True)
    device.aliases.update(BIRTH)
    device.types.update({name: datatype for name, datatype in BIRTH.values()})
    return device


_VALUE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "int_value": st.integers(0, 2**32 - 1),
    "long_value": st.integers(0, 2**64 - 1),
    "float_value": st.floats(width=32, allow_nan=False),
    "double_value": st.floats(allow_nan=False),
    "boolean_value": st.booleans(),
    "string_value": st.text(max_size=5),
    "bytes_value": st.binary(max_size=5),
}
_METRIC = st.fixed_dictionaries(
    {},
    optional={
        "alias": st.integers(0, 9),
        "name": st.sampled_from(["a", "b", "zz"]),
        "timestamp": st.integers(0, 2**41),
        "datatype": st.sampled_from([0, 3, 9, 10, 11, 12]),
        "is_null": st.booleans(),
        "is_historical": st.booleans(),
        "value": st.sampled_from(sorted(_VALUE_FIELDS)).flatmap(lambda f: st.tuples(st.just(f), _VALUE_FIELDS[f])),
        "quality": st.sampled_from([0x00, 0x40, 0xC0]),
    },
)


def _wire(timestamp: int | None, seq: int | None, metrics: list[dict[str, Any]]) -> bytes:
    message = pb.Payload()
    if timestamp is not None:
        message.timestamp = timestamp
    if seq is not None:
        message.seq = seq
    for fields in metrics:
        metric = message.metrics.add()
        for key in ("alias", "name", "timestamp", "datatype", "is_null", "is_historical"):
            if key in fields:
                setattr(metric, key, fields[key])
        if "value" in fields:
            setattr(metric, *fields["value"])
        if "quality" in fields:
            metric.properties.keys.append("Quality")
            prop = metric.properties.values.add()
            prop.type = DataType.Int32
            prop.int_value = fields["quality"]
    return message.SerializeToString()


@settings(max_examples=300)
@given(
    timestamp=st.none() | st.integers(0, 2**41),
    seq=st.none() | st.integers(0, 255),
    metrics=st.lists(_METRIC, max_size=6),
)
def test_a_message_read_off_the_wire_resolves_as_decoded(
    timestamp: int | None, seq: int | None, metrics: list[dict[str, Any]]
) -> None:
    data = _wire(timestamp, seq, metrics)
    fast = _resolve_wire(born(), data)
    if fast is not None:  # else the message takes decode and _resolve, whatever they make of it
        payload = decode(data)
        assert fast == (payload.seq, _resolve(born(), payload))


@given(values=st.lists(st.tuples(st.sampled_from(sorted(BIRTH)), st.floats(0, 200)), max_size=8))
def test_what_an_edge_node_publishes_is_read_off_the_wire(values: list[tuple[int, float]]) -> None:
    metrics: list[DataMetric] = [
        (alias, 1000 + alias, BIRTH[alias][1], _typed(BIRTH[alias][1], v), None) for alias, v in values
    ]
    data = encode_ddata(7, 1000, metrics, strip_datatypes=True)
    assert _resolve_wire(born(), data) == (7, _resolve(born(), decode(data)))


def _typed(datatype: DataType, value: float) -> object:
    if datatype in (DataType.Double, DataType.Float):
        return value
    if datatype is DataType.Boolean:
        return value > 100
    if datatype is DataType.String:
        return str(value)
    return int(value)
