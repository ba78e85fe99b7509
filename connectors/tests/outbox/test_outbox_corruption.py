"""Damage on disk is detected, reported and set aside; the undamaged data is still delivered."""

from __future__ import annotations

import logging
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from plantline.connectors import outbox as outbox_module
from plantline.connectors.outbox import DB_NAME, CorruptionReport, Outbox, OutboxError
from plantline.connectors.samples import Quality, Sample

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def numbered(first: int, count: int = 3) -> list[Sample]:
    return [Sample("filler", "counter.total", n, Quality.GOOD, n, None) for n in range(first, first + count)]


class Reports(list[CorruptionReport]):
    """Collects what the outbox reports through `on_corrupt`."""


def open_outbox(directory: Path, reports: Reports | None = None) -> Outbox:
    return Outbox(
        directory,
        max_bytes=1 << 24,
        max_age_s=1e9,
        high_watermark=0.8,
        low_watermark=0.5,
        clock=lambda: T0,
        on_corrupt=(reports if reports is not None else Reports()).append,
    )


def filled(directory: Path, batches: int = 5) -> list[int]:
    with open_outbox(directory) as outbox:
        return [outbox.append(numbered(10 * i)) for i in range(batches)]


def tamper(directory: Path, statement: str, *args: object) -> None:
    """Change the stored rows behind the outbox's back, as a disk or a stray tool would."""
    db = sqlite3.connect(directory / DB_NAME)
    with db:
        db.execute(statement, args)
    db.close()


def stored_body(directory: Path, batch_id: int) -> bytes:
    db = sqlite3.connect(directory / DB_NAME)
    (body,) = db.execute("SELECT body FROM batch WHERE id = ?", (batch_id,)).fetchone()
    db.close()
    return bytes(body)


