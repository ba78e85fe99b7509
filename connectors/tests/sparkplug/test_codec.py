"""Sparkplug B payload codec: round trips, the spec's wire forms, validation, malformed input.

Tests that check a Sparkplug TCK assertion carry its id in their name. Wire forms are checked
against payloads built field by field with the generated protobuf classes, as another
implementation (Eclipse Tahu Java, JavaScript, Python; pysparkplug) would build them.
"""

from __future__ import annotations

import contextlib
import enum
import math
import re
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantline.connectors.sparkplug import (
    DataSet,
    DataType,
    MetaData,
    Metric,
    Payload,
    PropertyValue,
    SparkplugDecodeError,
    Template,
    TemplateParameter,
    Uint32Field,
    decode,
    encode,
    encode_ddata,
)
from plantline.connectors.sparkplug import _sparkplug_b_pb2 as pb

TS = 1_700_000_000_123
U32 = 2**32 - 1
U64 = 2**64 - 1


def one_metric(datatype: DataType | None, value: object, **fields: object) -> Payload:
    metric = Metric(fields.pop("name", "m"), fields.pop("alias", 7), TS, datatype, value, **fields)  # type: ignore[arg-type]
    return Payload(TS, 0, (metric,))


def roundtrip_value(datatype: DataType, value: object) -> object:
    decoded = decode(encode(one_metric(datatype, value)))
    return decoded.metrics[0].value


def raw(payload: Payload) -> pb.Payload:
    """The payload as another implementation sees it on the wire."""
    return pb.Payload.FromString(encode(payload))


def wire_payload(*metrics: pb.Payload.Metric) -> bytes:
    message = pb.Payload(timestamp=TS, seq=1)
    message.metrics.extend(metrics)
    return message.SerializeToString()


# ---------------------------------------------------------------------------------------------
# The schema itself


# The Sparkplug 3.0 payload section's field numbers: any drift breaks every peer.
SPEC_FIELDS = {
    "Payload": {"timestamp": 1, "metrics": 2, "seq": 3, "uuid": 4, "body": 5},
    "Payload.Metric": {
        "name": 1, "alias": 2, "timestamp": 3, "datatype": 4, "is_historical": 5, "is_transient": 6,
        "is_null": 7, "metadata": 8, "properties": 9, "int_value": 10, "long_value": 11, "float_value": 12,
        "double_value": 13, "boolean_value": 14, "string_value": 15, "bytes_value": 16, "dataset_value": 17,
        "template_value": 18, "extension_value": 19,
    },
    "Payload.MetaData": {
        "is_multi_part": 1, "content_type": 2, "size": 3, "seq": 4, "file_name": 5, "file_type": 6, "md5": 7,
        "description": 8,
    },
    "Payload.PropertyValue": {
        "type": 1, "is_null": 2, "int_value": 3, "long_value": 4, "float_value": 5, "double_value": 6,
        "boolean_value": 7, "string_value": 8, "propertyset_value": 9, "propertysets_value": 10,
        "extension_value": 11,
    },
    "Payload.PropertySet": {"keys": 1, "values": 2},
    "Payload.PropertySetList": {"propertyset": 1},
    "Payload.DataSet": {"num_of_columns": 1, "columns": 2, "types": 3, "rows": 4},
    "Payload.DataSet.Row": {"elements": 1},
    "Payload.DataSet.DataSetValue": {
        "int_value": 1, "long_value": 2, "float_value": 3, "double_value": 4, "boolean_value": 5,
        "string_value": 6, "extension_value": 7,
    },
    "Payload.Template": {"version": 1, "metrics": 2, "parameters": 3, "template_ref": 4, "is_definition": 5},
    "Payload.Template.Parameter": {
        "name": 1, "type": 2, "int_value": 3, "long_value": 4, "float_value": 5, "double_value": 6,
        "boolean_value": 7, "string_value": 8, "extension_value": 9,
    },
}  # fmt: skip


@pytest.mark.parametrize("message_name", sorted(SPEC_FIELDS))
def test_schema_field_numbers_match_the_spec(message_name: str) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name["Payload"]
    for part in message_name.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[part]
    assert descriptor.full_name == f"org.eclipse.tahu.protobuf.{message_name}"
    assert {field.name: field.number for field in descriptor.fields} == SPEC_FIELDS[message_name]


def test_payloads_metric_datatype_value() -> None:
    # Every enumerated Sparkplug datatype, with the spec's numbers, in the codec and the schema.
    expected = {"Unknown": 0, "Int8": 1, "Int16": 2, "Int32": 3, "Int64": 4, "UInt8": 5, "UInt16": 6}
    expected |= {"UInt32": 7, "UInt64": 8, "Float": 9, "Double": 10, "Boolean": 11, "String": 12}
    expected |= {"DateTime": 13, "Text": 14, "UUID": 15, "DataSet": 16, "Bytes": 17, "File": 18}
    expected |= {"Template": 19, "PropertySet": 20, "PropertySetList": 21, "Int8Array": 22, "Int16Array": 23}
    expected |= {"Int32Array": 24, "Int64Array": 25, "UInt8Array": 26, "UInt16Array": 27, "UInt32Array": 28}
    expected |= {"UInt64Array": 29, "FloatArray": 30, "DoubleArray": 31, "BooleanArray": 32, "StringArray": 33}
    expected |= {"DateTimeArray": 34}
    assert {member.name: member.value for member in DataType} == expected
    assert dict(pb.DataType.items()) == expected


def test_generated_module_is_isolated_from_other_sparkplug_schemas() -> None:
    # Tahu's and pysparkplug's sparkplug_b_pb2 put the same org.eclipse.tahu.protobuf names into
    # protobuf's default pool; ours lives in a private pool, so either may be imported first.
    # In a subprocess: the default pool is process-wide and must stay clean for other tests.
    script = """
import sys
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.internal import builder
theirs = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(sys.argv[1]))
theirs.name = "sparkplug_b.proto"
descriptor_pool.Default().Add(theirs)  # what importing Tahu's sparkplug_b_pb2 first does
tahu = {}
builder.BuildTopDescriptorsAndMessages(descriptor_pool.Default().FindFileByName(theirs.name), "tahu_pb2", tahu)
from plantline.connectors.sparkplug import DataType, Metric, Payload, decode, encode
data = encode(Payload(1, 0, (Metric(None, 1, 1, DataType.Int8, -1),)))
assert decode(tahu["Payload"].FromString(data).SerializeToString()).metrics[0].value == -1
print("isolated")
"""
    schema = pb.DESCRIPTOR.serialized_pb.hex()
    command = [sys.executable, "-c", script, schema]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "isolated"


