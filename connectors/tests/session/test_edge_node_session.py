"""The edge-node session against the Sparkplug 3.0 rules (tests named after TCK assertion ids)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from plantline.connectors.config import Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.session import BdSeqStore, EdgeNodeSession, HostNews, Outgoing, Phase, Rejected
from plantline.connectors.sparkplug import (
    DataType,
    HostState,
    MessageType,
    Payload,
    apply_datatype,
    decode,
    parse_topic,
)

T0 = 1_763_800_000_000

TAGS = {
    "filler": [
        Tag(signal="state.run", address="ns=2;s=F.run", datatype="bool"),
        Tag(signal="counter.good", address="ns=2;s=F.good", datatype="uint32"),
        Tag(signal="process.temperature", address="ns=2;s=F.t", datatype="int16", scale=0.1, unit="degC"),
    ],
    "capper": [Tag(signal="fault.code", address="ns=2;s=C.fault", datatype="int32")],
}


def session(tmp_path: Path, **kw: object) -> EdgeNodeSession:
    return EdgeNodeSession(
        group_id="site1",
        edge_node_id="line1",
        devices=TAGS,
        bdseq=BdSeqStore(tmp_path / "bdseq"),
        **kw,  # type: ignore[arg-type]
    )


def payload(message: Outgoing) -> Payload:
    return decode(message.payload)


def metric_value(p: Payload, name: str) -> object:
    return next(m.value for m in p.metrics if m.name == name)


def online(tmp_path: Path, **kw: object) -> tuple[EdgeNodeSession, Outgoing, list[Outgoing]]:
    s = session(tmp_path, **kw)
    will = s.prepare_connect()
    s.device_online("filler", T0)
    s.device_online("capper", T0)
    return s, will, s.on_connected(T0)


def sample(signal: str, value: object, *, device: str = "filler", ts: int = T0, **kw: object) -> Sample:
    return Sample(device, signal, value, kw.pop("quality", Quality.GOOD), ts, **kw)  # type: ignore[arg-type]


# -- NDEATH / Will --------------------------------------------------------------------------------


def test_payloads_ndeath_will_message_qos_is_1_not_retained(tmp_path: Path) -> None:
    # Regression: Tahu's JS and Python edge nodes register the Will at QoS 0.
    will = session(tmp_path).prepare_connect()
    assert will.kind is MessageType.NDEATH
    assert will.qos == 1
    assert will.retain is False
    assert parse_topic(will.topic).message_type is MessageType.NDEATH


def test_topics_ndeath_payload_only_bdseq_and_payloads_ndeath_seq_absent(tmp_path: Path) -> None:
    p = payload(session(tmp_path).prepare_connect())
    assert p.seq is None
    assert [(m.name, m.datatype) for m in p.metrics] == [("bdSeq", DataType.Int64)]


# -- NBIRTH ---------------------------------------------------------------------------------------


def test_payloads_nbirth_seq_bdseq_and_rebirth_metric(tmp_path: Path) -> None:
    _, will, births = online(tmp_path)
    nbirth = births[0]
    assert nbirth.kind is MessageType.NBIRTH
    assert (nbirth.qos, nbirth.retain) == (0, False)  # payloads-nbirth-qos, payloads-nbirth-retain
    p = payload(nbirth)
    assert p.seq == 0  # payloads-nbirth-seq
    assert p.timestamp == T0  # payloads-nbirth-timestamp
    # topics-nbirth-bdseq-matching: the same bdSeq as the Will registered at CONNECT
    assert metric_value(p, "bdSeq") == metric_value(payload(will), "bdSeq")
    rebirth = next(m for m in p.metrics if m.name == "Node Control/Rebirth")
    assert rebirth.datatype is DataType.Boolean  # operational-behavior-data-commands-rebirth-datatype
    assert rebirth.value is False  # operational-behavior-data-commands-rebirth-value


def test_bdseq_survives_restarts_and_increments_per_connect(tmp_path: Path) -> None:
    # Regression: implementations that keep bdSeq in memory restart it at 0.
    first = session(tmp_path)
    values = [metric_value(payload(first.prepare_connect()), "bdSeq") for _ in range(3)]
    restarted = session(tmp_path)
    values.append(metric_value(payload(restarted.prepare_connect()), "bdSeq"))
    assert values == [0, 1, 2, 3]


def test_bdseq_wraps_after_255(tmp_path: Path) -> None:
    (tmp_path / "bdseq").write_text("255\n")
    assert metric_value(payload(session(tmp_path).prepare_connect()), "bdSeq") == 0


def test_a_damaged_bdseq_file_is_an_error_not_a_silent_reset(tmp_path: Path) -> None:
    (tmp_path / "bdseq").write_text("banana")
    with pytest.raises(ValueError, match="bdseq"):
        session(tmp_path).prepare_connect()


# -- DBIRTH ---------------------------------------------------------------------------------------


def test_dbirth_metrics_have_name_alias_datatype_and_current_values(tmp_path: Path) -> None:
    s = session(tmp_path)
    s.prepare_connect()
    s.remember([sample("state.run", True), sample("process.temperature", 21.5, ts=T0 - 5)])
    s.set_reachable("filler", True)
    dbirth = s.on_connected(T0)[1]
    assert dbirth.kind is MessageType.DBIRTH
    assert (dbirth.qos, dbirth.retain) == (0, False)  # payloads-dbirth-qos, payloads-dbirth-retain
    p = payload(dbirth)
    assert p.seq == 1  # payloads-dbirth-seq-inc: one more than the NBIRTH
    by_name = {m.name: m for m in p.metrics}
    assert set(by_name) == {"state.run", "counter.good", "process.temperature"}
    assert all(m.alias is not None and m.datatype is not None for m in p.metrics)  # payloads-alias-birth-requirement
    assert len({m.alias for m in p.metrics}) == 3
    assert by_name["state.run"].value is True  # operational-behavior-data-publish-dbirth-values
    assert by_name["process.temperature"].datatype is DataType.Double  # scaled, so Double
    assert by_name["process.temperature"].timestamp == T0 - 5
    assert by_name["counter.good"].value is None  # no value read yet: null, never made up
    props = dict(by_name["process.temperature"].properties)
    assert props["engUnit"].value == "degC"
    assert props["Quality"].value == 192


def test_aliases_are_unique_across_the_edge_node(tmp_path: Path) -> None:
    _, _, births = online(tmp_path)
    aliases = [m.alias for b in births for m in payload(b).metrics if m.alias is not None]
    assert len(aliases) == len(set(aliases)) == 5  # rebirth + 3 filler + 1 capper


# -- DDATA ----------------------------------------------------------------------------------------


def test_ddata_carries_aliases_only_with_timestamps_and_increasing_seq(tmp_path: Path) -> None:
    s, _, births = online(tmp_path)
    aliases = {m.name: m.alias for m in payload(births[1]).metrics}
    (ddata,) = s.data(
        [sample("state.run", False, ts=T0 + 10), sample("counter.good", 7, ts=T0 + 11)], T0 + 20, historical=False
    ).messages
    assert ddata.kind is MessageType.DDATA
    assert ddata.qos == 1  # QoS 1: the outbox waits for PUBACK (see the session's docstring)
    p = payload(ddata)
    assert p.seq == len(births)  # topics-dbirth-seq / sequence continues after the births
    assert all(m.name is None for m in p.metrics)  # payloads-alias-data-cmd-requirement
    assert [m.alias for m in p.metrics] == [aliases["state.run"], aliases["counter.good"]]
    assert [m.timestamp for m in p.metrics] == [T0 + 10, T0 + 11]  # payloads-name-birth-data-requirement
    assert all(m.datatype is None for m in p.metrics)  # payloads-metric-datatype-not-req
    assert not any(m.is_historical for m in p.metrics)


def test_payloads_sequence_num_incrementing_wraps_to_zero(tmp_path: Path) -> None:
    s, _, births = online(tmp_path)
    seqs: list[int | None] = [payload(b).seq for b in births]
    for n in range(300):
        (message,) = s.data([sample("counter.good", n)], T0 + n, historical=False).messages
        seqs.append(payload(message).seq)
    assert seqs[:3] == [0, 1, 2]
    assert all(a is not None and b == (a + 1) % 256 for a, b in itertools.pairwise(seqs))
    assert 0 in seqs[3:]  # it wrapped


def test_replayed_data_is_historical_and_bad_quality_carries_its_code(tmp_path: Path) -> None:
    s, _, _ = online(tmp_path)
    bad = sample("process.temperature", None, quality=Quality.BAD, protocol_code=0x80340000)
    (message,) = s.data([bad], T0, historical=True).messages
    (metric,) = payload(message).metrics
    assert metric.is_historical
    assert metric.value is None
    props = dict(metric.properties)
    assert props["Quality"].value == 0
    assert props["plantline.protocol_code"].value == 0x80340000


def test_one_ddata_per_device(tmp_path: Path) -> None:
    s, _, _ = online(tmp_path)
    samples = [sample("state.run", True), sample("fault.code", -3, device="capper")]
    messages = s.data(samples, T0, historical=False).messages
    assert [parse_topic(m.topic).device_id for m in messages] == ["filler", "capper"]
    raw = payload(messages[1]).metrics[0].value
    assert apply_datatype(raw, DataType.Int32) == -3  # the host reads it with the DBIRTH's datatype


# -- devices, rebirth, primary host ---------------------------------------------------------------


def test_device_lost_gives_ddeath_and_return_gives_dbirth(tmp_path: Path) -> None:
    s, _, _ = online(tmp_path)
    (death,) = s.device_offline("capper", T0 + 5)
    assert death.kind is MessageType.DDEATH
    assert parse_topic(death.topic).device_id == "capper"
    assert payload(death).seq is not None
    assert s.device_offline("capper", T0 + 6) == []  # no second DDEATH
    with pytest.raises(RuntimeError, match="not born"):
        s.data([sample("fault.code", 1, device="capper")], T0, historical=False)
    (birth,) = s.device_online("capper", T0 + 9)
    assert birth.kind is MessageType.DBIRTH


def test_rebirth_keeps_bdseq_and_restarts_seq(tmp_path: Path) -> None:
    # Regression: UMH bumps bdSeq on rebirth; the spec keeps the session's bdSeq.
    s, will, births = online(tmp_path, rebirth_debounce_ms=1000)
    s.data([sample("state.run", True)], T0 + 1, historical=False)
    again = s.on_rebirth_request(T0 + 5000)
    assert [m.kind for m in again] == [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DBIRTH]
    assert payload(again[0]).seq == 0
    assert metric_value(payload(again[0]), "bdSeq") == metric_value(payload(will), "bdSeq")
    assert s.on_rebirth_request(T0 + 5500) == []  # debounced ...
    assert s.on_rebirth_request(T0 + 5700) == []
    assert s.due_rebirth(T0 + 5900) == []
    later = s.due_rebirth(T0 + 6000)  # ... not dropped: one rebirth when the window ends
    assert [m.kind for m in later] == [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DBIRTH]
    assert s.due_rebirth(T0 + 9000) == []
    assert len(births) == 3
    assert s.rebirths == 2


def test_rebirths_count_births_within_one_bdseq_session_only(tmp_path: Path) -> None:
    s, _, _ = online(tmp_path, rebirth_debounce_ms=0)
    assert s.rebirths == 0  # the session's first births are no rebirth
    s.on_disconnected()
    s.prepare_connect()  # a new bdSeq session: its births are no rebirth either
    s.on_connected(T0 + 10)
    assert s.rebirths == 0
    s.on_rebirth_request(T0 + 20)
    assert s.rebirths == 1


def test_births_for_another_reason_answer_a_deferred_rebirth(tmp_path: Path) -> None:
    s, _, _ = online(tmp_path, rebirth_debounce_ms=1000)
    assert s.on_rebirth_request(T0 + 100) == []  # deferred
    s.on_disconnected()
    s.prepare_connect()
    assert next(m.kind for m in s.on_connected(T0 + 500)) is MessageType.NBIRTH
    assert s.due_rebirth(T0 + 5000) == []


def test_message_flow_edge_node_birth_publish_subscribe_waits_for_primary_host(tmp_path: Path) -> None:
    s = session(tmp_path, primary_host_id="scada")
    s.prepare_connect()
    s.device_online("filler", T0)
    assert ("spBv1.0/STATE/scada", 1) in s.subscriptions()
    assert s.on_connected(T0) == []  # no births before the host is ONLINE
    assert s.phase is Phase.WAITING_FOR_HOST
    assert s.on_host_state(HostState(True, T0)) is HostNews.ONLINE
    assert s.births_allowed  # the host is ONLINE: births may go
    births = s.births(T0 + 1)
    assert [b.kind for b in births] == [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DBIRTH]
    assert s.can_publish_data
    assert s.on_host_state(HostState(False, T0 + 5)) is HostNews.WENT_OFFLINE
    assert not s.can_publish_data  # data stays in the outbox while the host is OFFLINE


def test_message_flow_edge_node_birth_publish_phid_wait_timestamp_older_states_change_nothing(
    tmp_path: Path,
) -> None:
    s = session(tmp_path, primary_host_id="scada")
    s.prepare_connect()
    s.on_connected(T0)
    assert s.on_host_state(HostState(False, T0 + 10)) is HostNews.WENT_OFFLINE
    assert s.on_host_state(HostState(True, T0 + 5)) is HostNews.STALE  # a retained STATE of a past session
    assert not s.births_allowed
    assert s.on_host_state(HostState(False, T0 + 10)) is HostNews.STILL_OFFLINE  # the same, delivered again
    s.on_disconnected()  # what was seen outlives the MQTT session
    s.prepare_connect()
    s.on_connected(T0 + 20)
    assert s.on_host_state(HostState(False, T0 + 10)) is HostNews.STILL_OFFLINE
    assert s.on_host_state(HostState(True, T0 + 30)) is HostNews.ONLINE
    assert s.births_allowed


def test_clean_shutdown_publishes_ndeath_with_the_session_bdseq(tmp_path: Path) -> None:
    s, will, _ = online(tmp_path)
    (death,) = s.shutdown(T0 + 100)
    assert death.kind is MessageType.NDEATH
    assert death.qos == 1
    assert metric_value(payload(death), "bdSeq") == metric_value(payload(will), "bdSeq")
    assert s.shutdown(T0 + 200) == []


def test_edge_subscribes_to_its_own_commands(tmp_path: Path) -> None:
    subs = dict(session(tmp_path).subscriptions())
    assert subs == {"spBv1.0/site1/NCMD/line1": 1, "spBv1.0/site1/DCMD/line1/+": 1}  # edge-subscribe-ncmd/dcmd


# -- births of every device, and data that no longer fits -----------------------------------------


def test_payloads_dbirth_order_births_name_every_device_right_after_the_nbirth(tmp_path: Path) -> None:
    s = session(tmp_path)
    s.prepare_connect()
    s.remember([sample("fault.code", 4, device="capper")])
    s.set_reachable("filler", True)  # the capper's PLC is not reachable (yet)
    births = s.on_connected(T0)
    assert [(b.kind, parse_topic(b.topic).device_id) for b in births] == [
        (MessageType.NBIRTH, None),
        (MessageType.DBIRTH, "filler"),
        (MessageType.DBIRTH, "capper"),
    ]
    assert [payload(b).seq for b in births] == [0, 1, 2]
    (code,) = payload(births[2]).metrics
    assert code.value is None  # unreachable: no current value (is_null), not the last one known
    assert dict(code.properties)["Quality"].value == 0  # bad
    assert s.device_is_born("capper")
    assert s.device_online("capper", T0 + 5) == []  # already born: its values come as DDATA


def test_data_that_no_longer_fits_the_configuration_is_refused_and_the_rest_published(tmp_path: Path) -> None:
    s, _, births = online(tmp_path)
    samples = [
        sample("state.run", True),
        sample("process.removed", 1.0),  # a tag no longer configured
        sample("counter.good", "not a number"),  # retyped: does not fit UInt32
        sample("counter.good", 5),
        sample("state.run", False, device="gone"),  # a device no longer configured
    ]
    made = s.data(samples, T0, historical=True)
    (message,) = made.messages
    assert [m.value for m in payload(message).metrics] == [True, 5]
    assert payload(message).seq == len(births)  # no seq is lost to what was refused
    assert {reason: [x.signal for x in refused] for reason, refused in made.rejected.items()} == {
        Rejected.UNKNOWN_SIGNAL: ["process.removed"],
        Rejected.TYPE_MISMATCH: ["counter.good"],
        Rejected.UNKNOWN_DEVICE: ["state.run"],
    }
    nothing = s.data([sample("process.removed", 2.0)], T0, historical=False)
    assert nothing.messages == []
    (next_message,) = s.data([sample("counter.good", 6)], T0, historical=False).messages
    assert payload(next_message).seq == len(births) + 1


# -- where UInt32 travels -------------------------------------------------------------------------


@pytest.mark.parametrize("uint32_field", ["int_value", "long_value"])
def test_dbirth_and_ddata_carry_uint32_in_the_configured_field(tmp_path: Path, uint32_field: str) -> None:
    from plantline.connectors.sparkplug import _sparkplug_b_pb2 as pb

    s = session(tmp_path, uint32_field=uint32_field)
    s.prepare_connect()
    s.remember([sample("counter.good", 4_000_000_000)])
    s.device_online("filler", T0)
    births = s.on_connected(T0)
    dbirth = next(b for b in births if b.kind is MessageType.DBIRTH and parse_topic(b.topic).device_id == "filler")
    (ddata,) = s.data([sample("counter.good", 4_000_000_001, ts=T0 + 1)], T0 + 2, historical=False).messages
    birth_metric = next(m for m in pb.Payload.FromString(dbirth.payload).metrics if m.name == "counter.good")
    (data_metric,) = pb.Payload.FromString(ddata.payload).metrics
    assert birth_metric.WhichOneof("value") == data_metric.WhichOneof("value") == uint32_field
    assert metric_value(payload(dbirth), "counter.good") == 4_000_000_000
    assert apply_datatype(payload(ddata).metrics[0].value, DataType.UInt32) == 4_000_000_001


def test_the_session_takes_uint32_field_from_the_config(tmp_path: Path) -> None:
    from plantline.connectors.config import parse_config

    tags = [tag.model_dump() for tag in TAGS["filler"]]
    data = {
        "sparkplug": {"group_id": "site1", "edge_node_id": "line1", "uint32_field": "long_value"},
        "brokers": [{"host": "127.0.0.1", "insecure_plaintext": True}],
        "outbox": {"directory": str(tmp_path / "outbox")},
        "state_directory": str(tmp_path / "state"),
        "devices": [{"id": "filler", "protocol": "opcua", "endpoint": "opc.tcp://x:4840/", "tags": tags}],
    }
    assert EdgeNodeSession.from_config(parse_config(data, source="c")).uint32_field == "long_value"
