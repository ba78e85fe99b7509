"""The outbox's contract with sources and the publisher: order, acks, requeue, bounds, pressure."""

from __future__ import annotations

import contextlib
import enum
import math
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantline.connectors import outbox as outbox_module
from plantline.connectors.config import OutboxSettings
from plantline.connectors.outbox import (
    ROW_OVERHEAD_BYTES,
    Dropped,
    DropReason,
    Outbox,
    OutboxError,
    OutboxLockedError,
    decode_batch,
    encode_batch,
)
from plantline.connectors.samples import Quality, Sample, Value

T0 = 1_700_000_000.0


class FakeClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def numbered(first: int, count: int = 1, device: str = "filler") -> list[Sample]:
    return [
        Sample(device, "counter.good", n, Quality.GOOD, 1_700_000_000_000 + n, None)
        for n in range(first, first + count)
    ]


def values(outbox: Outbox, max_samples: int = 10_000) -> list[list[Value | None]]:
    return [[s.value for s in batch.samples] for batch in outbox.pending(max_samples)]


def open_outbox(
    directory: Path,
    *,
    clock: FakeClock | None = None,
    max_bytes: int = 1 << 20,
    max_age_s: float = 3600.0,
    high_watermark: float = 0.8,
    low_watermark: float = 0.5,
) -> Outbox:
    return Outbox(
        directory,
        max_bytes=max_bytes,
        max_age_s=max_age_s,
        high_watermark=high_watermark,
        low_watermark=low_watermark,
        clock=clock or FakeClock(),
    )


def stored_size(samples: list[Sample]) -> int:
    return len(encode_batch(samples)) + ROW_OVERHEAD_BYTES


# -- order, acks, requeue -----------------------------------------------------------------------