# ---------------------------------------------------------------------------------------------
# Round trips, edge values


EDGE_VALUES: list[tuple[DataType, object]] = [
    (DataType.Int8, -128), (DataType.Int8, -1), (DataType.Int8, 0), (DataType.Int8, 127),
    (DataType.Int16, -32768), (DataType.Int16, -1), (DataType.Int16, 32767),
    (DataType.Int32, -(2**31)), (DataType.Int32, -1), (DataType.Int32, 2**31 - 1),
    (DataType.Int64, -(2**63)), (DataType.Int64, -1), (DataType.Int64, 2**63 - 1),
    (DataType.UInt8, 0), (DataType.UInt8, 255), (DataType.UInt16, 65535), (DataType.UInt32, U32),
    (DataType.UInt64, 0), (DataType.UInt64, U64),
    (DataType.Float, 0.0), (DataType.Float, -0.0), (DataType.Float, 1.5), (DataType.Float, 3.4028234663852886e38),
    (DataType.Float, 1.401298464324817e-45), (DataType.Float, math.inf), (DataType.Float, -math.inf),
    (DataType.Double, 5e-324), (DataType.Double, 1.7976931348623157e308), (DataType.Double, -math.inf),
    (DataType.Boolean, True), (DataType.Boolean, False),
    (DataType.String, ""), (DataType.String, "Grüße, 工厂 🏭"), (DataType.String, "nul\x00inside"),
    (DataType.Text, "line 1\nline 2"), (DataType.UUID, "3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
    (DataType.DateTime, 0), (DataType.DateTime, TS), (DataType.DateTime, U64),
    (DataType.Bytes, b""), (DataType.Bytes, bytes(range(256))), (DataType.File, b"%PDF-1.7\n"),
    (DataType.Int8Array, ()), (DataType.Int8Array, (-128, -23, 0, 123, 127)),
    (DataType.Int16Array, (-32768, 32767)), (DataType.Int32Array, (-(2**31), 2**31 - 1)),
    (DataType.Int64Array, (-(2**63), 2**63 - 1)), (DataType.UInt8Array, (0, 255)),
    (DataType.UInt16Array, (0, 65535)), (DataType.UInt32Array, (0, U32)), (DataType.UInt64Array, (0, U64)),
    (DataType.FloatArray, ()), (DataType.FloatArray, (1.5, -0.25, math.inf)),
    (DataType.DoubleArray, (math.pi, -math.inf, 5e-324)),
    (DataType.BooleanArray, ()), (DataType.BooleanArray, (True,)), (DataType.BooleanArray, (False,) * 8),
    (DataType.BooleanArray, (True, False) * 9),
    (DataType.StringArray, ()), (DataType.StringArray, ("",)), (DataType.StringArray, ("", "", "")),
    (DataType.StringArray, ("ABC", "hello", "Grüße 🏭")),
    (DataType.DateTimeArray, ()), (DataType.DateTimeArray, (0, TS, U64)),
    (DataType.DataSet, DataSet((), (), ())),
    (DataType.DataSet, DataSet(("a", "b"), (DataType.Int8, DataType.String), ((-1, "x"), (None, None)))),
    (DataType.Template, Template(is_definition=True)),
]  # fmt: skip


@pytest.mark.parametrize(("datatype", "value"), EDGE_VALUES, ids=lambda x: repr(x)[:40])
def test_payloads_metric_value_roundtrip(datatype: DataType, value: object) -> None:
    assert roundtrip_value(datatype, value) == value


def test_float_nan_roundtrips_as_nan() -> None:
    for datatype in (DataType.Float, DataType.Double):
        decoded = roundtrip_value(datatype, math.nan)
        assert isinstance(decoded, float)
        assert math.isnan(decoded)
    decoded_array = roundtrip_value(DataType.FloatArray, (math.nan, 1.0))
    assert isinstance(decoded_array, tuple)
    assert math.isnan(decoded_array[0])


def test_float_is_carried_as_float32() -> None:
    assert roundtrip_value(DataType.Float, 0.1) == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert roundtrip_value(DataType.Double, 0.1) == 0.1
    with pytest.raises(ValueError, match="does not fit a 32-bit float"):
        encode(one_metric(DataType.Float, 1e39))


@pytest.mark.parametrize(
    "datatype",
    [
        datatype
        for datatype in DataType
        if datatype not in (DataType.Unknown, DataType.PropertySet, DataType.PropertySetList)
    ],
)
def test_payloads_metric_is_null(datatype: DataType) -> None:
    payload = one_metric(datatype, None)
    message = raw(payload).metrics[0]
    assert message.is_null
    assert message.WhichOneof("value") is None
    assert message.datatype == datatype
    assert decode(encode(payload)) == payload


def test_metric_flags_metadata_and_payload_fields_roundtrip() -> None:
    metric = Metric(
        "Folder/File",
        3,
        TS,
        DataType.File,
        b"\x00\x01",
        is_historical=True,
        is_transient=True,
        metadata=MetaData(file_name="a.bin", size=2, md5="c4103f122d27677c9db144cae1394a66", is_multi_part=False),
    )
    payload = Payload(TS, 255, (metric,), uuid="schema-1", body=b"\xff")
    message = raw(payload)
    assert message.metrics[0].is_historical
    assert message.metrics[0].is_transient
    assert message.metrics[0].metadata.file_name == "a.bin"
    assert decode(encode(payload)) == payload


def test_absent_fields_stay_absent() -> None:
    payload = Payload(None, None, (Metric(None, None, None, None, None),))
    message = raw(payload)
    assert not message.HasField("timestamp")
    assert not message.HasField("seq")
    assert not message.metrics[0].HasField("name")
    assert not message.metrics[0].HasField("alias")
    assert not message.metrics[0].HasField("datatype")
    assert decode(encode(payload)) == payload


def test_payloads_metric_propertyvalue_type_value() -> None:
    inner = (("unit", PropertyValue(DataType.String, "mm")), ("scale", PropertyValue(DataType.Double, 0.5)))
    properties = (
        ("Quality", PropertyValue(DataType.Int32, 192)),
        ("offset", PropertyValue(DataType.Int8, -3)),
        ("engineering", PropertyValue(DataType.PropertySet, inner)),
        ("history", PropertyValue(DataType.PropertySetList, (inner, (), inner))),
        ("empty", PropertyValue(DataType.PropertySet, ())),
        ("none", PropertyValue(DataType.PropertySetList, ())),
        ("missing", PropertyValue(DataType.Float, None)),
        ("since", PropertyValue(DataType.DateTime, TS)),
    )
    payload = one_metric(DataType.Double, 1.0, properties=properties)
    message = raw(payload).metrics[0].properties
    assert list(message.keys) == [key for key, _ in properties]
    assert [value.type for value in message.values] == [prop.type for _, prop in properties]
    assert message.values[1].int_value == 0xFFFF_FFFD  # Int8 -3, two's complement in the uint32 field
    assert message.values[6].is_null
    assert decode(encode(payload)) == payload


def test_payloads_propertyset_quality_value_type() -> None:
    # The spec's Quality property: type Int32 (3), value in int_value.
    payload = one_metric(DataType.Boolean, True, properties=(("Quality", PropertyValue(DataType.Int32, 500)),))
    value = raw(payload).metrics[0].properties.values[0]
    assert value.type == 3
    assert value.WhichOneof("value") == "int_value"
    assert value.int_value == 500


def test_dataset_and_template_roundtrip() -> None:
    dataset = DataSet(
        ("i8", "u32", "f", "b", "s", "t"),
        (DataType.Int8, DataType.UInt32, DataType.Float, DataType.Boolean, DataType.String, DataType.DateTime),
        ((-1, U32, 0.5, True, "x", TS), (None, None, None, None, None, None)),
    )
    member = Metric("Speed", None, TS, DataType.Int16, -300)
    definition = Template(
        metrics=(member, Metric("Mode", None, TS, DataType.String, None)),
        parameters=(TemplateParameter("min", DataType.Int32, -5), TemplateParameter("unit", DataType.String)),
        is_definition=True,
        version="1.2",
    )
    instance = Template(
        metrics=(member,), parameters=(TemplateParameter("min", DataType.Int32, 0),), template_ref="Motor"
    )
    payload = Payload(
        TS,
        0,
        (
            Metric("table", 1, TS, DataType.DataSet, dataset),
            Metric("Motor", 2, TS, DataType.Template, definition),
            Metric("M1", 3, TS, DataType.Template, instance),
        ),
    )
    message = raw(payload)
    assert message.metrics[0].dataset_value.num_of_columns == 6
    assert message.metrics[1].template_value.is_definition
    assert not message.metrics[1].template_value.HasField("template_ref")
    assert message.metrics[2].template_value.template_ref == "Motor"
    assert decode(encode(payload)) == payload


def test_encode_ddata_matches_encode() -> None:
    props = (("Quality", PropertyValue(DataType.Int32, 0)),)
    rows = [
        (1, TS, DataType.Double, 21.5, None),
        (2, TS + 1, DataType.Int8, -1, props),
        (3, TS + 2, DataType.Boolean, None, None),
        (4, TS + 3, DataType.Int32Array, (1, -2), None),
    ]
    expected = Payload(TS, 17, tuple(Metric(None, a, t, d, v, properties=p or ()) for a, t, d, v, p in rows))
    assert encode_ddata(17, TS, rows) == encode(expected)
    with pytest.raises(ValueError, match=r"metric #1 \(alias 2\): Int8 value 128 is out of range -128..127"):
        encode_ddata(17, TS, [rows[0], (2, TS, DataType.Int8, 128, None)])


@pytest.mark.parametrize(
    ("alias", "ts", "reason"),
    [
        (-1, TS, "alias -1 is not a uint64"),
        (2**64, TS, "alias 18446744073709551616 is not a uint64"),
        (True, TS, "alias True is not a uint64"),
        (1.0, TS, "alias 1.0 is not a uint64"),
        (None, TS, "alias None is not a uint64"),
        (2, -1, "timestamp -1 is not a uint64"),
        (2, True, "timestamp True is not a uint64"),
        (2, float(TS), "is not a uint64"),
        (2, str(TS), "is not a uint64"),
    ],
)
@pytest.mark.parametrize("datatype", [DataType.Int64, DataType.Double, DataType.Int8])
def test_encode_ddata_names_the_metric_with_a_bad_alias_or_timestamp(
    alias: object, ts: object, reason: str, datatype: DataType
) -> None:
    # The hot loop leaves these checks to upb; its refusal is reworded by the careful loop.
    value = 1.5 if datatype is DataType.Double else 1
    good = (1, TS, datatype, value, None)
    label = "metric #1" if alias is None else f"metric #1 (alias {alias})"
    with pytest.raises(ValueError, match=f"^{re.escape(label)}: ") as caught:
        encode_ddata(0, TS, [good, (alias, ts, datatype, value, None), good])  # type: ignore[list-item]
    assert reason in str(caught.value)


def test_encode_ddata_takes_an_int_subclass_as_alias_and_names_the_metric_that_fails_after_it() -> None:
    class Alias(enum.IntEnum):
        PRESS = 5

    good = (Alias.PRESS, TS, DataType.Int8, 1, None)
    assert encode_ddata(0, TS, [good]) == encode_ddata(0, TS, [(5, TS, DataType.Int8, 1, None)])
    with pytest.raises(ValueError, match=r"^metric #1 \(alias 2\): Int8 value 128 is out of range"):
        encode_ddata(0, TS, [good, (2, TS, DataType.Int8, 128, None)])


def test_payloads_metric_datatype_not_req() -> None:
    # Data and command messages SHOULD NOT carry datatypes: strip_datatypes leaves them off.
    rows = [(1, TS, DataType.Int8, -1, None), (2, TS, DataType.Float, 0.5, None)]
    stripped = encode_ddata(0, TS, rows, strip_datatypes=True)
    payload = Payload(TS, 0, tuple(Metric(None, a, t, d, v) for a, t, d, v, _ in rows))
    assert stripped == encode(payload, strip_datatypes=True)
    assert len(stripped) < len(encode(payload))
    message = pb.Payload.FromString(stripped)
    assert not any(metric.HasField("datatype") for metric in message.metrics)
    assert message.metrics[0].int_value == U32  # the datatype still chose the field and form
    assert [metric.value for metric in decode(stripped).metrics] == [U32, 0.5]  # raw, as the birth is needed


# ---------------------------------------------------------------------------------------------
# Signed integers: the spec's uint32/uint64 carriers


@pytest.mark.parametrize(
    ("datatype", "value", "field", "carried"),
    [
        (DataType.Int8, -1, "int_value", 0xFFFF_FFFF),
        (DataType.Int8, -128, "int_value", 0xFFFF_FF80),
        (DataType.Int16, -1, "int_value", 0xFFFF_FFFF),
        (DataType.Int16, -32768, "int_value", 0xFFFF_8000),
        (DataType.Int32, -1, "int_value", 0xFFFF_FFFF),
        (DataType.Int32, -(2**31), "int_value", 0x8000_0000),
        (DataType.Int64, -1, "long_value", U64),
        (DataType.Int64, -(2**63), "long_value", 2**63),
        (DataType.UInt32, U32, "int_value", U32),
        (DataType.DateTime, TS, "long_value", TS),
    ],
)
def test_negative_integers_travel_as_twos_complement_of_the_field(
    datatype: DataType, value: int, field: str, carried: int
) -> None:
    message = raw(one_metric(datatype, value)).metrics[0]
    assert message.WhichOneof("value") == field
    assert getattr(message, field) == carried
    assert roundtrip_value(datatype, value) == value


@pytest.mark.parametrize(
    ("datatype", "narrow", "extended", "value"),
    [
        (DataType.Int8, 0xFF, 0xFFFF_FFFF, -1),
        (DataType.Int8, 0x80, 0xFFFF_FF80, -128),
        (DataType.Int8, 0xE9, 0xFFFF_FFE9, -23),
        (DataType.Int16, 0xFFFF, 0xFFFF_FFFF, -1),
        (DataType.Int16, 0x8AD0, 0xFFFF_8AD0, -30000),
    ],
)
def test_negative_int8_decoded_wrongly_pysparkplug_vs_tahu_js(
    datatype: DataType, narrow: int, extended: int, value: int
) -> None:
    """Regression: the two wire forms of a negative Int8/Int16 in the wild both decode.

    Tahu Java, JavaScript and C convert the value to the spec's uint32 by sign extension
    (Int8 -1 -> 0xFFFFFFFF); Tahu's Python helpers and pysparkplug write the narrow pattern
    (Int8 -1 -> 0xFF). Tahu JS then reads 0xFF back as 255, and pysparkplug raises
    OverflowError on 0xFFFFFFFF. We write the sign-extended form and read both.
    """
    for carried in (narrow, extended):
        data = wire_payload(pb.Payload.Metric(alias=1, timestamp=TS, datatype=datatype, int_value=carried))
        assert decode(data).metrics[0].value == value
    assert raw(one_metric(datatype, value)).metrics[0].int_value == extended


@pytest.mark.parametrize(
    ("datatype", "carried"),
    [
        (DataType.Int8, 0x100),
        (DataType.Int8, 0xFFFF_FF7F),
        (DataType.Int16, 0x1_0000),
        (DataType.Int16, 0xFFFF_7FFF),
        (DataType.UInt8, 0x100),
        (DataType.UInt16, 0x1_0000),
    ],
)
def test_int_value_outside_both_forms_is_refused(datatype: DataType, carried: int) -> None:
    data = wire_payload(pb.Payload.Metric(name="x", datatype=datatype, int_value=carried))
    with pytest.raises(SparkplugDecodeError, match=rf"metric #0 'x': int_value {carried} is not an? {datatype.name}"):
        decode(data)


# ---------------------------------------------------------------------------------------------
# Arrays: the spec's packed forms


@pytest.mark.parametrize(
    ("datatype", "value", "wire"),
    [
        # The spec prints 0xEF for -23, an erratum: -23 is 0xE9 (its other examples agree).
        (DataType.Int8Array, (-23, 123), bytes([0xE9, 0x7B])),
        (DataType.Int16Array, (-30000, 30000), bytes([0xD0, 0x8A, 0x30, 0x75])),
        (DataType.Int32Array, (-1, 315338746), bytes([0xFF, 0xFF, 0xFF, 0xFF, 0xFA, 0xAF, 0xCB, 0x12])),
        (DataType.Int32Array, (123456789, 987654321), bytes([0x15, 0xCD, 0x5B, 0x07, 0xB1, 0x68, 0xDE, 0x3A])),
        (
            DataType.Int64Array,
            (-4270929666821191986, -3601064768563266876),
            bytes([0xCE, 0x06, 0x72, 0xAC, 0x18, 0x9C, 0xBA, 0xC4, 0xC4, 0xBA, 0x9C, 0x18, 0xAC, 0x72, 0x06, 0xCE]),
        ),
        (DataType.UInt8Array, (23, 250), bytes([0x17, 0xFA])),
        (DataType.UInt16Array, (30, 52360), bytes([0x1E, 0x00, 0x88, 0xCC])),
        (DataType.UInt32Array, (52, 3293969225), bytes([0x34, 0, 0, 0, 0x49, 0xFB, 0x55, 0xC4])),
        (
            DataType.UInt64Array,
            (52, 16444743074749521625),
            bytes([0x34, 0, 0, 0, 0, 0, 0, 0, 0xD9, 0x9E, 0x02, 0xD1, 0xB2, 0x76, 0x37, 0xE4]),
        ),
        # The spec's Float/Double examples are printed big-endian against its own text
        # ("packed little endian") and against Tahu; little-endian it is.
        (DataType.FloatArray, (1.5, -2.0), struct.pack("<2f", 1.5, -2.0)),
        (DataType.DoubleArray, (12.354213, 1022.9123213), struct.pack("<2d", 12.354213, 1022.9123213)),
        # The spec's example, with its "don't care" padding bits as zero; first value = top bit.
        (
            DataType.BooleanArray,
            (False, False, True, True, False, True, False, False, True, True, False, True),
            bytes([0x0C, 0x00, 0x00, 0x00, 0x34, 0xD0]),
        ),
        (DataType.StringArray, ("ABC", "hello"), b"ABC\x00hello\x00"),
        # The spec's DateTimeArray example drops the high zero bytes (12 bytes for 2 values).
        (DataType.DateTimeArray, (1256102875335, 1656107875000), struct.pack("<2Q", 1256102875335, 1656107875000)),
    ],
)
def test_payloads_array_types_match_the_spec_examples(
    datatype: DataType, value: tuple[object, ...], wire: bytes
) -> None:
    message = raw(one_metric(datatype, value)).metrics[0]
    assert message.WhichOneof("value") == "bytes_value"
    assert message.bytes_value == wire
    assert roundtrip_value(datatype, value) == value


@pytest.mark.parametrize(
    ("datatype", "wire", "message"),
    [
        (DataType.Int16Array, b"\x01\x02\x03", "not a whole number of 2-byte items"),
        (DataType.DoubleArray, b"\x00" * 7, "not a whole number of 8-byte items"),
        (DataType.BooleanArray, b"\x03\x00", "has no 4-byte count"),
        (DataType.BooleanArray, b"\x09\x00\x00\x00\xff", "needs 2 bytes after the count, has 1"),
        (DataType.BooleanArray, b"\x01\x00\x00\x00\xff\xff", "needs 1 bytes after the count, has 2"),
        (DataType.StringArray, b"ABC", "does not end with NUL"),
        (DataType.StringArray, b"\xff\x00", "not UTF-8"),
    ],
)
def test_malformed_arrays_are_refused(datatype: DataType, wire: bytes, message: str) -> None:
    data = wire_payload(pb.Payload.Metric(alias=9, datatype=datatype, bytes_value=wire))
    with pytest.raises(SparkplugDecodeError, match=rf"metric #0 \(alias 9\): .*{message}"):
        decode(data)


# ---------------------------------------------------------------------------------------------
# Interop: payloads built field by field as other implementations build them


def test_decodes_a_tahu_java_style_ddata() -> None:
    def metric(alias: int, datatype: DataType, **value: object) -> pb.Payload.Metric:
        return pb.Payload.Metric(alias=alias, timestamp=TS, datatype=datatype, **value)  # type: ignore[arg-type]

    quality = pb.Payload.PropertySet(keys=["Quality"], values=[pb.Payload.PropertyValue(type=3, int_value=192)])
    data = wire_payload(
        metric(1, DataType.Int8, int_value=(-5) & U32),  # Java: setIntValue((byte) -5), sign-extended
        metric(2, DataType.Int16, int_value=(-300) & U32),
        metric(3, DataType.UInt32, long_value=4_000_000_000),  # Tahu Java/JS put UInt32 in long_value
        metric(4, DataType.Int64, long_value=(-2) & U64),
        metric(5, DataType.UInt64, long_value=U64),
        metric(6, DataType.Float, float_value=2.5),
        metric(7, DataType.DateTime, long_value=TS),
        metric(8, DataType.BooleanArray, bytes_value=bytes([3, 0, 0, 0, 0b1010_0000])),
        metric(9, DataType.Boolean, is_null=True),
        pb.Payload.Metric(alias=10, timestamp=TS, datatype=DataType.Double, double_value=1.0, properties=quality),
    )
    values = [metric.value for metric in decode(data).metrics]
    assert values == [-5, -300, 4_000_000_000, -2, U64, 2.5, TS, (True, False, True), None, 1.0]
    assert decode(data).metrics[9].properties == (("Quality", PropertyValue(DataType.Int32, 192)),)


def test_metric_without_datatype_keeps_the_raw_field() -> None:
    # Data messages may omit the datatype (the receiver knows it from the birth): we cannot
    # interpret the carrier, so the raw wire value comes back and the caller applies the type.
    data = wire_payload(pb.Payload.Metric(alias=4, timestamp=TS, int_value=0xFFFF_FFFF))
    metric = decode(data).metrics[0]
    assert metric.datatype is None
    assert metric.value == 0xFFFF_FFFF
    with pytest.raises(ValueError, match=r"metric #0 \(alias 4\): a datatype is needed to encode a value"):
        encode(Payload(TS, 0, (metric,)))


# ---------------------------------------------------------------------------------------------
# Where UInt32 travels: int_value (the spec) or long_value (hosts that read it only there)


def uint32_everywhere(value: int | None) -> Payload:
    """A birth-like payload with a UInt32 in every place a scalar can be: metric, property, cell, parameter."""
    prop = PropertyValue(DataType.UInt32, value)
    nested = (("count", prop),)
    properties = (
        ("count", prop),
        ("set", PropertyValue(DataType.PropertySet, nested)),
        ("list", PropertyValue(DataType.PropertySetList, (nested, nested))),
    )
    table = DataSet(("n", "i"), (DataType.UInt32, DataType.Int32), ((value, -1),))
    template = Template(
        metrics=(Metric("inner", None, TS, DataType.UInt32, value),),
        parameters=(TemplateParameter("limit", DataType.UInt32, value),),
        is_definition=True,
    )
    return Payload(
        TS,
        0,
        (
            Metric("counter", 1, TS, DataType.UInt32, value, properties=properties),
            Metric("table", 2, TS, DataType.DataSet, table),
            Metric("type", 3, TS, DataType.Template, template),
        ),
    )


def uint32_carriers(message: pb.Payload) -> list[str | None]:
    """Which field each UInt32 scalar of `uint32_everywhere` travels in, wherever it is."""
    counter, table, template = message.metrics
    props = counter.properties.values
    return [
        counter.WhichOneof("value"),
        props[0].WhichOneof("value"),
        props[1].propertyset_value.values[0].WhichOneof("value"),
        *(item.values[0].WhichOneof("value") for item in props[2].propertysets_value.propertyset),
        table.dataset_value.rows[0].elements[0].WhichOneof("value"),
        template.template_value.metrics[0].WhichOneof("value"),
        template.template_value.parameters[0].WhichOneof("value"),
    ]


@pytest.mark.parametrize("uint32_field", ["int_value", "long_value"])
@pytest.mark.parametrize("value", [0, 1, 2**31, U32])
def test_uint32_goes_in_the_chosen_field_everywhere_and_roundtrips(uint32_field: Uint32Field, value: int) -> None:
    payload = uint32_everywhere(value)
    data = encode(payload, uint32_field=uint32_field)
    message = pb.Payload.FromString(data)
    assert uint32_carriers(message) == [uint32_field] * 8
    assert getattr(message.metrics[0], uint32_field) == value
    assert decode(data) == payload


def test_uint32_field_defaults_to_the_spec_and_moves_nothing_else() -> None:
    payload = uint32_everywhere(7)
    assert encode(payload) == encode(payload, uint32_field="int_value")
    others = one_metric(
        DataType.Int32,
        -1,
        properties=(
            ("u16", PropertyValue(DataType.UInt16, 65535)),
            ("i64", PropertyValue(DataType.Int64, -1)),
            ("Quality", PropertyValue(DataType.Int32, 192)),
        ),
    )
    assert encode(others, uint32_field="long_value") == encode(others)
    array = one_metric(DataType.UInt32Array, (0, 52, U32))  # packed bytes: no scalar field to choose
    assert encode(array, uint32_field="long_value") == encode(array)


@pytest.mark.parametrize("uint32_field", ["int_value", "long_value"])
def test_encode_ddata_puts_uint32_in_the_chosen_field(uint32_field: Uint32Field) -> None:
    from plantline.connectors.sparkplug import apply_datatype

    props = (("limit", PropertyValue(DataType.UInt32, 5)),)
    rows = [(1, TS, DataType.UInt32, 4_000_000_000, props), (2, TS, DataType.Int32, -3, None)]
    data = encode_ddata(9, TS, rows, strip_datatypes=True, uint32_field=uint32_field)
    expected = Payload(TS, 9, tuple(Metric(None, a, t, d, v, properties=p or ()) for a, t, d, v, p in rows))
    assert data == encode(expected, strip_datatypes=True, uint32_field=uint32_field)
    message = pb.Payload.FromString(data)
    assert message.metrics[0].WhichOneof("value") == uint32_field
    assert message.metrics[0].properties.values[0].WhichOneof("value") == uint32_field
    assert message.metrics[1].WhichOneof("value") == "int_value"
    decoded = decode(data).metrics
    assert apply_datatype(decoded[0].value, DataType.UInt32) == 4_000_000_000
    assert apply_datatype(decoded[1].value, DataType.Int32) == -3
    assert decoded[0].properties == props


def test_an_unknown_uint32_field_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"uint32_field 'uint64_value' is not one of int_value, long_value"):
        encode(uint32_everywhere(1), uint32_field="uint64_value")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"uint32_field 'intValue' is not one of int_value, long_value"):
        encode_ddata(0, TS, [], uint32_field="intValue")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Validation on encode


