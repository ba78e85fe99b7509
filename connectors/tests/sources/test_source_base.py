"""SourceBase's connection task: the device's back-off settings, and refusals told apart from outages.

A hand-written stand-in protocol (`Scripted`) fails its connection attempts as told, so the
timing and the refusal bookkeeping are observed without a PLC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest

from plantline.connectors.config import Device, ReconnectSettings
from plantline.connectors.sources import Refusal, SourceState
from plantline.connectors.sources.base import SourceBase

REFUSED = Refusal("device", "BadSecurityChecksFailed", "the server refused the connector's certificate")


class Refused(Exception):
    """What the stand-in raises for an attempt the device refuses."""


class Scripted(SourceBase):
    """A stand-in protocol: each attempt takes the next outcome ("down", "refused", "up")."""

    def __init__(self, outcomes: Iterator[str], reconnect: ReconnectSettings) -> None:
        super().__init__("scripted", "filler", "scripted://filler", reconnect=reconnect)
        self.outcomes = outcomes
        self.attempts: list[float] = []

    async def _connect(self) -> None:
        self.attempts.append(time.monotonic())
        outcome = next(self.outcomes, "up")
        if outcome == "down":
            raise ConnectionRefusedError("connection refused")
        if outcome == "refused":
            raise Refused

    async def _serve(self) -> str:
        await asyncio.Event().wait()
        return "never"

    async def _disconnect(self) -> None:
        pass

    def _refusal_of(self, exc: Exception) -> Refusal | None:
        return REFUSED if isinstance(exc, Refused) else None


def run(source: Scripted) -> None:
    async def scenario() -> None:
        async with source:
            await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), 10)

    asyncio.run(scenario())


def test_the_default_resumes_within_five_seconds_of_the_plc_returning() -> None:
    device = Device.model_validate(
        {
            "id": "d",
            "protocol": "s7",
            "endpoint": "s7://h",
            "tags": [{"signal": "state.run", "address": "DB1.DBX0.0", "datatype": "bool"}],
        }
    )
    assert device.reconnect == ReconnectSettings(initial_delay_s=0.5, max_delay_s=5.0)


def test_attempts_follow_the_devices_reconnect_settings() -> None:
    source = Scripted(iter(["down"] * 8), ReconnectSettings(initial_delay_s=0.05, max_delay_s=0.2))
    run(source)
    gaps = [b - a for a, b in zip(source.attempts, source.attempts[1:], strict=False)]
    assert len(gaps) == 8
    assert max(gaps) < 0.2 + 0.05  # never beyond the cap (plus scheduling)
    assert min(gaps[4:]) >= 0.1 - 0.01  # at the cap, jitter shortens a delay by half at most
    assert source.counters.connect_failures == 8
    assert source.refusal is None


def test_a_refusal_is_reported_once_and_cleared_by_the_next_connection(caplog: pytest.LogCaptureFixture) -> None:
    source = Scripted(
        iter(["refused", "refused", "refused", "down"]), ReconnectSettings(initial_delay_s=0.01, max_delay_s=0.02)
    )
    seen: list[Refusal | None] = []

    async def scenario() -> None:
        async with source:
            await asyncio.wait_for(_until(lambda: source.counters.connect_failures >= 3), 10)
            seen.append(source.refusal)
            await asyncio.wait_for(_until(lambda: source.counters.connect_failures >= 4), 10)
            seen.append(source.refusal)  # an outage is no refusal
            await asyncio.wait_for(source.wait_for_state(SourceState.CONNECTED), 10)
            seen.append(source.refusal)

    with caplog.at_level(logging.DEBUG, logger="plantline.connectors"):
        asyncio.run(scenario())
    assert seen == [REFUSED, None, None]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"device filler: {REFUSED.message}"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "device filler: cannot connect to scripted://filler: ConnectionRefusedError: connection refused"
    ]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)
