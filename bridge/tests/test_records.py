"""Records of schema plantline.sample/1 and dead letters, made from what a real edge-node session publishes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bridge_support import T0, bridge_config, edge, releases, samples
from plantline.bridge.records import (
    SAMPLE_HEADERS,
    TOO_LARGE,
    UNDECODABLE,
    UNKNOWN_LINE,
    UNKNOWN_MACHINE,
    UNSUPPORTED_VALUE,
    Router,
    dedupe,
    sample_of,
)
from plantline.connectors.samples import Quality
from plantline.connectors.sparkplug import DataSet, DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release


def test_a_sample_becomes_a_record_in_its_equipment_types_topic_keyed_by_its_machine(tmp_path: Path) -> None:
    session = edge(tmp_path)
    born = session.on_connected(T0)
    values = {"counter.good": 4_000_000_000, "process.temperature": 21.5}
    data = session.data(samples("filler", T0 + 5, values, Quality.UNCERTAIN), T0 + 5, historical=True).messages
    *_, ddata = releases(born + data)
    made = Router(bridge_config()).make(ddata, data[0].topic, data[0].payload)
    assert made.dead == []
    assert [(r.topic, r.key) for r in made.records] == [("plantline.filler", b"site1/line1/filler")] * 2
    records = {sample_of(r.value)["signal"]: sample_of(r.value) for r in made.records}
    bdseq = ddata.bdseq
    assert records["counter.good"] == {
        "v": 1,
        "id": f"site1/line1/filler/counter.good/{T0 + 5}",
        "site": "site1",
        "line": "line1",
        "machine": "filler",
        "equipment_type": "filler",
        "group_id": "site1",
        "edge_node_id": "line1",
        "signal": "counter.good",
        "datatype": "UInt32",
        "value": 4_000_000_000,
        "quality": "uncertain",
        "ts": T0 + 5,
        "historical": True,
        "kind": "DDATA",
        "seq": 3,  # after the NBIRTH and two DBIRTHs
        "bdseq": bdseq,
    }
    assert bdseq is not None
    assert records["process.temperature"]["value"] == 21.5
    assert dict(SAMPLE_HEADERS) == {"content-type": b"application/json", "schema": b"plantline.sample/1"}


def test_birth_values_are_samples_and_node_messages_and_deaths_make_nothing(tmp_path: Path) -> None:
    session = edge(tmp_path)
    session.remember(samples("capper", T0 - 10, {"process.torque": 3.25}))
    born = session.on_connected(T0)
    router = Router(bridge_config())
    made = [router.make(r, "t", b"") for r in releases(born)]
    kinds = [r.kind for r in releases(born)]
    assert kinds[0] is MessageType.NBIRTH
    assert (made[0].records, made[0].dead) == ([], [])
    capper = [sample_of(r.value) for m in made for r in m.records if r.key == b"site1/line1/capper"]
    assert [(c["signal"], c["value"], c["kind"], c["ts"]) for c in capper] == [
        ("process.torque", 3.25, "DBIRTH", T0 - 10)
    ]
    death = Release(0, MessageType.DDEATH, NodeKey("site1", "line1"), "capper")
    assert router.make(death, "t", b"").records == []


def test_the_record_id_is_stable_across_redeliveries_and_dedupe_keeps_the_first(tmp_path: Path) -> None:
    session = edge(tmp_path)
    born = session.on_connected(T0)
    data = session.data(samples("filler", T0 + 1, {"state.run": True}), T0 + 1, historical=False).messages
    router = Router(bridge_config())
    first = [sample_of(r.value) for r in router.make(releases(born + data)[-1], "t", b"").records]
    # after a crash: a new host session, the same message delivered again
    again = [sample_of(r.value) for r in router.make(releases(born + data)[-1], "t", b"").records]
    assert [r["id"] for r in first] == [r["id"] for r in again]
    seen: set[str] = set()
    assert dedupe(first, seen) == first
    assert dedupe(again, seen) == []


def _release(
    value: object, datatype: DataType = DataType.Double, device: str = "filler", edge_node: str = "line1"
) -> Release[int]:
    metric = HostMetric("process.x", datatype, value, T0, Quality.GOOD, False)
    return Release(7, MessageType.DDATA, NodeKey("site1", edge_node), device, (metric,), seq=3, bdseq=1)


@pytest.mark.parametrize(
    ("value", "datatype", "json_value"),
    [
        (math.nan, DataType.Double, "NaN"),
        (math.inf, DataType.Double, "Infinity"),
        (-math.inf, DataType.Float, "-Infinity"),
        (None, DataType.Double, None),
        (b"\x00\xff", DataType.Bytes, "AP8="),
        ((1, 2, 3), DataType.Int32Array, [1, 2, 3]),
        ('caf\u00e9 "x"', DataType.String, 'caf\u00e9 "x"'),
        (False, DataType.Boolean, False),
    ],
)
def test_values_json_cannot_hold_directly_travel_as_documented(
    value: object, datatype: DataType, json_value: object
) -> None:
    (record,) = Router(bridge_config()).make(_release(value, datatype), "t", b"").records
    assert sample_of(record.value)["value"] == json_value


def test_signal_names_are_escaped_in_the_json_and_the_id() -> None:
    metric = HostMetric('process."odd"\\name', DataType.Double, 1.0, T0, Quality.BAD, False)
    release = Release(1, MessageType.DDATA, NodeKey("site1", "line1"), "filler", (metric,))
    record = sample_of(Router(bridge_config()).make(release, "t", b"").records[0].value)
    assert record["signal"] == 'process."odd"\\name'
    assert record["id"] == f'site1/line1/filler/process."odd"\\name/{T0}'
    assert (record["quality"], record["seq"], record["bdseq"]) == ("bad", None, None)


def test_what_cannot_be_a_record_becomes_a_dead_letter_with_its_reason_and_original_bytes() -> None:
    router = Router(bridge_config())
    cases = {
        UNDECODABLE: Release(1, MessageType.DDATA, NodeKey("site1", "line1"), "filler", error="not protobuf"),
        UNKNOWN_LINE: _release(1.0, edge_node="line9"),
        UNKNOWN_MACHINE: _release(1.0, device="mixer"),
        UNSUPPORTED_VALUE: _release(DataSet(("a",), (DataType.Int32,), ((1,),)), DataType.DataSet),
    }
    for reason, release in cases.items():
        made = router.make(release, "spBv1.0/site1/DDATA/line1/x", b"\x01original")
        assert made.records == [], reason
        (dead,) = made.dead
        assert (dead.reason, dead.payload, dead.mqtt_topic) == (reason, b"\x01original", "spBv1.0/site1/DDATA/line1/x")
        headers = dict(dead.headers())
        assert headers["reason"] == reason.encode()
        assert headers["schema"] == b"plantline.deadletter/1"
    assert "line9" in router.make(cases[UNKNOWN_LINE], "t", b"").dead[0].detail
    assert "mixer" in router.make(cases[UNKNOWN_MACHINE], "t", b"").dead[0].detail


def test_a_record_above_the_limit_is_a_dead_letter_and_its_siblings_still_go() -> None:
    config = bridge_config(
        kafka={"bootstrap_servers": "k:9093", "security_protocol": "PLAINTEXT", "producer": {"max_record_bytes": 4096}}
    )
    big = HostMetric("process.blob", DataType.String, "x" * 4100, T0, Quality.GOOD, False)
    small = HostMetric("process.x", DataType.Double, 1.0, T0, Quality.GOOD, False)
    release = Release(1, MessageType.DDATA, NodeKey("site1", "line1"), "filler", (big, small))
    made = Router(config).make(release, "t", b"orig")
    assert [sample_of(r.value)["signal"] for r in made.records] == ["process.x"]
    (dead,) = made.dead
    assert dead.reason == TOO_LARGE
    assert "process.blob" in dead.detail
    assert dead.key == b"site1/line1/filler"


def test_a_record_of_another_schema_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 1"):
        sample_of(json.dumps({"v": 2}).encode())