@pytest.mark.parametrize(
    ("datatype", "value", "message"),
    [
        (DataType.Int8, 128, "Int8 value 128 is out of range -128..127"),
        (DataType.Int8, -129, "Int8 value -129 is out of range -128..127"),
        (DataType.UInt8, -1, "UInt8 value -1 is out of range 0..255"),
        (DataType.UInt32, 2**32, "UInt32 value 4294967296 is out of range"),
        (DataType.Int64, 2**63, "Int64 value 9223372036854775808 is out of range"),
        (DataType.UInt64, 2**64, "out of range"),
        (DataType.DateTime, -1, "DateTime value -1 is out of range"),
        (DataType.Int32, True, "Int32 needs an int, got bool"),
        (DataType.Int32, 1.0, "Int32 needs an int, got float"),
        (DataType.Double, "1", "Double needs a float, got str"),
        (DataType.Boolean, 1, "Boolean needs a bool, got int"),
        (DataType.String, b"x", "String needs a str, got bytes"),
        (DataType.Bytes, "x", "Bytes needs bytes, got str"),
        (DataType.Int8Array, (1, 200), "Int8Array"),
        (DataType.Int8Array, "12", "Int8Array needs a sequence, got str"),
        (DataType.UInt16Array, (1.5,), "UInt16Array holds integers only"),
        (DataType.StringArray, ("a\x00b",), "cannot contain NUL"),
        (DataType.BooleanArray, (1,), "BooleanArray needs a bool"),
        (DataType.DataSet, {"a": 1}, "DataSet needs a DataSet"),
        (DataType.DataSet, DataSet(("a",), ()), "1 columns but 0 types"),
        (DataType.DataSet, DataSet(("a",), (DataType.Int8,), ((1, 2),)), "row 0 has 2 cells for 1 columns"),
        (DataType.DataSet, DataSet(("a",), (DataType.Int8,), ((999,),)), "row 0 column 'a': Int8 value 999"),
        (DataType.DataSet, DataSet(("a",), (DataType.Bytes,)), "Bytes is not a basic type"),
        (DataType.Template, Template(is_definition=True, template_ref="X"), "definition has no template_ref"),
        (DataType.Template, Template(is_definition=False), "instance needs the template_ref"),
        (DataType.PropertySet, {}, "PropertySet is not a metric datatype"),
    ],
)
def test_invalid_values_are_refused_naming_the_metric(datatype: DataType, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"metric #0 'm' \(alias 7\): ") as caught:
        encode(one_metric(datatype, value))
    assert message in str(caught.value)


