"""After an outage, live data flows while the backlog replays; nothing is lost either way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plantline.connectors.config import load_config
from plantline_testing.connector import running_connector
from plantline_testing.synthetic import SyntheticSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]

BACKLOG = 200_000


def test_live_data_is_not_starved_by_replay(line: Any) -> None:
    config = load_config(line.config_path).model_copy(update={"metrics_port": 0})
    source = SyntheticSource("filler", ["process.temperature", "process.pressure"], rate=0, limit=BACKLOG)

    async def scenario() -> None:
        async with running_connector(config, source):
            async with asyncio.timeout(180):
                while source.produced < BACKLOG:  # all of it into the outbox: the broker is down
                    await asyncio.sleep(0.05)
                # then a trickle of live data, in small chunks so some land during the replay
                source.rate, source.chunk, source.limit = 500, 5, BACKLOG + 3_000
                await asyncio.to_thread(line.broker.start)
                while len(reader.values) < BACKLOG + 3_000:
                    await asyncio.sleep(0.1)

    with line.reader(persistent=True) as reader:
        line.broker.stop()  # a clean stop: mosquitto keeps the reader's session in its persistence file
        asyncio.run(scenario())
        values = list(reader.values)
    delivered = {v.value for v in values}
    assert delivered >= set(range(BACKLOG + 3_000))  # every sample, backlog and live
    historical = [i for i, v in enumerate(values) if v.historical]
    live = [i for i, v in enumerate(values) if not v.historical]
    assert historical
    assert live
    # Live samples arrived while the backlog was still being replayed, not after it.
    assert live[0] < historical[-1]
    first_live_after_outage = next(i for i in live if values[i].value >= BACKLOG)
    assert first_live_after_outage < historical[-1]
