"""Eclipse Tahu's JavaScript decoder (sparkplug-payload 1.0.3) as an independent host of the line.

Every NBIRTH, DBIRTH, DDATA and NDEATH that `plantline up --simulate` publishes is decoded by
Tahu JS and must give the values our own decoder gives, and those the simulators hold. DDATA
metrics carry no datatype (payloads-metric-datatype-not-req) and Tahu reads such a metric as null,
so, as a host does, the test types them from the DBIRTH before Tahu decodes them.

Tahu JS reads UInt32 only from long_value. With the specification's int_value (the default)
every UInt32 value is null there: the known incompatibility that `spec.uint32Field: long_value`
is for. With long_value every value matches.
"""

from __future__ import annotations

import math
import struct
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import snap7
import yaml

from plantline.connectors.addressing.s7 import parse_s7_address, parse_s7_endpoint
from plantline.connectors.sparkplug import (
    DataSet,
    DataType,
    MessageType,
    Metric,
    Payload,
    PropertyValue,
    Template,
    TemplateParameter,
    Uint32Field,
    apply_datatype,
    encode,
    encode_ddata,
)
from plantline_testing.lines import UpRun, line_copy
from plantline_testing.sparkplug_reader import Received
from plantline_testing.tahu import ToDecode, ensure_tahu, tahu_decode

pytestmark = [pytest.mark.peer]

MACHINES = ("filler", "capper", "labeler")
COLLECT_S = 12.0  # of data after the births; the S7 simulator is read half way through
U32 = 2**32 - 1
TS = 1_763_800_000_000


def _plain(value: object, datatype: DataType | None) -> object:
    """Return a value of Tahu's JSON as our decoder gives it (64-bit integers arrive as strings)."""
    if isinstance(value, str) and datatype in (DataType.Int64, DataType.UInt64, DataType.DateTime):
        return int(value)
    if isinstance(value, str) and datatype in (DataType.Float, DataType.Double):
        return float(value)  # NaN and the infinities
    return value


def _same(ours: object, theirs: object) -> bool:
    if isinstance(ours, float) and math.isnan(ours):
        return isinstance(theirs, float) and math.isnan(theirs)
    return ours == theirs and isinstance(ours, bool) == isinstance(theirs, bool)


def _number(value: object) -> int | None:
    return None if value is None else int(str(value))


@dataclass
class Tally:
    """What comparing Tahu's decoding with ours found."""

    problems: list[str] = field(default_factory=list)
    uint32_nulls: int = 0  # UInt32 values Tahu read as null where ours read a number
    uint32_read: int = 0  # UInt32 values Tahu read as a number
    values: dict[tuple[str, str], list[object]] = field(default_factory=lambda: defaultdict(list))

    def value(self, where: str, ours: object, theirs_raw: object, datatype: DataType | None) -> None:
        theirs = _plain(theirs_raw, datatype)
        if datatype is DataType.UInt32 and ours is not None:
            if theirs is None:
                self.uint32_nulls += 1
                return
            self.uint32_read += 1
        if not _same(ours, theirs):
            self.problems.append(f"{where}: ours {ours!r}, Tahu {theirs_raw!r}")

    def metric(self, where: str, ours: Metric, datatype: DataType | None, theirs: dict[str, Any]) -> None:
        expected = (ours.name, ours.alias, ours.timestamp, datatype.name if datatype else None, ours.is_historical)
        got = (
            theirs.get("name"),
            _number(theirs.get("alias")),
            _number(theirs.get("timestamp")),
            theirs.get("type"),
            bool(theirs.get("isHistorical")),
        )
        if got != expected:
            self.problems.append(f"{where}: (name, alias, timestamp, type, historical) ours {expected}, Tahu {got}")
        value = apply_datatype(ours.value, datatype) if ours.datatype is None and datatype else ours.value
        self.value(f"{where} value", value, theirs.get("value"), datatype)
        properties = theirs.get("properties") or {}
        if set(properties) != {key for key, _ in ours.properties}:
            self.problems.append(f"{where}: properties ours {ours.properties}, Tahu {properties}")
            return
        for key, prop in ours.properties:
            if properties[key].get("type") != prop.type.name:
                self.problems.append(f"{where} property {key}: type {prop.type.name}, Tahu {properties[key]}")
            self.value(f"{where} property {key}", prop.value, properties[key].get("value"), prop.type)