def test_invalid_payload_fields_are_refused() -> None:
    with pytest.raises(ValueError, match=r"seq 256 is not in 0\.\.255"):
        encode(Payload(TS, 256, ()))
    with pytest.raises(ValueError, match="payload timestamp -1"):
        encode(Payload(-1, 0, ()))
    with pytest.raises(ValueError, match=r"metric #0 'm' \(alias -1\): alias -1 is not a uint64"):
        encode(one_metric(DataType.Int8, 1, alias=-1))
    with pytest.raises(ValueError, match="datatype 99 is not a Sparkplug datatype"):
        encode(one_metric(99, 1))  # type: ignore[arg-type]
    member = Metric("bad", None, TS, DataType.UInt8, 256)
    with pytest.raises(ValueError, match="template member #0 'bad'"):
        encode(one_metric(DataType.Template, Template(metrics=(member,), is_definition=True)))


def test_payloads_propertyset_keys_array_size_on_encode() -> None:
    duplicate = (("a", PropertyValue(DataType.Int8, 1)), ("a", PropertyValue(DataType.Int8, 2)))
    with pytest.raises(ValueError, match="property 'a' appears twice"):
        encode(one_metric(DataType.Int8, 1, properties=duplicate))
    with pytest.raises(ValueError, match="property 'p': Int8 value 300"):
        encode(one_metric(DataType.Int8, 1, properties=(("p", PropertyValue(DataType.Int8, 300)),)))
    with pytest.raises(ValueError, match="property 'p': UUID is not a property value type"):
        encode(one_metric(DataType.Int8, 1, properties=(("p", PropertyValue(DataType.UUID, "x")),)))


