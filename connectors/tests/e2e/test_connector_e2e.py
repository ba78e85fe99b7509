"""The connector process end to end: OPC UA simulator -> connector -> mosquitto (mTLS) -> a host.

Everything is a real program on loopback; the connector runs as a subprocess so it can be
killed with SIGKILL like a crashed edge node.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from plantline.connectors.outbox import decode_batch
from plantline.connectors.sparkplug import DataType, MessageType, Metric, Payload, encode
from plantline_testing.sparkplug_reader import SparkplugReader, Value

pytestmark = [pytest.mark.peer, pytest.mark.slow]

GAP_LIMIT_MS = 1000  # consecutive values of a signal that updates every 50 ms


def _bdseq(reader: SparkplugReader, kind: MessageType, index: int = -1) -> object:
    payload = reader.of(kind)[index].payload
    return next(m.value for m in payload.metrics if m.name == "bdSeq")


def _unique(values: list[Value]) -> dict[tuple[str, int], Value]:
    return {(v.name, v.timestamp): v for v in values}


def _gaps(values: list[Value], name: str) -> list[tuple[int, int]]:
    stamps = sorted({v.timestamp for v in values if v.name == name})
    return [(a, b) for a, b in itertools.pairwise(stamps) if b - a > GAP_LIMIT_MS]


def test_births_data_rebirth_and_device_loss(line: Any) -> None:
    with line.reader() as reader:
        line.start_sim()
        line.start_connector()
        reader.wait_for(lambda: len(reader.of(MessageType.DDATA)) >= 5, 60, "DDATA from the filler")
        nbirth = reader.of(MessageType.NBIRTH)[0]
        assert nbirth.payload.seq == 0
        assert (nbirth.qos, nbirth.retain) == (0, False)
        dbirth = reader.of(MessageType.DBIRTH, "filler")[0]
        names = {m.name for m in dbirth.payload.metrics}
        assert names == {"process.temperature", "process.pressure", "process.fill_level", "counter.total"}
        temps = reader.values_of("filler", "process.temperature")
        assert temps
        assert all(isinstance(v.value, float) for v in temps)
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{line.metrics_port}{path}", timeout=5) as response:
                assert response.status == 200
        assert line.metric('plantline_mqtt_connected{broker="localhost:') == 1
        assert line.metric('plantline_source_connected{device="filler"}') == 1
        assert line.metric('plantline_sparkplug_messages_total{type="DDATA"}') >= 5
        assert line.metric("plantline_ingest_lag_seconds_count") >= 1
        totals = reader.values_of("filler", "counter.total")
        assert all(isinstance(v.value, int) and v.value >= 0 for v in totals)
        assert not reader.errors

        # NCMD Node Control/Rebirth: NBIRTH and DBIRTH again, with the same bdSeq.
        rebirth = Payload(
            timestamp=int(time.time() * 1000),
            seq=None,
            metrics=(Metric("Node Control/Rebirth", None, int(time.time() * 1000), DataType.Boolean, True),),
        )
        reader.publish("spBv1.0/site1/NCMD/line1", encode(rebirth))
        reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 2, 10, "a second NBIRTH")
        assert _bdseq(reader, MessageType.NBIRTH, 0) == _bdseq(reader, MessageType.NBIRTH, 1)
        assert line.metric("plantline_sparkplug_rebirths_total") == 1  # the first births were no rebirth
        assert line.metric("plantline_sparkplug_bdseq") == _bdseq(reader, MessageType.NBIRTH, 0)
        reader.wait_for(lambda: len(reader.of(MessageType.DBIRTH, "filler")) >= 2, 10, "a second DBIRTH")

        # The PLC goes away: DDEATH; it comes back: DBIRTH and data again.
        line.stop_sim()
        reader.wait_for(lambda: len(reader.of(MessageType.DDEATH, "filler")) >= 1, 30, "DDEATH")
        assert line.metric('plantline_source_connected{device="filler"}') == 0
        births = len(reader.of(MessageType.DBIRTH, "filler"))
        data = len(reader.of(MessageType.DDATA))
        line.start_sim()
        reader.wait_for(lambda: len(reader.of(MessageType.DBIRTH, "filler")) > births, 60, "DBIRTH on return")
        reader.wait_for(lambda: len(reader.of(MessageType.DDATA)) > data + 3, 30, "data after return")

        # A clean stop publishes NDEATH with the session's bdSeq.
        assert line.stop_connector() == 0
        reader.wait_for(lambda: len(reader.of(MessageType.NDEATH)) >= 1, 10, "NDEATH on a clean stop")
        assert _bdseq(reader, MessageType.NDEATH) == _bdseq(reader, MessageType.NBIRTH)
        assert not reader.errors


def test_zero_loss_when_the_broker_is_killed(line: Any) -> None:
    with line.reader(persistent=True) as reader:
        line.start_sim()
        line.start_connector()
        reader.wait_for(lambda: len(reader.values) >= 40, 60, "data before the outage")
        line.broker.kill()
        time.sleep(4)
        line.broker.start()
        reader.wait_for(lambda: any(v.historical for v in reader.values), 60, "replayed data after the outage")
        time.sleep(1)
        accepted = line.metric("plantline_samples_total")
        reader.wait_for(lambda: len(_unique(reader.values)) >= accepted, 60, f"{accepted} accepted samples")
        for name in ("process.temperature", "process.pressure", "process.fill_level"):
            assert _gaps(reader.values, name) == [], f"{name} lost samples"
        assert not reader.errors
        # At-least-once: duplicates are possible, and none is counted twice above.
        assert len(_unique(reader.values)) <= len(reader.values)


def test_zero_loss_when_the_connector_is_killed(line: Any, tmp_path: Path) -> None:
    with line.reader(persistent=True) as reader:
        line.start_sim()
        line.start_connector()
        reader.wait_for(lambda: len(reader.values) >= 40, 60, "data before the crash")
        line.broker.kill()  # let the outbox fill, so the crash leaves unpublished samples behind
        time.sleep(2)
        line.kill_connector()
        killed_at = int(time.time() * 1000)
        line.broker.start()
        # What the dead connector had accepted and not yet delivered:
        copy = tmp_path / "outbox-copy.db"
        shutil.copy(line.outbox_dir / "outbox.db", copy)
        for suffix in ("-wal", "-shm"):
            if (line.outbox_dir / f"outbox.db{suffix}").exists():
                shutil.copy(line.outbox_dir / f"outbox.db{suffix}", f"{copy}{suffix}")
        with sqlite3.connect(copy) as db:
            stored = [s for (body,) in db.execute("SELECT body FROM batch ORDER BY id") for s in decode_batch(body)]
        assert len(stored) > 20, "the crash should leave samples in the outbox"
        time.sleep(1)
        line.start_connector()
        wanted = {(s.signal, s.source_ts_ms) for s in stored}
        reader.wait_for(lambda: wanted <= set(_unique(reader.values)), 60, f"{len(wanted)} samples from the outbox")
        replayed = [v for v in reader.values if (v.name, v.timestamp) in wanted and v.timestamp < killed_at]
        assert replayed
        assert all(v.historical for v in replayed[-5:])
        # The restarted connector advanced bdSeq.
        reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 2, 30, "an NBIRTH from the restart")
        assert _bdseq(reader, MessageType.NBIRTH, -1) != _bdseq(reader, MessageType.NBIRTH, 0)
        assert not reader.errors
