"""What every source shares: its device, an explicit state with waits, counters, a slowdown factor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator

from plantline.connectors.config import Device
from plantline.connectors.samples import Sample
from plantline.connectors.sources import SourceCounters, SourceState

_log = logging.getLogger(__name__)


class SourceBase:
    """The Source protocol's plumbing; a concrete source adds its connection task and samples()."""

    def __init__(self, device: Device, *, max_buffered: int) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be >= 1, got {max_buffered!r}")
        self._device = device
        self._queue: asyncio.Queue[Sample | None] = asyncio.Queue(maxsize=max_buffered)
        self._closed = False
        self._state = SourceState.DISCONNECTED
        self._state_changed = asyncio.Event()
        self._slowdown = 1.0
        self._counters = SourceCounters()

    @property
    def device_id(self) -> str:
        return self._device.id

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def counters(self) -> SourceCounters:
        return self._counters

    @property
    def slowdown(self) -> float:
        """The factor the source's sampling intervals are currently multiplied by."""
        return self._slowdown

    async def wait_for_state(self, *states: SourceState) -> SourceState:
        """Return once the source is in one of `states` (at once if it already is).

        Raises RuntimeError if the source closes first (unless CLOSED is one of `states`).
        """
        while self._state not in states:
            if self._state is SourceState.CLOSED:
                raise RuntimeError(f"source {self.device_id!r} closed")
            await self._state_changed.wait()
        return self._state

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield samples in the order the device reported them, until the source is closed (one consumer)."""
        while not (self._closed and self._queue.empty()):
            sample = await self._queue.get()
            if sample is None:
                return
            yield sample

    def _mark_closed(self) -> None:
        """Enter CLOSED and wake a consumer waiting on an empty queue (a full one drains first, then ends)."""
        self._set_state(SourceState.CLOSED)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def _set_state(self, state: SourceState) -> None:
        if state is self._state:
            return
        _log.debug("device %s: %s -> %s", self.device_id, self._state.value, state.value)
        self._state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    def _change_slowdown(self, factor: float) -> bool:
        """Validate and record a new slowdown factor (>= 1); return whether it changed."""
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"slowdown factor must be a positive number, got {factor!r}")
        factor = max(1.0, factor)
        if factor == self._slowdown:
            return False
        _log.info("device %s: sampling slowed down x%g (was x%g)", self.device_id, factor, self._slowdown)
        self._slowdown = factor
        return True