# ---------------------------------------------------------------------------------------------
# Malformed input on decode


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",  # not protobuf
        b"\x12\x05\x08",  # a metric whose length runs past the end
        b"\x08",  # a field tag without its value
        b"\x12\x02\x0a\xff",  # a metric name that runs past the end
        b"\x12\x02\x0a\x01",  # a metric name one byte short
    ],
)
def test_garbage_raises_sparkplug_decode_error(data: bytes) -> None:
    with pytest.raises(SparkplugDecodeError, match="not a Sparkplug B payload"):
        decode(data)


def test_unknown_fields_are_ignored() -> None:
    # Payload reserves field numbers 6 and up for extensions, and protobuf keeps a field that
    # arrives with an unexpected wire type as unknown: neither is an error.
    extension = b"\x30\x01"  # field 6, varint 1
    wrong_wire_type = b"\x0a\x01x"  # field 1 (timestamp) as a length-delimited field
    data = encode(one_metric(DataType.Int8, -1)) + extension + wrong_wire_type
    assert decode(data).metrics == one_metric(DataType.Int8, -1).metrics


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(SparkplugDecodeError, match="expected bytes, got str"):
        decode("spBv1.0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (pb.Payload.Metric(alias=1, datatype=99, int_value=1), "datatype 99 is not a Sparkplug datatype"),
        (
            pb.Payload.Metric(alias=1, datatype=DataType.Int8, string_value="1"),
            "Int8 cannot be carried in string_value",
        ),
        (
            pb.Payload.Metric(alias=1, datatype=DataType.Double, float_value=1),
            "Double cannot be carried in float_value",
        ),
        (
            pb.Payload.Metric(alias=1, datatype=DataType.UInt32, long_value=2**32),
            "long_value 4294967296 is not a UInt32",
        ),
        (pb.Payload.Metric(alias=1, datatype=DataType.PropertySet, int_value=1), "PropertySet cannot be carried"),
        (
            pb.Payload.Metric(
                alias=1, datatype=DataType.Int8, extension_value=pb.Payload.Metric.MetricValueExtension()
            ),
            "Int8 cannot be carried in extension_value",
        ),
        (
            pb.Payload.Metric(alias=1, datatype=DataType.DataSet, dataset_value=pb.Payload.DataSet(num_of_columns=2)),
            "DataSet num_of_columns 2, 0 columns, 0 types disagree",
        ),
    ],
)
def test_payloads_metric_datatype_value_type_refuses_mismatches(metric: pb.Payload.Metric, message: str) -> None:
    with pytest.raises(SparkplugDecodeError, match=rf"metric #0 \(alias 1\): {message}"):
        decode(wire_payload(metric))


