"""The Siemens S7 source: polls an S7 CPU's DB, M, I and Q areas with python-snap7 3.x.

    async with S7Source(device) as source:
        async for batch in source.batches():
            ...

Endpoint: `s7://HOST[:PORT][?rack=R&slot=S&pdu=N]`. The port defaults to 102 (ISO-on-TCP),
rack to 0 and slot to 1 (S7-1200/1500; an S7-300 CPU sits in slot 2); `pdu` is the PDU size
asked for at connect (240..960, default 480); the CPU may grant less, and the reads are planned
for what it granted. Addresses and datatypes: see `plantline.connectors.addressing.s7`
(`DB10.DBW2`, `M10.2`, `QX0.1`...).

Reads. Per poll group, the tags' locations are merged into ranges and split and packed into
jobs that fit the negotiated PDU (`s7_plan.plan_reads`), once per connection. Each job is one
S7comm Read Var request, encoded here (`s7_plan`) and exchanged with python-snap7's
`Client.iso_exchange_buffer`, so that every item's own return code reaches the tag: python-snap7's
`read_multi_vars` raises on the first failed item, and its single-item parser misreports the
C snap7 server's answer for a DB that does not exist as "Data item is truncated". A tag whose
item failed yields a bad sample whose `protocol_code` is the S7 return code (0x0A: the DB does
not exist, 0x05: out of range...), or `(error class << 8) | code` for a job the CPU refused as a
whole; the other tags of the poll are unaffected. A range that merged several tags and failed
is split: its tags are read one by one from then on (until the next connection; see `polling`),
so one misconfigured tag does not turn its neighbours bad.

Threads. python-snap7 blocks; its calls run on the source's worker thread (`PollingSource._call`).
Its own auto-reconnect and heartbeat stay off: this source's task is the one supervisor. The
connection, reconnection with capped jittered backoff and retries at startup, report by exception
and backpressure are `PollingSource`'s (see `polling`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Unpack

from snap7.client import Client
from snap7.type import Parameter

from plantline.connectors.addressing.s7 import DEFAULT_PDU, S7Area, S7Location, parse_s7_address, parse_s7_endpoint
from plantline.connectors.config import Device
from plantline.connectors.quality import S7_ITEM_OK, s7_describe, s7_quality
from plantline.connectors.samples import Quality
from plantline.connectors.sources.base import SourceOptions
from plantline.connectors.sources.polling import PollGroup, PollingSource, Reading
from plantline.connectors.sources.s7_plan import (
    DEFAULT_MAX_GAP,
    MAX_ITEMS,
    ItemResult,
    ReadPlan,
    TagResult,
    decode_read_response,
    encode_read_request,
    failed_members,
    plan_reads,
    take_values,
)

_log = logging.getLogger(__name__)

_OBJECT_MISSING = 0x0A


def s7_locations(device: Device) -> tuple[S7Location, ...]:
    """Return every tag's location; raise ValueError naming the tag (`tags[3].address: ...`)."""
    out = []
    for index, tag in enumerate(device.tags):
        try:
            out.append(parse_s7_address(tag.address, tag.datatype))
        except ValueError as exc:
            raise ValueError(f"tags[{index}].address: {exc}") from None
    return tuple(out)


def reading_of(tag: int, location: S7Location, result: TagResult) -> Reading:
    """Return the Reading for one tag's TagResult: good with the value, or bad with the S7 code."""
    if result.code is None:
        if result.problem is not None:
            return Reading(tag, None, Quality.BAD, None, f"cannot decode: {result.problem}")
        return Reading(tag, result.value, Quality.GOOD, S7_ITEM_OK)
    problem = s7_describe(result.code)
    if result.code == _OBJECT_MISSING and location.area is S7Area.DB:
        problem += f" (DB{location.db} is not in the PLC)"
    return Reading(tag, None, s7_quality(result.code), result.code, problem)


class S7Source(PollingSource[ReadPlan, list[list[ItemResult]]]):
    """Samples of one S7 PLC, polled, kept flowing across PLC restarts; use as `async with`."""

    def __init__(
        self,
        device: Device,
        *,
        max_gap: int | None = DEFAULT_MAX_GAP,
        max_items: int = MAX_ITEMS,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(device, protocol="s7", **options)
        self._endpoint = parse_s7_endpoint(device.endpoint)
        self._locations = s7_locations(device)
        self._max_gap = max_gap
        self._max_items = max_items
        plan_reads(self._locations, pdu_size=DEFAULT_PDU, max_gap=max_gap, max_items=max_items)  # validates
        self._client = Client()  # one per source: re-connected after a loss, so retries allocate nothing new
        self._connected = False
        self._pdu_size: int | None = None
        self._pdu_ref = 0

    @property
    def pdu_size(self) -> int | None:
        """The PDU size the PLC granted on the current connection (None while not connected)."""
        return self._pdu_size

    async def _connect(self) -> None:
        self._pdu_size = await self._call(self._open)
        _log.info("device %s: PDU size %d granted", self.device_id, self._pdu_size)

    def _open(self) -> int:
        """Connect (worker thread) and return the PDU size the PLC granted."""
        endpoint = self._endpoint
        self._client.set_param(Parameter.PDURequest, endpoint.pdu)  # it holds the last grant otherwise
        self._client.connect(endpoint.host, endpoint.rack, endpoint.slot, endpoint.port)
        self._connected = True
        return int(self._client.pdu_length)

    async def _disconnect(self) -> None:
        self._pdu_size = None
        if self._connected:
            self._connected = False
            await self._call(self._client.disconnect)

    def _plan_reads(self, group: PollGroup, isolated: Collection[int]) -> ReadPlan:
        if self._pdu_size is None:
            raise RuntimeError("not connected: the plan depends on the negotiated PDU size")
        return plan_reads(
            [self._locations[t] for t in group.tags],
            pdu_size=self._pdu_size,
            max_gap=self._max_gap,
            max_items=self._max_items,
            isolated={position for position, t in enumerate(group.tags) if t in isolated},
        )

    def _failed_merged(self, group: PollGroup, plan: ReadPlan, answers: list[list[ItemResult]]) -> set[int]:
        return {group.tags[position] for position in failed_members(plan, answers)}

    def _readings(self, group: PollGroup, plan: ReadPlan, answers: list[list[ItemResult]]) -> list[Reading]:
        results = take_values(plan, answers)
        return [reading_of(tag, self._locations[tag], result) for tag, result in zip(group.tags, results, strict=True)]

    def _exchange(self, plan: ReadPlan) -> list[list[ItemResult]]:
        """Send every job of `plan` and return the answers (worker thread); raises on a lost link."""
        answers = []
        for job in plan.jobs:
            self._pdu_ref = self._pdu_ref % 0xFFFF + 1
            request = encode_read_request(self._pdu_ref, job)
            response = self._client.iso_exchange_buffer(bytearray(request))
            answers.append(decode_read_response(bytes(response), pdu_ref=self._pdu_ref, job=job))
        return answers
