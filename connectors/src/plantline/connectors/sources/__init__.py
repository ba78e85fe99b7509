"""Protocol sources: each reads one device and yields Samples of canonical signals.

Every source has the same shape, so the runtime treats OPC UA, S7 and CIP alike:

    async with OpcUaSource(device) as source:
        async for batch in source.batches():
            ...

A source owns its connection: it connects, retries with capped jittered backoff, and re-creates
what the device lost on a restart, by itself, while `batches()` keeps iterating. It never
fabricates values: while the device is unreachable nothing is yielded and `state` is not
CONNECTED (the runtime turns that into a Sparkplug DDEATH). When the device and the connector
refuse each other (a certificate not trusted or revoked, on either side), retrying cannot help
until someone changes a certificate or the configuration: `refusal` says so, and why.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

from plantline.connectors.samples import Sample


class SourceState(enum.Enum):
    """Where a source's connection to its device is."""

    DISCONNECTED = "disconnected"  # created, or entered but not yet tried
    CONNECTING = "connecting"  # an attempt (connect, sign in, subscribe) is under way
    CONNECTED = "connected"  # subscribed; samples flow
    BACKOFF = "backoff"  # the last attempt failed or the connection was lost; waiting to retry
    CLOSED = "closed"  # exited; terminal


@dataclass
class SourceCounters:
    """Monotonic counts the runtime exports as metrics (plain ints, updated in place)."""

    samples: int = 0  # samples handed to the buffer of batches()
    bad_samples: int = 0  # of which quality bad
    reconnects: int = 0  # connections established after the first one
    connect_failures: int = 0  # connection attempts that failed
    read_errors: int = 0  # items the device refused and values the source could not read
    backpressure_waits: int = 0  # times the device's data had to wait for room in the buffer
    deadband_fallbacks: int = 0  # deadbands the device refused (subscribed without one)


@dataclass(frozen=True)
class Refusal:
    """Why the last connection attempt was refused: waiting will not help, a certificate or setting will."""

    by: Literal["device", "connector"]  # who refused: the device (our certificate), or we (the device's)
    code: str  # the protocol's name for the reason, e.g. BadCertificateUntrusted
    message: str  # one line for people: the endpoint, the certificates concerned and what to check


@runtime_checkable
class Source(Protocol):
    """A connection to one device that yields Samples; an async context manager."""

    @property
    def device_id(self) -> str:
        """The device (Sparkplug device_id) every sample of this source belongs to."""
        ...

    @property
    def state(self) -> SourceState: ...

    @property
    def counters(self) -> SourceCounters: ...

    @property
    def refusal(self) -> Refusal | None:
        """Why the device and the connector refused each other at the last attempt; None once connected."""
        ...

    def batches(self) -> AsyncIterator[list[Sample]]:
        """Yield the samples reported since the last batch, as one list in the device's order, until closed."""
        ...

    async def wait_for_state(self, *states: SourceState) -> SourceState:
        """Return once the source is in one of `states` (at once if it already is)."""
        ...

    def set_slowdown(self, factor: float) -> None:
        """Stretch sampling intervals by `factor` (1 = full rate); the outbox's watermark asks."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


__all__ = ["Refusal", "Source", "SourceCounters", "SourceState"]