def test_payloads_propertyset_keys_array_size() -> None:
    properties = pb.Payload.PropertySet(keys=["a", "b"], values=[pb.Payload.PropertyValue(type=3, int_value=1)])
    data = wire_payload(pb.Payload.Metric(name="m", datatype=DataType.Int8, int_value=1, properties=properties))
    with pytest.raises(SparkplugDecodeError, match="metric #0 'm': PropertySet has 2 keys but 1 values"):
        decode(data)


def test_payloads_propertyset_values_array_size() -> None:
    values = [pb.Payload.PropertyValue(type=3, int_value=1)] * 2
    properties = pb.Payload.PropertySet(keys=["a"], values=values)
    data = wire_payload(pb.Payload.Metric(name="m", datatype=DataType.Int8, int_value=1, properties=properties))
    with pytest.raises(SparkplugDecodeError, match="PropertySet has 1 keys but 2 values"):
        decode(data)


def test_payloads_metric_propertyvalue_type_value_refuses_unknown_types() -> None:
    for code, message in ((99, "type 99 is not a Sparkplug datatype"), (15, "UUID is not a property value type")):
        properties = pb.Payload.PropertySet(keys=["a"], values=[pb.Payload.PropertyValue(type=code, string_value="x")])
        data = wire_payload(pb.Payload.Metric(name="m", datatype=DataType.Int8, int_value=1, properties=properties))
        with pytest.raises(SparkplugDecodeError, match=f"property 'a': {message}"):
            decode(data)