def test_pending_returns_batches_oldest_first_and_each_once_while_in_flight(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        ids = [outbox.append(numbered(10 * i, 3)) for i in range(4)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 4
        first = outbox.pending(6)
        assert [b.id for b in first] == ids[:2]
        assert [[s.value for s in b.samples] for b in first] == [[0, 1, 2], [10, 11, 12]]
        assert not any(b.recovered for b in first)
        second = outbox.pending(100)
        assert [b.id for b in second] == ids[2:]
        assert outbox.pending(100) == []
        assert outbox.stats().in_flight_batches == 4


def test_pending_gives_one_batch_even_when_it_is_larger_than_asked(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        big = outbox.append(numbered(0, 50))
        outbox.append(numbered(50, 1))
        assert [b.id for b in outbox.pending(10)] == [big]


def test_ack_removes_batches_and_ignores_unknown_ids(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        ids = [outbox.append(numbered(i)) for i in range(3)]
        outbox.pending(100)
        outbox.ack([ids[1], 999_999, -5])
        outbox.ack([ids[1]])  # twice: still harmless
        outbox.ack([])
        stats = outbox.stats()
        assert (stats.batches, stats.samples, stats.in_flight_batches) == (2, 2, 2)
        outbox.requeue_in_flight()
        assert values(outbox) == [[0], [2]]


def test_ids_are_never_reused_so_a_late_ack_cannot_delete_newer_data(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        old = outbox.append(numbered(0))
        outbox.ack([old])
        assert outbox.stats().batches == 0
        new = outbox.append(numbered(1))
        assert new > old
        outbox.ack([old])  # the late, duplicate PUBACK
        assert values(outbox) == [[1]]
    with open_outbox(tmp_path) as reopened:
        assert reopened.append(numbered(2)) > new


def test_requeue_hands_in_flight_batches_out_again_before_newer_ones(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        a, b, c = (outbox.append(numbered(i)) for i in range(3))
        assert [x.id for x in outbox.pending(2)] == [a, b]
        outbox.ack([a])
        d = outbox.append(numbered(3))
        outbox.requeue_in_flight()
        assert outbox.stats().in_flight_batches == 0
        assert [x.id for x in outbox.pending(100)] == [b, c, d]


def test_ack_arriving_out_of_order_keeps_the_rest_in_order(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        ids = [outbox.append(numbered(i)) for i in range(5)]
        outbox.pending(100)
        outbox.ack([ids[3], ids[0]])
        outbox.requeue_in_flight()
        assert [x.id for x in outbox.pending(100)] == [ids[1], ids[2], ids[4]]


def test_batches_stored_before_a_restart_come_back_recovered_in_order(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        old = [outbox.append(numbered(i)) for i in range(3)]
        outbox.pending(1)  # in flight when the process stops: it must come back
        outbox.ack([old[1]])
    with open_outbox(tmp_path) as outbox:
        new = outbox.append(numbered(3))
        batches = outbox.pending(100)
        assert [(b.id, b.recovered) for b in batches] == [(old[0], True), (old[2], True), (new, False)]


# -- bounds -------------------------------------------------------------------------------------


def test_max_bytes_drops_the_oldest_batches_and_counts_them(tmp_path: Path) -> None:
    batch = numbered(0, 10)
    size = stored_size(batch)
    with open_outbox(tmp_path, max_bytes=size * 3 + size // 2) as outbox:
        ids = [outbox.append(numbered(10 * i, 10)) for i in range(5)]
        stats = outbox.stats()
        assert stats.batches == 3
        assert stats.bytes == 3 * size
        assert stats.dropped == {DropReason.MAX_BYTES: Dropped(samples=20, bytes=2 * size)}
        assert (stats.dropped_samples, stats.dropped_bytes) == (20, 2 * size)
        assert [b.id for b in outbox.pending(1000)] == ids[2:]


def test_the_newest_batch_is_kept_even_when_it_alone_exceeds_max_bytes(tmp_path: Path) -> None:
    with open_outbox(tmp_path, max_bytes=300) as outbox:
        small = outbox.append(numbered(0, 2))
        huge = outbox.append(numbered(100, 100))
        assert outbox.fill > 1
        assert outbox.stats().fill == 1.0
        assert [b.id for b in outbox.pending(1000)] == [huge]
        assert outbox.stats().dropped[DropReason.MAX_BYTES].samples == 2
        assert small not in [b.id for b in outbox.pending(1000)]


def test_in_flight_batches_are_dropped_too_and_their_late_ack_is_ignored(tmp_path: Path) -> None:
    size = stored_size(numbered(0, 10))
    with open_outbox(tmp_path, max_bytes=2 * size) as outbox:
        first = outbox.append(numbered(0, 10))
        outbox.pending(100)
        outbox.append(numbered(10, 10))
        outbox.append(numbered(20, 10))
        assert outbox.stats().in_flight_batches == 0
        outbox.ack([first])
        assert values(outbox) == [list(range(10, 20)), list(range(20, 30))]


def test_max_age_drops_old_batches_oldest_first_on_append_and_on_pending(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_outbox(tmp_path, clock=clock, max_age_s=100.0) as outbox:
        outbox.append(numbered(0, 2))
        clock.now += 60
        outbox.append(numbered(2, 2))
        clock.now += 50  # the first is 110 s old, the second 50 s
        third = outbox.append(numbered(4, 1))
        stats = outbox.stats()
        assert stats.dropped == {DropReason.MAX_AGE: Dropped(samples=2, bytes=stored_size(numbered(0, 2)))}
        assert stats.oldest_age_s == 50
        clock.now += 51  # nothing appended: pending itself leaves the expired batch behind
        assert [b.id for b in outbox.pending(100)] == [third]
        assert outbox.stats().dropped[DropReason.MAX_AGE].samples == 4


def test_the_appended_batch_survives_even_with_a_clock_far_ahead(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_outbox(tmp_path, clock=clock, max_age_s=10.0) as outbox:
        outbox.append(numbered(0))
        clock.now += 1e6
        newest = outbox.append(numbered(1))
        assert [b.id for b in outbox.pending(10)] == [newest]


def test_bounds_are_applied_on_open_when_the_limits_shrank(tmp_path: Path) -> None:
    with open_outbox(tmp_path, max_bytes=1 << 20) as outbox:
        for i in range(10):
            outbox.append(numbered(10 * i, 10))
    size = stored_size(numbered(0, 10))
    with open_outbox(tmp_path, max_bytes=4 * size) as outbox:
        assert outbox.stats().dropped[DropReason.MAX_BYTES].samples == 60
        assert [b.samples[0].value for b in outbox.pending(1000)] == [60, 70, 80, 90]


# -- pressure -----------------------------------------------------------------------------------


def test_pressure_turns_on_at_the_high_watermark_and_off_only_below_the_low_one(tmp_path: Path) -> None:
    size = stored_size(numbered(0, 10))
    with open_outbox(tmp_path, max_bytes=10 * size, high_watermark=0.8, low_watermark=0.5) as outbox:
        seen: list[tuple[float, bool]] = []

        def note() -> None:
            seen.append((round(outbox.fill, 3), outbox.pressure))
            assert outbox.stats().pressure == outbox.pressure

        ids = []
        for i in range(8):
            ids.append(outbox.append(numbered(10 * i, 10)))
            note()
        outbox.ack(ids[:2])  # between the watermarks: still on
        note()
        outbox.ack(ids[2:3])  # at the low watermark: not yet below
        note()
        outbox.ack(ids[3:4])
        note()
        outbox.append(numbered(80, 10))  # rising again: stays off until the high watermark
        note()
        assert seen == [
            (0.1, False),
            (0.2, False),
            (0.3, False),
            (0.4, False),
            (0.5, False),
            (0.6, False),
            (0.7, False),
            (0.8, True),
            (0.6, True),
            (0.5, True),
            (0.4, False),
            (0.5, False),
        ]


def test_pressure_is_restored_on_open(tmp_path: Path) -> None:
    size = stored_size(numbered(0, 10))
    with open_outbox(tmp_path, max_bytes=10 * size) as outbox:
        for i in range(9):
            outbox.append(numbered(10 * i, 10))
    with open_outbox(tmp_path, max_bytes=10 * size) as outbox:
        assert outbox.pressure


# -- what a batch carries -----------------------------------------------------------------------


class Mode(enum.IntEnum):
    AUTO = 3


VALUES: list[Value | None] = [
    True,
    False,
    0,
    1,
    -1,
    2**31,
    -(2**31) - 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,  # uint64 from a PLC: beyond int64, still exact
    -(2**200),
    0.0,
    -0.0,
    1.5,
    -2.25e-300,
    math.inf,
    -math.inf,
    "",
    "ok",
    "Füllstand ✓ 圧力 🏭",
    "x" * 70_000,
]


def same(a: Value | None, b: Value | None) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


def test_every_value_type_quality_and_protocol_code_round_trips_through_disk(tmp_path: Path) -> None:
    sent = [
        Sample(f"dev-{i % 3}", "process.level", value, quality, -5 + i, code)
        for i, value in enumerate(VALUES)
        for quality in Quality
        for code in (None, 0, 0x80350000, -(2**63))
    ]
    sent.append(Sample("filler", "fault.code", None, Quality.BAD, 1_700_000_000_000, 0x80310000))
    sent.append(Sample("filler", "process.nan", math.nan, Quality.UNCERTAIN, 2**63 - 1, None))
    sent.append(Sample("ファイラー", "state.run", True, Quality.GOOD, 0, None))
    with open_outbox(tmp_path, max_bytes=64 << 20) as outbox:
        batch_id = outbox.append(sent)
    with open_outbox(tmp_path, max_bytes=64 << 20) as outbox:
        [batch] = outbox.pending(len(sent))
    assert batch.id == batch_id
    assert len(batch.samples) == len(sent)
    for got, want in zip(batch.samples, sent, strict=True):
        assert (got.device, got.signal, got.quality, got.source_ts_ms) == (
            want.device,
            want.signal,
            want.quality,
            want.source_ts_ms,
        )
        assert got.protocol_code == want.protocol_code
        assert type(got.quality) is Quality
        assert same(got.value, want.value), (got, want)


@pytest.mark.parametrize("quality", list(Quality))
@pytest.mark.parametrize(
    "column",
    [
        [0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63)],
        [0.0, -0.0, 1.5, -2.25e-300, math.inf, -math.inf, math.nan],
    ],
    ids=["int64", "float64"],
)
def test_a_batch_of_one_device_quality_and_number_type_is_stored_by_column(
    quality: Quality, column: list[Value]
) -> None:
    sent = [
        Sample("press", f"process.p{i % 3}", value, quality, 1_700_000_000_000 - i, None)
        for i, value in enumerate(column)
    ]
    body = encode_batch(sent)
    assert body[0] == 2  # format 2
    got = decode_batch(body)
    assert all(type(s) is Sample and type(s.quality) is Quality for s in got)
    assert [(s.device, s.signal, s.quality, s.source_ts_ms, s.protocol_code) for s in got] == [
        (s.device, s.signal, s.quality, s.source_ts_ms, s.protocol_code) for s in sent
    ]
    assert all(same(g.value, w.value) for g, w in zip(got, sent, strict=True))


@pytest.mark.parametrize("wide", [False, True])
def test_format_2_columns_are_little_endian_and_of_fixed_widths(wide: bool) -> None:
    # Written with struct's standard sizes, not array's native ones: the layout cannot follow the platform.
    count = 0x10000 if wide else 3  # more than 65,535 names (the device's too) make 4-byte signal indices
    sent = [Sample("press", f"process.p{i}", -i, Quality.GOOD, 1_700_000_000_000 + i, None) for i in range(count)]
    body = encode_batch(sent)
    assert body[0] == 2
    index = "I" if wide else "H"
    columns = (
        struct.pack(f"<{count}{index}", *range(1, count + 1))  # name 0 is the device
        + struct.pack(f"<{count}q", *(s.source_ts_ms for s in sent))
        + struct.pack(f"<{count}q", *(s.value for s in sent))
    )
    assert body.endswith(columns)
    assert decode_batch(body) == tuple(sent)


def test_a_column_width_the_platform_lacks_is_refused_at_import() -> None:
    assert outbox_module._typecode(4, "HIL") == "I"
    with pytest.raises(ImportError, match="no array typecode of 3 bytes among 'HIL'"):
        outbox_module._typecode(3, "HIL")


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s._replace(device="other"),  # a second device
        lambda s: s._replace(quality=Quality.BAD),  # a second quality
        lambda s: s._replace(protocol_code=0x80350000),  # a protocol code
        lambda s: s._replace(value=1.5),  # a float among ints
        lambda s: s._replace(value=True),  # a bool among ints
        lambda s: s._replace(value=2**63),  # beyond int64
        lambda s: s._replace(value=None),
    ],
    ids=["device", "quality", "code", "float", "bool", "bigint", "none"],
)
def test_any_other_batch_is_stored_sample_by_sample(change: Any) -> None:
    sent = numbered(0, 4)
    sent[2] = change(sent[2])
    body = encode_batch(sent)
    assert body[0] == 1  # format 1
    assert all(same(g.value, w.value) and g == w for g, w in zip(decode_batch(body), sent, strict=True))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["press", "capper"]),
            st.sampled_from(["state.run", "process.t", "counter.good"]),
            st.one_of(
                st.integers(min_value=-(2**64), max_value=2**64),
                st.floats(allow_nan=False),
                st.booleans(),
                st.none(),
                st.text(max_size=3),
            ),
            st.sampled_from(list(Quality)),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        ),
        min_size=1,
        max_size=40,
    ),
    st.booleans(),
)
def test_every_batch_round_trips_whichever_format_takes_it(rows: list[tuple[Any, ...]], uniform: bool) -> None:
    sent = [Sample(*row) for row in rows]
    if uniform:  # the batch format 2 is for: one device and quality, no codes, all int or all float
        first = sent[0]
        kind: type[int] | type[float] = float if type(first.value) is float else int
        sent = [
            s._replace(device=first.device, quality=first.quality, protocol_code=None, value=kind(i))
            for i, s in enumerate(sent)
        ]
    got = decode_batch(encode_batch(sent))
    assert got == tuple(sent)
    assert all(type(g.value) is type(w.value) and type(g.quality) is Quality for g, w in zip(got, sent, strict=True))


def test_subclassed_values_are_stored_as_their_base_type() -> None:
    [sample] = decode_batch(encode_batch([Sample("d", "state.run", Mode.AUTO, Quality.GOOD, 1)]))
    assert sample.value == 3
    assert type(sample.value) is int


def test_a_batch_with_more_than_65535_names_uses_wide_indices() -> None:
    samples = [Sample(f"d{i}", f"process.p{i}", i, Quality.GOOD, i) for i in range(33_000)]
    assert decode_batch(encode_batch(samples)) == tuple(samples)
    by_column = [Sample("press", f"process.p{i}", i, Quality.GOOD, i) for i in range(70_000)]
    body = encode_batch(by_column)
    assert body[0] == 2  # format 2
    assert body[1] == 1  # wide indices
    assert decode_batch(body) == tuple(by_column)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (Sample("d", "s", [1], Quality.GOOD, 1), r"samples\[1\]\.value: list is not bool"),  # type: ignore[arg-type]
        (Sample("d", "s", "\ud800", Quality.GOOD, 1), r"samples\[1\]\.value: not encodable as UTF-8"),
        (Sample("d\ud800", "s", 1, Quality.GOOD, 1), r"samples\[1\]\.device: not encodable"),
        (Sample("d", "s", 1, "great", 1), r"samples\[1\]\.quality: 'great' is not a Quality"),  # type: ignore[arg-type]
        (Sample("d", "s", 1, Quality.GOOD, 2**63), r"samples\[1\]\.source_ts_ms: expected a 64-bit integer"),
        (Sample("d", "s", 1, Quality.GOOD, 1.5), r"samples\[1\]\.source_ts_ms: expected a 64-bit integer"),  # type: ignore[arg-type]
        (Sample("d", "s", 1, Quality.GOOD, 1, 2**64), r"samples\[1\]\.protocol_code: expected a 64-bit integer"),
    ],
)
def test_a_sample_that_cannot_be_stored_is_refused_by_index_and_nothing_is_stored(
    tmp_path: Path, sample: Sample, message: str
) -> None:
    with open_outbox(tmp_path) as outbox:
        with pytest.raises(ValueError, match=message):
            outbox.append([*numbered(0), sample])
        assert outbox.stats().batches == 0
        with pytest.raises(ValueError, match="empty batch"):
            outbox.append([])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_age_s": 0.0}, "max_age_s"),
        ({"high_watermark": 0.5, "low_watermark": 0.5}, "low_watermark, high_watermark"),
        ({"high_watermark": 1.5}, "low_watermark, high_watermark"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(tmp_path: Path, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        open_outbox(tmp_path, **overrides)


def test_a_second_process_cannot_open_the_same_outbox_while_it_is_open(tmp_path: Path) -> None:
    with open_outbox(tmp_path), pytest.raises(OutboxLockedError, match="another process"):
        open_outbox(tmp_path)
    open_outbox(tmp_path).close()  # released on close


def test_after_close_the_outbox_refuses_work_but_a_late_ack_is_ignored(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    batch_id = outbox.append(numbered(0))
    outbox.close()
    outbox.close()
    outbox.ack([batch_id])  # paho's PUBACK racing the shutdown: kept, replayed later
    with pytest.raises(OutboxError, match="closed"):
        outbox.append(numbered(1))
    with open_outbox(tmp_path) as reopened:
        assert values(reopened) == [[0]]


def test_power_loss_durability_is_an_explicit_choice(tmp_path: Path) -> None:
    with open_outbox(tmp_path / "normal") as outbox:
        # peeking at the private connection: the pragma is the whole point of the flag
        assert outbox._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    durable = Outbox(
        tmp_path / "full",
        max_bytes=1 << 20,
        max_age_s=60.0,
        high_watermark=0.8,
        low_watermark=0.5,
        durable_against_power_loss=True,
    )
    with durable:
        assert durable._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        durable.append(numbered(0))
        assert values(durable) == [[0]]


def test_from_settings_uses_the_connector_configuration(tmp_path: Path) -> None:
    settings = OutboxSettings(directory=tmp_path / "outbox", max_bytes=2 << 20, high_watermark=0.9, low_watermark=0.2)
    with Outbox.from_settings(settings, clock=FakeClock()) as outbox:
        assert (outbox.max_bytes, outbox.max_age_s, outbox.high_watermark, outbox.low_watermark) == (
            2 << 20,
            7 * 24 * 3600.0,
            0.9,
            0.2,
        )
        outbox.append(numbered(0))
    assert (tmp_path / "outbox" / "outbox.db").exists()


def test_claim_hands_out_a_fresh_batch_only_when_nothing_older_waits(tmp_path: Path) -> None:
    from plantline.connectors.outbox import Outbox
    from plantline.connectors.samples import Quality, Sample

    def batch(n: int) -> list[Sample]:
        return [Sample("d", "process.x", n, Quality.GOOD, 1_000 + n)]

    with Outbox(tmp_path, max_bytes=1 << 20, max_age_s=3600, high_watermark=0.8, low_watermark=0.5) as outbox:
        first = outbox.append(batch(1))
        second = outbox.append(batch(2))
        assert not outbox.claim(second)  # the first still waits: order comes first
        assert [b.id for b in outbox.pending(10)] == [first, second]
        third = outbox.append(batch(3))
        assert outbox.claim(third)  # nothing older waits any more
        assert not outbox.claim(third)  # once
        assert outbox.pending(10) == []  # a claimed batch is not handed out again
        outbox.requeue_in_flight()  # the session dropped before any PUBACK
        assert [b.id for b in outbox.pending(10)] == [first, second, third]
        outbox.ack([first, second, third])
        assert not outbox.claim(999)  # unknown ids are not claimed
        fourth = outbox.append(batch(4))
        assert outbox.claim(fourth)
        outbox.requeue_in_flight()  # the fourth waits again ...
        fifth = outbox.append(batch(5))
        assert not outbox.claim(fifth)  # ... so the fifth may not overtake it
        assert [b.id for b in outbox.pending(10)] == [fourth, fifth]


# -- samples that no longer fit the configuration -------------------------------------------------


def unfit_rows(directory: Path) -> list[tuple[int, str, list[Value | None]]]:
    with contextlib.closing(sqlite3.connect(directory / "outbox.db")) as db:
        rows = db.execute("SELECT batch_id, reason, body FROM unfit ORDER BY batch_id, reason").fetchall()
    return [(batch_id, reason, [s.value for s in decode_batch(body)]) for batch_id, reason, body in rows]


def test_set_aside_keeps_unfit_samples_and_the_batch_until_the_rest_is_acknowledged(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        partly = outbox.append(numbered(0, 3))
        wholly = outbox.append(numbered(3, 2))
        kept = outbox.append(numbered(5))
        outbox.pending(100)
        outbox.set_aside(partly, {"unknown_signal": numbered(1, 2)}, remove=False)
        outbox.set_aside(partly, {"unknown_signal": numbered(1, 2)}, remove=False)  # again, after a restart
        outbox.set_aside(wholly, {"unknown_device": numbered(3, 1), "type_mismatch": numbered(4, 1)}, remove=True)
        stats = outbox.stats()
        assert (stats.batches, stats.samples, stats.in_flight_batches) == (2, 4, 2)
        outbox.ack([partly])
        outbox.requeue_in_flight()
        assert values(outbox) == [[5]]
        assert kept
    assert unfit_rows(tmp_path) == [
        (partly, "unknown_signal", [1, 2]),
        (wholly, "type_mismatch", [4]),
        (wholly, "unknown_device", [3]),
    ]


def test_the_unfit_table_keeps_the_newest_rows_and_appears_in_older_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_outbox(tmp_path) as outbox:
        ids = [outbox.append(numbered(n)) for n in range(5)]
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as db:
        db.execute("DROP TABLE unfit")  # as a file made before there was one
    monkeypatch.setattr(outbox_module, "UNFIT_KEEP", 3)
    clock = FakeClock()
    with open_outbox(tmp_path, clock=clock) as outbox:
        for batch_id in ids:
            clock.now += 1
            outbox.set_aside(batch_id, {"unknown_signal": numbered(batch_id)}, remove=True)
        assert outbox.stats().batches == 0
    assert [row[0] for row in unfit_rows(tmp_path)] == ids[2:]
