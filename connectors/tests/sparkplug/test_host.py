"""The host application's session against the messages PlantLine's own edge-node session publishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantline.connectors.config import Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.session import QUALITY_CODES, BdSeqStore, EdgeNodeSession, Outgoing
from plantline.connectors.sparkplug import DataType, HostState, MessageType, decode, parse_state_payload
from plantline.connectors.sparkplug.codec import PropertyValue
from plantline.connectors.sparkplug.host import REBIRTH_METRIC, HostSession, NodeKey, Outcome, quality_of

T0 = 1_763_800_000_000
NODE = NodeKey("site1", "line1")
TAGS = {
    "filler": [
        Tag(signal="state.run", address="ns=2;s=F.run", datatype="bool"),
        Tag(signal="counter.good", address="ns=2;s=F.good", datatype="uint32"),
        Tag(signal="fault.code", address="ns=2;s=F.code", datatype="int16"),
        Tag(signal="process.temperature", address="ns=2;s=F.t", datatype="int16", scale=0.1),
    ],
}


def edge(tmp_path: Path) -> EdgeNodeSession:
    session = EdgeNodeSession(group_id="site1", edge_node_id="line1", devices=TAGS, bdseq=BdSeqStore(tmp_path / "b"))
    session.prepare_connect()
    return session


def births(session: EdgeNodeSession) -> list[Outgoing]:
    session.remember([Sample("filler", "state.run", True, Quality.GOOD, T0 - 10)])
    session.set_reachable("filler", True)  # its PLC is up: the DBIRTH carries the remembered values
    return session.on_connected(T0)


def data(session: EdgeNodeSession, ts: int = T0 + 1) -> list[Outgoing]:
    samples = [
        Sample("filler", "counter.good", 4_000_000_000, Quality.GOOD, ts),
        Sample("filler", "fault.code", -3, Quality.UNCERTAIN, ts),
        Sample("filler", "process.temperature", 21.5, Quality.BAD, ts),
    ]
    return session.data(samples, ts, historical=False).messages


def feed(host: HostSession[int], messages: list[Outgoing], first_token: int = 0, now: int = T0) -> Outcome[int]:
    total: Outcome[int] = Outcome()
    for index, message in enumerate(messages):
        outcome = host.receive(first_token + index, message.topic, message.payload, now)
        total.released += outcome.released
        total.commands += outcome.commands
    return total


def test_data_is_named_and_typed_through_the_births(tmp_path: Path) -> None:
    session, host = edge(tmp_path), HostSession[int](group_ids=["site1"])
    out = feed(host, births(session) + data(session))
    assert [r.token for r in out.released] == [0, 1, 2]
    ddata = out.released[2]
    assert (ddata.kind, ddata.node, ddata.device_id) == (MessageType.DDATA, NODE, "filler")
    values = {m.name: (m.datatype, m.value, m.quality, m.timestamp_ms) for m in ddata.metrics}
    assert values == {
        "counter.good": (DataType.UInt32, 4_000_000_000, Quality.GOOD, T0 + 1),
        "fault.code": (DataType.Int16, -3, Quality.UNCERTAIN, T0 + 1),
        "process.temperature": (DataType.Double, 21.5, Quality.BAD, T0 + 1),
    }
    dbirth = out.released[1]
    assert {m.name: m.value for m in dbirth.metrics} == {"state.run": True}, "a birth's nulls are not samples"
    assert host.device_online(NODE, "filler")
    assert out.commands == []


def test_releases_carry_the_messages_seq_and_the_births_bdseq(tmp_path: Path) -> None:
    session = edge(tmp_path)
    born = births(session)
    host = HostSession[int](group_ids=["site1"])
    out = feed(host, data(session) + born + data(session, T0 + 2))  # the first data parks until the births
    bdseq = {m.name: m.value for m in decode(born[0].payload).metrics}["bdSeq"]
    seqs = {r.token: (r.seq, r.bdseq) for r in out.released}
    assert seqs == {1: (0, bdseq), 2: (1, bdseq), 0: (2, bdseq), 3: (3, bdseq)}


def test_unresolvable_data_is_parked_a_rebirth_asked_and_released_after_the_births(tmp_path: Path) -> None:
    session = edge(tmp_path)
    births(session)  # published before the host listened
    host = HostSession[int](group_ids=["site1"], rebirth_interval_ms=1000)
    out = feed(host, data(session) + data(session, T0 + 2))  # the host joined after the births
    assert out.released == []
    assert host.stats.parked == 2
    (command,) = out.commands  # one request for both messages
    assert command.topic == "spBv1.0/site1/NCMD/line1"
    assert command.qos == 0  # payloads-ncmd-qos
    (metric,) = decode(command.payload).metrics
    assert (metric.name, metric.value) == (REBIRTH_METRIC, True)
    assert host.tick(T0 + 500).commands == [], "asked again only after the interval"
    assert len(host.tick(T0 + 1000).commands) == 1
    rebirth = session.on_rebirth_request(T0 + 5000)
    assert rebirth, "the edge node answers the NCMD"
    out = feed(host, rebirth, first_token=10)
    assert [r.token for r in out.released] == [10, 11, 0, 1], "parked data after its DBIRTH, in order"
    assert {m.timestamp_ms for m in out.released[3].metrics} == {T0 + 2}
    assert host.stats.parked == 0


def test_data_behind_parked_data_of_its_device_waits_its_turn(tmp_path: Path) -> None:
    session = edge(tmp_path)
    born = births(session)
    host = HostSession[int](group_ids=["site1"])
    feed(host, data(session))
    out = feed(host, born[:1], first_token=5)  # the NBIRTH alone: the device is still unknown
    assert [r.token for r in out.released] == [5]
    out = feed(host, born[1:] + data(session, T0 + 3), first_token=6)
    assert [r.token for r in out.released] == [6, 0, 7]


def test_data_never_resolved_is_released_with_an_error_after_max_rebirths(tmp_path: Path) -> None:
    session = edge(tmp_path)
    births(session)
    host = HostSession[int](group_ids=["site1"], rebirth_interval_ms=1000, max_rebirths=3)
    feed(host, data(session))
    released = []
    for step in range(1, 5):
        released += host.tick(T0 + step * 1000).released
    assert [(r.token, r.metrics) for r in released] == [(0, ())]
    assert released[0].error is not None
    assert host.stats.unresolvable == 1
    assert host.stats.rebirths_requested == 3


def test_seq_gaps_are_counted(tmp_path: Path) -> None:
    session, host = edge(tmp_path), HostSession[int](group_ids=["site1"])
    born = births(session)
    data(session)  # published, never received
    feed(host, born + data(session))
    assert host.stats.seq_gaps == 1


def test_a_stale_ndeath_leaves_the_node_online(tmp_path: Path) -> None:
    """host-... an NDEATH whose bdSeq is not the current birth's belongs to an older session."""
    session = edge(tmp_path)
    old_will = session._ndeath()
    session.prepare_connect()  # the node reconnected: a new bdSeq
    host = HostSession[int](group_ids=["site1"])
    feed(host, births(session))
    feed(host, [old_will])
    assert host.node_online(NODE)
    assert host.stats.stale_deaths == 1
    feed(host, [session._ndeath()])
    assert not host.node_online(NODE)
    assert not host.device_online(NODE, "filler")