def test_nested_errors_name_the_path() -> None:
    member = pb.Payload.Metric(name="Speed", datatype=DataType.UInt8, int_value=300)
    template = pb.Payload.Template(is_definition=True, metrics=[member])
    data = wire_payload(pb.Payload.Metric(name="Motor", alias=5, datatype=DataType.Template, template_value=template))
    with pytest.raises(SparkplugDecodeError, match=r"metric #0 'Motor' \(alias 5\): template member #0 'Speed': "):
        decode(data)


# ---------------------------------------------------------------------------------------------
# Properties of the codec, generated


U64S = st.integers(0, U64)
NO_NUL_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
INT_RANGES = {
    DataType.Int8: (-(2**7), 2**7 - 1),
    DataType.Int16: (-(2**15), 2**15 - 1),
    DataType.Int32: (-(2**31), 2**31 - 1),
    DataType.Int64: (-(2**63), 2**63 - 1),
    DataType.UInt8: (0, 2**8 - 1),
    DataType.UInt16: (0, 2**16 - 1),
    DataType.UInt32: (0, U32),
    DataType.UInt64: (0, U64),
    DataType.DateTime: (0, U64),
}
FLOAT32 = st.floats(width=32, allow_nan=False)
DOUBLE = st.floats(allow_nan=False)


def basic_values(datatype: DataType) -> st.SearchStrategy[object]:
    if datatype in INT_RANGES:
        return st.integers(*INT_RANGES[datatype])
    return {
        DataType.Float: FLOAT32,
        DataType.Double: DOUBLE,
        DataType.Boolean: st.booleans(),
        DataType.String: st.text(),
        DataType.Text: st.text(),
    }[datatype]


BASIC_TYPES = [DataType(code) for code in range(1, 15)]
ARRAY_ELEMENTS: dict[DataType, st.SearchStrategy[object]] = {
    DataType.Int8Array: basic_values(DataType.Int8),
    DataType.Int16Array: basic_values(DataType.Int16),
    DataType.Int32Array: basic_values(DataType.Int32),
    DataType.Int64Array: basic_values(DataType.Int64),
    DataType.UInt8Array: basic_values(DataType.UInt8),
    DataType.UInt16Array: basic_values(DataType.UInt16),
    DataType.UInt32Array: basic_values(DataType.UInt32),
    DataType.UInt64Array: basic_values(DataType.UInt64),
    DataType.FloatArray: FLOAT32,
    DataType.DoubleArray: DOUBLE,
    DataType.BooleanArray: st.booleans(),
    DataType.StringArray: NO_NUL_TEXT,
    DataType.DateTimeArray: U64S,
}


@st.composite
def datasets(draw: st.DrawFn) -> DataSet:
    types = tuple(draw(st.lists(st.sampled_from(BASIC_TYPES), max_size=4)))
    columns = tuple(draw(st.lists(st.text(max_size=5), min_size=len(types), max_size=len(types))))
    rows = draw(
        st.lists(st.tuples(*(st.none() | basic_values(datatype) for datatype in types)), max_size=3)
        if types
        else st.just([])
    )
    return DataSet(columns, types, tuple(rows))


