"""A backlog that no longer fits the configuration: set aside and counted, never a crash loop.

Real processes: the OPC UA simulator, mosquitto (mutual TLS) and the connector. A backlog builds
up with the broker stopped; then the configuration loses a tag, a machine and the KPIs, the
connector restarts, the broker comes back: the connector stays up, every buffered sample of the
remaining signals arrives exactly once, and what was removed is counted as set aside.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors.kpi import SPARKPLUG_METRICS as KPI_METRICS
from plantline.connectors.outbox import decode_batch
from plantline.connectors.samples import Sample

pytestmark = [pytest.mark.peer, pytest.mark.slow]

FILLER = {
    "process.temperature": "double",
    "process.pressure": "double",  # removed from the configuration
    "counter.total": "uint32",
    "state.run": "bool",
    "state.idle": "bool",
    "state.blocked": "bool",
    "state.starved": "bool",
    "state.planned_stop": "bool",
}
REMOVED_TAG = "process.pressure"


def _tags(signals: dict[str, str]) -> list[dict[str, str]]:
    return [{"signal": s, "address": f"ns=2;s=Filler.{s}", "datatype": t} for s, t in signals.items()]


def _stored(outbox_dir: Path, copy: Path) -> list[Sample]:
    """Every sample the outbox holds, read from a copy of its files."""
    shutil.copy(outbox_dir / "outbox.db", copy)
    for suffix in ("-wal", "-shm"):
        if (outbox_dir / f"outbox.db{suffix}").exists():
            shutil.copy(outbox_dir / f"outbox.db{suffix}", f"{copy}{suffix}")
    with closing(sqlite3.connect(copy)) as db:
        return [s for (body,) in db.execute("SELECT body FROM batch ORDER BY id") for s in decode_batch(body)]


def test_a_backlog_that_no_longer_fits_is_set_aside_and_the_rest_arrives_once(line: Any, tmp_path: Path) -> None:
    config = yaml.safe_load(line.config_path.read_text())
    filler = config["devices"][0]
    filler["tags"] = _tags(FILLER)
    filler["kpi"] = {"publish_interval_s": 1, "window_s": 60}
    capper = {**filler, "id": "capper", "tags": _tags({"process.temperature": "double"}), "kpi": {"enabled": False}}
    config["devices"] = [filler, capper]
    line.config_path.write_text(yaml.safe_dump(config))

    with line.reader() as reader:
        line.start_sim()
        line.start_connector()
        flowing = lambda: reader.values_of("capper", "process.temperature") and reader.values_of("filler", "kpi/oee")  # noqa: E731
        reader.wait_for(flowing, 60, "data of both machines and the filler's KPIs")
        line.broker.stop()
        time.sleep(4)  # the backlog: readings of both machines, KPI snapshots
        assert line.stop_connector() == 0
        stored = _stored(line.outbox_dir, tmp_path / "outbox-copy.db")

        filler["tags"] = _tags({s: t for s, t in FILLER.items() if s != REMOVED_TAG})
        filler["kpi"] = {"enabled": False}
        config["devices"] = [filler]  # the capper is gone
        line.config_path.write_text(yaml.safe_dump(config))
        line.start_connector()
        time.sleep(2)  # up, reading, and retrying the broker
        assert line.connector is not None
        # The host must be back on the broker before the connector: it would miss the births
        # (QoS 0) otherwise. The connector is frozen meanwhile, not stopped.
        line.connector.send_signal(signal.SIGSTOP)
        # What arrived before the outage stays out of the count: a batch whose PUBACK the outage
        # swallowed is in the backlog too, and is replayed (at least once, as designed).
        before = len(reader.values)
        subscribed = reader.subscriptions
        line.broker.start()
        reader.wait_for(lambda: reader.subscriptions > subscribed, 30, "the host back on the broker")
        line.connector.send_signal(signal.SIGCONT)

        kept = Counter((s.device, s.signal, s.source_ts_ms) for s in stored if s.device == "filler")
        gone = {REMOVED_TAG, *KPI_METRICS}
        kept = Counter({key: n for key, n in kept.items() if key[1] not in gone})
        # The backlog is replayed flagged historical. Live samples are left out: a value that did
        # not change comes again, with its old source timestamp, when a PLC subscription starts.

        def replayed() -> Counter[tuple[str, str, int]]:
            return Counter(("filler", v.name, v.timestamp) for v in reader.values[before:] if v.historical)

        reader.wait_for(lambda: kept.keys() <= replayed().keys(), 90, f"the {kept.total()} buffered samples")
        time.sleep(1)  # anything that would arrive twice, arrives
        received = replayed()
        quarantined = {
            reason: line.metric(f'plantline_outbox_quarantined_samples_total{{reason="{reason}"}}')
            for reason in ("unknown_device", "unknown_signal", "type_mismatch")
        }
        assert line.connector is not None
        assert line.connector.poll() is None, line.connector_log()  # it stays up

    assert kept.total() > 50
    assert {key: received[key] for key in kept} == dict(kept)  # each exactly once
    removed = Counter(
        "unknown_device" if s.device == "capper" else "unknown_signal"
        for s in stored
        if s.device == "capper" or s.signal == REMOVED_TAG or s.signal in KPI_METRICS
    )
    assert removed["unknown_device"] > 0
    assert removed["unknown_signal"] > 0
    assert quarantined == {**dict.fromkeys(quarantined, 0.0), **{k: float(v) for k, v in removed.items()}}
    with closing(sqlite3.connect(line.outbox_dir / "outbox.db")) as db:
        on_disk: Counter[str] = Counter()
        for reason, body in db.execute("SELECT reason, body FROM unfit"):
            on_disk[reason] += len(decode_batch(body))
    assert on_disk == removed  # kept on disk, in the outbox's unfit table
    log = line.connector_log()
    assert "Traceback" not in log
    causes = [line for line in log.splitlines() if "no longer fit the configuration" in line]
    expected = {"capper", f"filler {REMOVED_TAG}", *(f"filler {name}" for name in KPI_METRICS)}
    found = {c.split("buffered samples of ", 1)[1].split(" no longer fit", 1)[0] for c in causes}
    assert found <= expected  # the KPIs of the backlog may not have all been snapshots yet
    assert {"capper", f"filler {REMOVED_TAG}", "filler kpi/oee"} <= found
    assert len(causes) == len(found)  # one line per cause, however many batches
