"""The pure parts of the OPC UA source: subscription plan, deadbands, and DataValue -> Sample."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from plantline.connectors.config import Deadband, Device, Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sources.opcua import (
    UnsupportedValue,
    monitored_tags,
    normalise,
    plan_subscriptions,
    raw_deadband,
    sample_from_datavalue,
)

NOW_MS = 1_234_567_890_123
T_SOURCE = datetime(2025, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
T_SERVER = datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC)


def tag(**fields: Any) -> Tag:
    return Tag.model_validate({"signal": "process.temperature", "address": "ns=2;s=T", "datatype": "double", **fields})


def datavalue(
    value: Any,
    status: int = StatusCodes.Good,
    source: datetime | None = T_SOURCE,
    server: datetime | None = T_SERVER,
    variant_type: ua.VariantType | None = None,
) -> ua.DataValue:
    variant = ua.Variant(value, variant_type) if variant_type is not None else ua.Variant(value)
    return ua.DataValue(
        variant,
        ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=ua.DateTime.fromtimestamp(source.timestamp(), UTC) if source else None,
        ServerTimestamp=ua.DateTime.fromtimestamp(server.timestamp(), UTC) if server else None,
    )


# -- values ----------------------------------------------------------------------------------------


def test_numbers_are_scaled_and_offset() -> None:
    assert normalise(tag(scale=0.1, offset=-40.0), 1234) == pytest.approx(83.4)
    assert isinstance(normalise(tag(scale=0.1), 1234), float)
    assert normalise(tag(scale=2.0), 1.25) == 2.5


def test_identity_scaling_keeps_the_raw_type() -> None:
    assert normalise(tag(), 41) == 41
    assert type(normalise(tag(), 41)) is int  # counters stay integers
    assert type(normalise(tag(), 41.5)) is float


def test_bool_and_str_are_never_scaled() -> None:
    assert normalise(tag(scale=10.0, offset=1.0), True) is True
    assert normalise(tag(scale=10.0, offset=1.0), "recipe-7") == "recipe-7"


def test_datetime_becomes_epoch_milliseconds() -> None:
    assert normalise(tag(), T_SOURCE) == 1740830400250


@pytest.mark.parametrize("raw", [None, [1, 2, 3], b"\x00", ua.LocalizedText("x")])
def test_other_values_are_unsupported(raw: object) -> None:
    with pytest.raises(UnsupportedValue):
        normalise(tag(), raw)


# -- DataValue -> Sample -------------------------------------------------------------------------------


def test_good_value_with_source_timestamp() -> None:
    double = datavalue(21.5, variant_type=ua.VariantType.Double)
    sample = sample_from_datavalue("filler", tag(scale=2.0), double, NOW_MS)
    assert sample == Sample("filler", "process.temperature", 43.0, Quality.GOOD, 1740830400250, 0)


def test_timestamp_falls_back_to_server_then_now() -> None:
    only_server = sample_from_datavalue("d", tag(), datavalue(1.0, source=None), NOW_MS)
    assert only_server.source_ts_ms == 1740830401000
    neither = sample_from_datavalue("d", tag(), datavalue(1.0, source=None, server=None), NOW_MS)
    assert neither.source_ts_ms == NOW_MS


def test_bad_status_yields_no_value_but_keeps_the_code() -> None:
    sample = sample_from_datavalue("d", tag(), datavalue(99.0, StatusCodes.BadSensorFailure), NOW_MS)
    assert sample.value is None  # whatever the server left in the DataValue is not used
    assert sample.quality is Quality.BAD
    assert sample.protocol_code == StatusCodes.BadSensorFailure
    assert sample.source_ts_ms == 1740830400250


def test_uncertain_status_keeps_the_value() -> None:
    sample = sample_from_datavalue("d", tag(), datavalue(7.5, StatusCodes.UncertainLastUsableValue), NOW_MS)
    assert (sample.value, sample.quality, sample.protocol_code) == (
        7.5,
        Quality.UNCERTAIN,
        StatusCodes.UncertainLastUsableValue,
    )


def test_good_null_value_is_unsupported() -> None:
    with pytest.raises(UnsupportedValue):
        sample_from_datavalue("d", tag(), datavalue(None), NOW_MS)


# -- deadbands and the subscription plan -------------------------------------------------------------


def test_absolute_deadband_is_sent_in_raw_units() -> None:
    assert raw_deadband(tag(scale=0.1, deadband={"kind": "absolute", "value": 0.5})) == Deadband(
        kind="absolute", value=5.0
    )
    assert raw_deadband(tag(scale=-2.0, deadband={"kind": "absolute", "value": 1.0})) == Deadband(
        kind="absolute", value=0.5
    )
    assert raw_deadband(tag(deadband={"kind": "absolute", "value": 1.0})) == Deadband(kind="absolute", value=1.0)


def test_percent_deadband_is_sent_as_is() -> None:
    percent = Deadband(kind="percent", value=2.0)
    assert raw_deadband(tag(scale=0.1, deadband=percent.model_dump())) == percent
    assert raw_deadband(tag()) is None


def _device(**fields: Any) -> Device:
    tags = [
        {"signal": "state.run", "address": "ns=2;s=Filler.state.run", "datatype": "bool"},
        {"signal": "counter.total", "address": "ns=2;i=1001", "datatype": "uint32"},
    ]
    return Device.model_validate(
        {"id": "d", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840/", "tags": tags, **fields}
    )


def test_plan_has_one_subscription_per_sampling_interval_with_its_own_publishing_interval() -> None:
    device = _device(sampling_interval_ms=250, opcua={"publishing_interval_ms": 1000})
    tags = monitored_tags(device)
    assert [t.handle for t in tags] == [1, 2]
    assert tags[1].node_id.to_string() == "ns=2;i=1001"
    (plan,) = plan_subscriptions(device, tags)
    assert (plan.sampling_interval_ms, plan.publishing_interval_ms) == (250, 1000)
    assert [item.tag.signal for item in plan.items] == ["state.run", "counter.total"]


def test_tags_with_their_own_intervals_get_a_subscription_each() -> None:
    tags = [
        {"signal": "state.run", "address": "ns=2;s=F.run", "datatype": "bool"},
        {"signal": "process.slow", "address": "ns=2;s=F.slow", "datatype": "double", "sampling_interval_ms": 5000},
        {"signal": "process.fast", "address": "ns=2;s=F.fast", "datatype": "double", "sampling_interval_ms": 50},
        {"signal": "process.also_slow", "address": "ns=2;s=F.s2", "datatype": "double", "sampling_interval_ms": 5000},
    ]
    device = _device(sampling_interval_ms=250, opcua={"publishing_interval_ms": 100}, tags=tags)
    plans = plan_subscriptions(device, monitored_tags(device))
    # Publishing at 100 ms, or at the sampling interval where that is longer.
    assert [(p.sampling_interval_ms, p.publishing_interval_ms) for p in plans] == [(50, 100), (250, 250), (5000, 5000)]
    assert [[item.tag.signal for item in p.items] for p in plans] == [
        ["process.fast"],
        ["state.run"],
        ["process.slow", "process.also_slow"],
    ]


def test_slowdown_multiplies_both_intervals() -> None:
    device = _device(sampling_interval_ms=250, opcua={"publishing_interval_ms": 1000})
    (plan,) = plan_subscriptions(device, monitored_tags(device), slowdown=4.0)
    assert (plan.sampling_interval_ms, plan.publishing_interval_ms) == (1000, 4000)


def test_an_address_that_is_no_node_id_is_refused_by_position() -> None:
    # The config's pattern lets "ns=2;i=x1" through (s=.+ is any string) only for s=; forge one.
    device = _device()
    broken = device.model_copy(
        update={"tags": [device.tags[0], device.tags[1].model_copy(update={"address": "ns=x;i=1"})]}
    )
    with pytest.raises(ValueError, match=r"tags\[1\]\.address"):
        monitored_tags(broken)
