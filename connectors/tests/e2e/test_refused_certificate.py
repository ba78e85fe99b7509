"""A connector whose certificate the broker refuses says so in its log and keeps retrying."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from plantline.connectors.config import load_config
from plantline.connectors.metric_names import MQTT_REFUSED
from plantline_testing.connector import running_connector
from plantline_testing.synthetic import SyntheticSource

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_a_revoked_connector_is_refused_and_says_why(line: Any, caplog: pytest.LogCaptureFixture) -> None:
    line.ca.revoke("site1-line1", reason="key-compromise")
    (line.broker.directory / "crl.pem").write_bytes(line.ca.crl_pem())
    line.broker.reload()
    config = load_config(line.config_path).model_copy(update={"metrics_port": 0})
    source = SyntheticSource("filler", ["process.temperature"], rate=100, limit=1_000)

    async def scenario() -> tuple[int, float | None]:
        async with running_connector(config, source) as connector:
            async with asyncio.timeout(30):
                while sum("no broker accepted the connection" in r.getMessage() for r in caplog.records) < 2:
                    await asyncio.sleep(0.1)
            refused = connector.metrics.registry.get_sample_value(MQTT_REFUSED.name)
            return connector._require_outbox().stats().samples, refused

    with caplog.at_level(logging.WARNING, logger="plantline.connectors"):
        stored, refused = asyncio.run(scenario())
    refusals = [r.getMessage() for r in caplog.records if "mqtt connect refused" in r.getMessage()]
    assert refusals
    assert any("TLS" in m or "CONNACK" in m for m in refusals), refusals
    assert "certificate verify failed" in line.broker.log_text()
    assert stored > 0  # meanwhile samples wait in the outbox
    assert refused == 1  # what `plantline status` shows as "refused"
