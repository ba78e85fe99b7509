"""Stopping a connector keeps every sample it read: delivered before the stop, or in the outbox.

While the connector says goodbye (NDEATH, then DISCONNECT), its sources must not keep handing
samples to a buffer nobody flushes any more. The source here produces continuously at a high rate
until the stop; afterwards every sample it produced is either at the reader or still in the
outbox, waiting for the next run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from plantline.connectors.config import load_config
from plantline.connectors.outbox import Outbox
from plantline_testing.connector import running_connector
from plantline_testing.synthetic import SyntheticSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]

RATE = 4000.0  # samples per second, in chunks of 10: a chunk every 2.5 ms


def test_every_sample_read_before_the_stop_is_delivered_or_kept(line: Any) -> None:
    config = load_config(line.config_path).model_copy(update={"metrics_port": 0})
    source = SyntheticSource("filler", ["process.temperature"], rate=RATE, limit=10**9, chunk=10)

    async def scenario(reader: Any) -> None:
        async with running_connector(config, source):
            async with asyncio.timeout(60):
                while not reader.values:  # connected and publishing
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)

    with line.reader() as reader:
        asyncio.run(scenario(reader))
        time.sleep(1.0)  # the last acknowledged batches reach the reader
        delivered = {v.value for v in reader.values}
    kept: set[int] = set()
    with Outbox.from_settings(config.outbox) as outbox:
        for batch in outbox.pending(10**9):
            kept.update(sample.value for sample in batch.samples if isinstance(sample.value, int))
    produced = source.produced
    assert produced > RATE * 0.5
    missing = set(range(produced)) - delivered - kept
    assert not missing, f"{len(missing)} of {produced} samples lost at the stop, e.g. {sorted(missing)[:5]}"