@dataclass
class Births:
    """Per device, each alias's name and datatype, as the DBIRTHs declare them."""

    names: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    types: dict[str, dict[int, DataType]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def of(cls, messages: list[Received]) -> Births:
        births = cls()
        for message in messages:
            if message.kind is MessageType.DBIRTH and message.device_id is not None:
                for metric in message.payload.metrics:
                    assert metric.alias is not None
                    assert metric.name is not None
                    assert metric.datatype is not None
                    known = births.types[message.device_id].setdefault(metric.alias, metric.datatype)
                    assert known is metric.datatype, f"alias {metric.alias} changed its datatype"
                    births.names[message.device_id][metric.alias] = metric.name
        return births


def compare(messages: list[Received]) -> tuple[Tally, Counter[MessageType]]:
    """Decode every message with Tahu and compare it, metric by metric, with our decoding."""
    births = Births.of(messages)
    items = [
        ToDecode(m.data, {a: int(t) for a, t in births.types[m.device_id].items()})
        if m.kind is MessageType.DDATA and m.device_id is not None
        else ToDecode(m.data)
        for m in messages
    ]
    tally = Tally()
    for index, (message, result) in enumerate(zip(messages, tahu_decode(items), strict=True)):
        where = f"#{index} {message.kind} {message.device_id or ''}"
        if "error" in result:
            tally.problems.append(f"{where}: Tahu could not decode it: {result['error']}")
            continue
        theirs = result["payload"]
        ours = message.payload
        if (_number(theirs.get("seq")), _number(theirs.get("timestamp"))) != (ours.seq, ours.timestamp):
            tally.problems.append(f"{where}: seq/timestamp ours {ours.seq}/{ours.timestamp}, Tahu {theirs}")
        their_metrics = theirs.get("metrics") or []
        if len(their_metrics) != len(ours.metrics):
            tally.problems.append(f"{where}: {len(ours.metrics)} metrics, Tahu {len(their_metrics)}")
            continue
        device = message.device_id or ""
        for metric, their_metric in zip(ours.metrics, their_metrics, strict=True):
            datatype = metric.datatype if metric.datatype is not None else births.types[device].get(metric.alias or 0)
            name = metric.name or births.names[device].get(metric.alias or 0, f"alias {metric.alias}")
            tally.metric(f"{where} {name}", metric, datatype, their_metric)
            tally.values[(device, name)].append(_plain(their_metric.get("value"), datatype))
    return tally, Counter(m.kind for m in messages)


def _s7_counters(run: UpRun) -> dict[str, int]:
    """Return the capper's UInt32 counters as its S7 simulator holds them now, read directly."""
    capper = next(m for m in run.data["spec"]["machines"] if m["id"] == "capper")
    endpoint = parse_s7_endpoint(capper["endpoint"])
    client = snap7.Client()
    client.connect(endpoint.host, endpoint.rack, endpoint.slot, endpoint.port)
    try:
        held = {}
        for tag in capper["tags"]:
            if tag["datatype"] == "uint32":
                where = parse_s7_address(tag["address"], "uint32")
                (held[tag["signal"]],) = struct.unpack(">I", client.db_read(where.db, where.start, 4))
        return held
    finally:
        client.disconnect()


def _run_line(tmp_path: Path, uint32_field: str) -> tuple[list[Received], dict[str, int]]:
    """Run the demo line with `uint32Field`; return every message a host saw, and the S7 counters read."""
    line_file = tmp_path / "line.yaml"
    data = line_copy(line_file)
    data["spec"]["uint32Field"] = uint32_field
    line_file.write_text(yaml.safe_dump(data, sort_keys=False))
    run = UpRun(line_file, tmp_path / "state")
    stopped = False
    try:
        up = run.up_attached(tmp_path / "up.log")
        with run.reader(f"tahu-{uint32_field}") as reader:
            born = lambda: all(reader.of(MessageType.DBIRTH, m) for m in MACHINES)  # noqa: E731
            reader.wait_for(born, 120, "DBIRTHs of filler, capper and labeler")
            time.sleep(COLLECT_S / 2)
            held = _s7_counters(run)
            time.sleep(COLLECT_S / 2)
            assert run.stop_attached(up) == 0
            stopped = True
            reader.wait_for(lambda: bool(reader.of(MessageType.NDEATH)), 30, "the line's NDEATH")
            assert reader.errors == []
            return list(reader.messages), held
    finally:
        if not stopped:  # after a clean stop its pids are gone and may be reused
            run.kill_all()


@pytest.mark.slow
@pytest.mark.parametrize("uint32_field", ["int_value", "long_value"])
def test_tahu_decodes_what_the_demo_line_publishes(tmp_path: Path, uint32_field: str) -> None:
    ensure_tahu()  # before the line starts: the first install takes a while
    messages, held = _run_line(tmp_path, uint32_field)
    tally, kinds = compare(messages)

    assert kinds[MessageType.NBIRTH] >= 1
    assert kinds[MessageType.DBIRTH] >= len(MACHINES)
    assert kinds[MessageType.DDATA] >= 10
    assert kinds[MessageType.NDEATH] == 1
    assert tally.problems == []
    if uint32_field == "int_value":
        assert tally.uint32_nulls > 0  # Tahu JS reads every UInt32 in int_value as null
        assert tally.uint32_read == 0
    else:
        assert tally.uint32_nulls == 0
        assert tally.uint32_read > 0
    # What the S7 simulator held half way lies within what was published before and after it.
    births = Births.of(messages)
    capper = [m for m in messages if m.device_id == "capper" and m.kind in (MessageType.DBIRTH, MessageType.DDATA)]
    for signal, value in held.items():
        ours = [number for m in capper for number in _values_of(m, signal, births)]
        assert ours, signal
        assert min(ours) <= value <= max(ours), (signal, value, ours)
        seen_by_tahu = [v for v in tally.values[("capper", signal)] if v is not None]
        assert seen_by_tahu == ([] if uint32_field == "int_value" else ours)


def _values_of(message: Received, name: str, births: Births) -> list[int]:
    """Return the non-null values of metric `name` in one of the device's messages, read by our decoder."""
    device = message.device_id or ""
    out = []
    for metric in message.payload.metrics:
        alias = metric.alias or 0
        if (metric.name or births.names[device].get(alias)) == name and metric.value is not None:
            value = apply_datatype(metric.value, births.types[device][alias])
            assert isinstance(value, int)
            out.append(value)
    return out


# ---------------------------------------------------------------------------------------------
# Where Tahu JS looks for UInt32, beyond what the demo line publishes


def _uint32_places(value: int) -> list[Payload]:
    """Payloads with a UInt32 in each place a scalar can be: metric, properties, DataSet cell, Template."""
    prop = PropertyValue(DataType.UInt32, value)
    nested = (("count", prop),)
    properties = (
        ("count", prop),
        ("set", PropertyValue(DataType.PropertySet, nested)),
        ("list", PropertyValue(DataType.PropertySetList, (nested,))),
    )
    table = DataSet(("n",), (DataType.UInt32,), ((value,),))
    template = Template(parameters=(TemplateParameter("limit", DataType.UInt32, value),), is_definition=True)
    return [
        Payload(TS, 0, (Metric("counter", 1, TS, DataType.UInt32, value, properties=properties),)),
        Payload(TS, 0, (Metric("table", 2, TS, DataType.DataSet, table),)),
        Payload(TS, 0, (Metric("type", 3, TS, DataType.Template, template),)),
    ]


@pytest.mark.parametrize("value", [0, 2**31, U32])
def test_tahu_js_reads_uint32_only_from_long_value(value: int) -> None:
    def decoded(uint32_field: Uint32Field) -> list[dict[str, Any]]:
        items = [ToDecode(encode(p, uint32_field=uint32_field)) for p in _uint32_places(value)]
        row = (1, TS, DataType.UInt32, value, None)
        data = encode_ddata(1, TS, [row], strip_datatypes=True, uint32_field=uint32_field)
        items.append(ToDecode(data, {1: int(DataType.UInt32)}))  # typed from the birth, as a host does
        return tahu_decode(items)

    spec_metric, spec_table, spec_template, spec_ddata = decoded("int_value")
    metric = spec_metric["payload"]["metrics"][0]
    assert metric["value"] is None
    assert metric["properties"]["count"]["value"] is None
    assert metric["properties"]["set"]["value"]["count"]["value"] is None
    assert metric["properties"]["list"]["value"][0]["count"]["value"] is None
    assert spec_table["error"].startswith("Invalid DataSetValue")  # the whole payload fails
    assert spec_template["error"].startswith("Invalid Parameter value")
    assert spec_ddata["payload"]["metrics"][0]["value"] is None

    long_metric, long_table, long_template, long_ddata = decoded("long_value")
    metric = long_metric["payload"]["metrics"][0]
    assert metric["value"] == value
    assert metric["properties"]["count"]["value"] == value
    assert metric["properties"]["set"]["value"]["count"]["value"] == value
    assert metric["properties"]["list"]["value"][0]["count"]["value"] == value
    assert long_table["payload"]["metrics"][0]["value"]["rows"] == [[value]]
    assert long_template["payload"]["metrics"][0]["value"]["parameters"][0]["value"] == value
    assert long_ddata["payload"]["metrics"][0]["value"] == value


def test_tahu_js_reads_no_array_datatype_in_either_setting() -> None:
    # sparkplug-payload 1.0.3 knows datatypes 1..21 only: every array is null, whatever the setting.
    payload = Payload(TS, 0, (Metric("counts", 1, TS, DataType.UInt32Array, (1, U32)),))
    results = tahu_decode([ToDecode(encode(payload, uint32_field=f)) for f in ("int_value", "long_value")])
    for result in results:
        (metric,) = result["payload"]["metrics"]
        assert metric["value"] is None
        assert "type" not in metric