def test_primary_host_state_birth_and_will_share_the_timestamp() -> None:
    host = HostSession[int](group_ids=["site1"], host_id="scada")
    will = host.will(T0)
    assert will is not None
    (online,) = host.on_connected()
    assert will.topic == online.topic == "spBv1.0/STATE/scada"
    assert (will.qos, will.retain, online.qos, online.retain) == (1, True, 1, True)
    assert parse_state_payload(will.payload) == HostState(False, T0)
    assert parse_state_payload(online.payload) == HostState(True, T0)


def test_a_primary_host_told_it_is_offline_says_online_again() -> None:
    host = HostSession[int](group_ids=["site1"], host_id="scada")
    will = host.will(T0)
    assert will is not None
    out = host.receive(1, will.topic, will.payload, T0 + 5)
    assert [parse_state_payload(c.payload).online for c in out.commands] == [True]
    assert [r.token for r in out.released] == [1]
    other = HostSession[int](group_ids=["site1"], host_id="other")
    other.will(T0)
    assert other.receive(1, will.topic, will.payload, T0).commands == [], "another host's STATE is not ours"


def test_subscriptions_follow_the_groups_and_the_own_state() -> None:
    host = HostSession[int](group_ids=["site1", "site2"], host_id="scada")
    assert host.subscriptions() == [("spBv1.0/site1/#", 1), ("spBv1.0/site2/#", 1), ("spBv1.0/STATE/scada", 1)]
    with pytest.raises(ValueError, match="reserved"):
        HostSession[int](group_ids=["site/1"])


def test_malformed_messages_are_released_with_the_reason() -> None:
    host = HostSession[int](group_ids=["site1"])
    out = host.receive(1, "spBv1.0/site1/DDATA/line1/filler", b"\xff\xff", T0)
    assert out.released[0].error is not None
    out = host.receive(2, "not/sparkplug", b"", T0)
    assert out.released[0].error is not None
    assert host.stats.malformed == 2


@pytest.mark.parametrize("quality", list(Quality))
def test_quality_codes_of_the_edge_read_back(quality: Quality) -> None:
    props = (("Quality", PropertyValue(DataType.Int32, QUALITY_CODES[quality])),)
    assert quality_of(props) is quality