def property_sets(depth: int = 2) -> st.SearchStrategy[tuple[tuple[str, PropertyValue], ...]]:
    scalar = st.sampled_from(BASIC_TYPES).flatmap(
        lambda datatype: st.builds(PropertyValue, st.just(datatype), st.none() | basic_values(datatype))
    )
    values = scalar
    if depth:
        inner = property_sets(depth - 1)
        values = (
            scalar
            | st.builds(PropertyValue, st.just(DataType.PropertySet), st.none() | inner)
            | st.builds(
                PropertyValue,
                st.just(DataType.PropertySetList),
                st.none() | st.lists(inner, max_size=2).map(tuple),
            )
        )
    return st.dictionaries(st.text(max_size=6), values, max_size=3).map(lambda d: tuple(d.items()))


def metric_values(datatype: DataType, depth: int) -> st.SearchStrategy[object]:
    if datatype in INT_RANGES or datatype in (DataType.Float, DataType.Double, DataType.Boolean):
        return basic_values(datatype)
    if datatype in (DataType.String, DataType.Text, DataType.UUID):
        return st.text()
    if datatype in (DataType.Bytes, DataType.File):
        return st.binary()
    if datatype in ARRAY_ELEMENTS:
        return st.lists(ARRAY_ELEMENTS[datatype], max_size=12).map(tuple)
    if datatype is DataType.DataSet:
        return datasets()
    assert datatype is DataType.Template
    return templates(depth)


METRIC_TYPES = [datatype for datatype in DataType if datatype not in (DataType.PropertySet, DataType.PropertySetList)]


def metrics(depth: int = 1) -> st.SearchStrategy[Metric]:
    allowed = [datatype for datatype in METRIC_TYPES if depth or datatype is not DataType.Template]
    typed = st.sampled_from(allowed[1:]).flatmap(
        lambda datatype: st.tuples(st.just(datatype), st.none() | metric_values(datatype, depth))
    )
    untyped_null = st.tuples(st.sampled_from([None, DataType.Unknown]), st.none())
    return st.builds(
        lambda name, alias, ts, typed_value, flags, props, meta: Metric(
            name, alias, ts, typed_value[0], typed_value[1], flags[0], flags[1], props, meta
        ),
        st.none() | st.text(max_size=12),
        st.none() | U64S,
        st.none() | U64S,
        typed | untyped_null,
        st.tuples(st.booleans(), st.booleans()),
        property_sets(1),
        st.none() | st.builds(MetaData, st.none() | st.booleans(), st.none() | st.text(max_size=5), st.none() | U64S),
    )


def templates(depth: int) -> st.SearchStrategy[Template]:
    parameters = st.sampled_from(BASIC_TYPES).flatmap(
        lambda datatype: st.builds(
            TemplateParameter, st.text(max_size=5), st.just(datatype), st.none() | basic_values(datatype)
        )
    )
    return st.builds(
        lambda members, params, is_definition, ref, version: Template(
            tuple(members), tuple(params), None if is_definition else ref, is_definition, version
        ),
        st.lists(metrics(depth - 1), max_size=3),
        st.lists(parameters, max_size=2),
        st.booleans(),
        st.text(max_size=8),
        st.none() | st.text(max_size=4),
    )


payloads = st.builds(
    Payload,
    st.none() | U64S,
    st.none() | st.integers(0, 255),
    st.lists(metrics(), max_size=6).map(tuple),
    st.none() | st.text(max_size=8),
    st.none() | st.binary(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_decode_inverts_encode(payload: Payload) -> None:
    assert decode(encode(payload)) == payload


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_decode_inverts_encode_with_uint32_in_long_value(payload: Payload) -> None:
    assert decode(encode(payload, uint32_field="long_value")) == payload


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_encoding_is_deterministic_and_canonical(payload: Payload) -> None:
    data = encode(payload)
    assert encode(decode(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(U64S, U64S, st.sampled_from([DataType.Double, DataType.Int16, DataType.Boolean]))))
def test_encode_ddata_agrees_with_encode(rows: list[tuple[int, int, DataType]]) -> None:
    values = {DataType.Double: -1.25, DataType.Int16: -7, DataType.Boolean: True}
    tuples = [(alias, ts, datatype, values[datatype], None) for alias, ts, datatype in rows]
    expected = Payload(
        TS, 3, tuple(Metric(None, alias, ts, datatype, value) for alias, ts, datatype, value, _ in tuples)
    )
    assert encode_ddata(3, TS, tuples) == encode(expected)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_decode_of_random_bytes_returns_a_payload_or_a_decode_error(data: bytes) -> None:
    try:
        payload = decode(data)
    except SparkplugDecodeError:
        return
    assert isinstance(payload, Payload)


@settings(max_examples=300, deadline=None)
@given(payloads, st.data())
def test_decode_of_mutated_payloads_never_raises_anything_else(payload: Payload, data: st.DataObject) -> None:
    encoded = bytearray(encode(payload))
    if encoded:
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(SparkplugDecodeError):
        decode(bytes(encoded))


def test_encode_ddata_flags_replayed_metrics_historical_and_can_strip_datatypes() -> None:
    from plantline.connectors.sparkplug import DataType, decode, encode_ddata

    data = encode_ddata(7, 1000, [(100, 990, DataType.Double, 1.5, None)], strip_datatypes=True, historical=True)
    (metric,) = decode(data).metrics
    assert metric.is_historical
    assert metric.datatype is None  # payloads-metric-datatype-not-req: not repeated after the birth
    live = decode(encode_ddata(8, 1000, [(100, 990, DataType.Double, 1.5, None)])).metrics[0]
    assert not live.is_historical
    assert live.datatype is DataType.Double


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (DataType.Int8, -5),
        (DataType.Int16, -300),
        (DataType.Int32, -70000),
        (DataType.Int64, -(2**40)),
        (DataType.UInt32, 4_000_000_000),
        (DataType.Float, 1.5),
        (DataType.Boolean, True),
        (DataType.String, "x"),
        (DataType.DateTime, 1_763_800_000_000),
    ],
)
def test_apply_datatype_reads_stripped_data_values_as_the_birth_says(datatype: DataType, value: object) -> None:
    from plantline.connectors.sparkplug import apply_datatype, encode_ddata

    raw = decode(encode_ddata(0, 1, [(1, 1, datatype, value, None)], strip_datatypes=True)).metrics[0].value
    assert apply_datatype(raw, datatype) == value