def quarantined(directory: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(directory / DB_NAME)
    rows = db.execute("SELECT id, reason FROM quarantine ORDER BY id").fetchall()
    db.close()
    return [(int(i), str(r)) for i, r in rows]


def test_flipped_bytes_in_a_row_are_quarantined_and_the_other_batches_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = filled(tmp_path)
    body = bytearray(stored_body(tmp_path, ids[2]))
    body[len(body) // 2] ^= 0xFF
    body[-1] ^= 0x01
    tamper(tmp_path, "UPDATE batch SET body = ? WHERE id = ?", bytes(body), ids[2])

    reports = Reports()
    with caplog.at_level(logging.WARNING), open_outbox(tmp_path, reports) as outbox:
        delivered = outbox.pending(1000)
        assert [b.id for b in delivered] == [ids[0], ids[1], ids[3], ids[4]]
        assert [s.value for s in delivered[2].samples] == [30, 31, 32]
        [report] = reports
        assert (report.kind, report.batch_id) == ("batch", ids[2])
        assert "CRC mismatch" in report.detail
        assert f"batch {ids[2]}" in caplog.text
        stats = outbox.stats()
        assert (stats.corrupt_batches, stats.batches, stats.samples) == (1, 4, 12)
        outbox.requeue_in_flight()
        assert ids[2] not in [b.id for b in outbox.pending(1000)]
    assert quarantined(tmp_path) == [(ids[2], report.detail.split(": ", 1)[1].removesuffix("; moved to quarantine"))]
    with open_outbox(tmp_path, reports) as outbox:
        assert len(outbox.pending(1000)) == 4
        assert len(reports) == 1  # reported once, not on every open


def rows_batch(first: int, count: int = 3) -> list[Sample]:
    """A batch the outbox stores sample by sample (format 1): its last value is None, not an int."""
    samples = numbered(first, count)
    samples[-1] = samples[-1]._replace(value=None)
    return samples


NAMES_AT = struct.calcsize("<BBII")  # both formats: the header, then the names
NAMES_SIZE = 2 * 4 + len(b"filler") + len(b"counter.total")


@pytest.mark.parametrize(
    ("layout", "damage", "expected"),
    [
        ("rows", "truncated", "undecodable"),
        ("rows", "trailing", "trailing bytes"),
        ("rows", "bad-quality", "undecodable"),
        ("rows", "bad-format", "unknown batch format"),
        ("rows", "count", "samples decoded"),
        ("columns", "truncated", "a column runs past the end"),
        ("columns", "trailing", "trailing bytes"),
        ("columns", "bad-quality", "quality bits 0x30"),
        ("columns", "bad-kind", "unknown column kind 9"),
        ("columns", "bad-index", "undecodable"),
        ("columns", "bad-format", "unknown batch format"),
        ("columns", "count", "samples decoded"),
    ],
)
def test_a_row_whose_crc_matches_but_whose_content_is_wrong_is_quarantined(
    tmp_path: Path, layout: str, damage: str, expected: str
) -> None:
    with open_outbox(tmp_path) as outbox:
        ids = [outbox.append(rows_batch(10 * i) if layout == "rows" else numbered(10 * i)) for i in range(3)]
    body = stored_body(tmp_path, ids[1])
    assert body[0] == (1 if layout == "rows" else 2)
    columns_at = NAMES_AT + NAMES_SIZE  # format 2: kind, quality bits, then the columns
    if damage == "truncated":
        body = body[:-3]
    elif damage == "trailing":
        body += b"\x00"
    elif damage == "bad-quality" and layout == "rows":
        tag_at = NAMES_AT + NAMES_SIZE + 4
        body = body[:tag_at] + bytes([body[tag_at] | 0x30]) + body[tag_at + 1 :]
    elif damage == "bad-quality":
        body = body[: columns_at + 1] + b"\x30" + body[columns_at + 2 :]
    elif damage == "bad-kind":
        body = body[:columns_at] + b"\x09" + body[columns_at + 1 :]
    elif damage == "bad-index":  # the first sample's signal is name 7 of 2
        body = body[: columns_at + 2] + struct.pack("<H", 7) + body[columns_at + 4 :]
    elif damage == "bad-format":
        body = b"\x09" + body[1:]
    if damage == "count":
        tamper(tmp_path, "UPDATE batch SET samples = 2 WHERE id = ?", ids[1])
    else:
        tamper(tmp_path, "UPDATE batch SET body = ?, crc = ? WHERE id = ?", body, zlib.crc32(body), ids[1])
    reports = Reports()
    with open_outbox(tmp_path, reports) as outbox:
        assert [b.id for b in outbox.pending(1000)] == [ids[0], ids[2]]
    assert [r.batch_id for r in reports] == [ids[1]]
    assert expected in reports[0].detail


def test_when_every_waiting_batch_is_damaged_pending_reports_them_and_returns_nothing(tmp_path: Path) -> None:
    ids = filled(tmp_path, 2)
    tamper(tmp_path, "UPDATE batch SET crc = crc + 1")
    reports = Reports()
    with open_outbox(tmp_path, reports) as outbox:
        assert outbox.pending(1) == []
        assert [r.batch_id for r in reports] == ids
        later = outbox.append(numbered(100))
        assert [b.id for b in outbox.pending(1)] == [later]


def test_the_quarantine_keeps_only_the_latest_damaged_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "QUARANTINE_KEEP", 2)
    ids = filled(tmp_path, 4)
    tamper(tmp_path, "UPDATE batch SET crc = crc + 1")
    with open_outbox(tmp_path) as outbox:
        assert outbox.pending(1000) == []
        assert outbox.stats().corrupt_batches == 4
    assert [i for i, _ in quarantined(tmp_path)] == ids[2:]


def test_garbage_over_the_whole_file_is_moved_aside_and_a_fresh_outbox_starts(tmp_path: Path) -> None:
    filled(tmp_path)
    database = tmp_path / DB_NAME
    garbage = bytes(range(256)) * (database.stat().st_size // 256 + 1)
    database.write_bytes(garbage)

    reports = Reports()
    with open_outbox(tmp_path, reports) as outbox:
        assert outbox.pending(1000) == []
        stats = outbox.stats()
        assert (stats.batches, stats.corrupt_files) == (0, 1)
        fresh = outbox.append(numbered(0))
        assert [b.id for b in outbox.pending(1000)] == [fresh]
    [report] = reports
    assert report.kind == "database"
    assert report.moved_to == tmp_path / "outbox.db.corrupt-20231114T221320Z"
    assert report.moved_to.read_bytes() == garbage  # kept, untouched, for forensics
    assert "moved to outbox.db.corrupt-20231114T221320Z" in report.detail

    database.write_bytes(b"not a database either" * 100)
    again = Reports()
    open_outbox(tmp_path, again).close()
    assert again[0].moved_to == tmp_path / "outbox.db.corrupt-20231114T221320Z-2"  # never overwrites the first
    assert report.moved_to.read_bytes() == garbage


def test_a_damaged_table_page_is_detected_at_open_and_moved_aside(tmp_path: Path) -> None:
    with open_outbox(tmp_path) as outbox:
        for i in range(300):  # enough rows for the table to need interior pages
            outbox.append(numbered(10 * i, 10))
    database = tmp_path / DB_NAME
    db = sqlite3.connect(database)
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'batch'").fetchone()
    db.close()
    with database.open("r+b") as raw:  # the header stays valid: SQLite opens the file
        raw.seek((root - 1) * page_size)
        raw.write(b"\xa5" * page_size)

    reports = Reports()
    with open_outbox(tmp_path, reports) as outbox:
        assert outbox.stats().batches == 0
    [report] = reports
    assert report.kind == "database"
    assert report.moved_to is not None
    assert report.moved_to.exists()


def test_a_newer_schema_is_refused_and_left_in_place(tmp_path: Path) -> None:
    filled(tmp_path, 1)
    tamper(tmp_path, "PRAGMA user_version = 99")
    with pytest.raises(OutboxError, match="schema version 99"):
        open_outbox(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
