"""A source's own task that dies is seen: the connector fails (and its supervisor restarts it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Self

import pytest

from plantline.connectors.config import ConnectorConfig
from plantline.connectors.runtime import Connector, SourceFailed
from plantline_testing import free_port
from plantline_testing.synthetic import SyntheticSource


class CrashingSource(SyntheticSource):
    """Starts a task of its own, as the protocol sources do, which dies of a bug."""

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self._crash(), name="driver")
        return await super().__aenter__()

    async def _crash(self) -> None:
        await asyncio.sleep(0.2)
        raise ZeroDivisionError("a driver bug")


def config(tmp_path: Path) -> ConnectorConfig:
    return ConnectorConfig.model_validate(
        {
            "sparkplug": {"group_id": "site1", "edge_node_id": "line1"},
            "brokers": [{"host": "127.0.0.1", "port": free_port(), "insecure_plaintext": True}],  # nobody there
            "outbox": {"directory": str(tmp_path / "outbox")},
            "state_directory": str(tmp_path / "state"),
            "metrics_port": 0,
            "devices": [
                {
                    "id": "filler",
                    "protocol": "opcua",
                    "endpoint": "opc.tcp://127.0.0.1:4840/",
                    "tags": [{"signal": "process.x", "address": "ns=2;s=x", "datatype": "int64"}],
                }
            ],
        }
    )


def test_a_dead_source_task_fails_the_connector_naming_the_device(tmp_path: Path) -> None:
    source = CrashingSource("filler", ["process.x"], rate=100, limit=10**9)

    async def scenario() -> None:
        connector = Connector(config(tmp_path), source_factory=lambda _device: source)
        await asyncio.wait_for(connector.run(asyncio.Event()), 10)

    with pytest.raises(ExceptionGroup) as failed:
        asyncio.run(scenario())
    (error,) = failed.value.exceptions
    assert isinstance(error, SourceFailed)
    assert "filler" in str(error)
    assert isinstance(error.__cause__, ZeroDivisionError)
