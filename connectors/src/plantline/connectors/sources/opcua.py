"""The OPC UA source: subscriptions on one server, turned into Samples of canonical signals.

    async with OpcUaSource(device) as source:
        async for batch in source.batches():
            ...

Connection. The source owns one asyncua `Client` at a time, and `SourceBase`'s task
(`opcua-source:<id>`) connects and subscribes (`_connect`), watches for loss (`_serve`) and
reconnects, with capped jittered exponential backoff (the device's `reconnect` settings;
`SourceState`: DISCONNECTED -> CONNECTING -> CONNECTED, BACKOFF between attempts, CLOSED at
exit). A server that is down at startup is retried the same way. A secured session first
verifies the server's certificate against the device's trust list, and a server that refuses the
connector's certificate is told apart from one that is down (`opcua_security`): either makes
`refusal` say why, in one line of the log, until the next connection. After any loss the client
is thrown away and a new session is opened, and the subscriptions are created again from the
config: a restarted server has forgotten them, and the fresh initial values the server sends for
new monitored items are real reads, not replays. asyncua's own auto-reconnect is not used (it
has no jitter, does not retry the first connect, and would be a second supervisor fighting this
one). Its watchdog runs with `watchdog_interval_s` (10 s by default, not asyncua's 1 s: with 1 s
the watchdog declared a busy but healthy server lost, and the subscription then received
nothing).

No fabricated values. While the server is unreachable nothing is yielded and `state` is not
CONNECTED; the runtime turns that into DDEATH. A node the server reports with a Bad status
yields a sample with quality bad, value None and the server's StatusCode as `protocol_code`;
so does a node the server refuses to monitor (e.g. BadNodeIdUnknown), once per subscription.

Backpressure. `batches()` reads a bounded buffer (`max_buffered` samples). The subscription
callback *waits* for room rather than dropping: asyncua awaits the callback inside its publish
loop, so while the buffer is full no new PublishRequest is sent, and the server keeps the
notifications in its monitored-item queues (`opcua.queue_size` per item, discard-oldest). If
the consumer stays behind for longer than those queues cover, it is the server that discards
the oldest values, following OPC UA rules, and a conforming server flags the next value with
the Overflow info bit, which reaches the consumer in `protocol_code`; nothing is lost inside
this process, and `counters.backpressure_waits` says that it happened. Waiting is preferred
over dropping the newest or oldest here because a dropped state edge or counter step would
silently corrupt the edge KPIs, while a late one only delays them. The remedy for a slow
consumer is adaptive sampling: the outbox watermark calls `set_slowdown(factor)`, which
re-creates the subscriptions with sampling and publishing intervals multiplied by `factor`.

Subscriptions. Tags are monitored in one subscription per distinct sampling interval (a tag's
own `sampling_interval_ms`, else the device's), each publishing at
`opcua.publishing_interval_ms` or at its sampling interval, whichever is longer.

Values. Numbers get `tag.scale` and `tag.offset` (`samples.scaled`: a float, for an integer
rounded to the decimals the scale implies; with scale 1 and offset 0 the raw int or float is
kept, so counters stay integers); bool and str keep their type; a DateTime becomes milliseconds
since the epoch. An absolute deadband is given in engineering (scaled) units and sent to the
server divided by |scale|; a percent deadband (of the node's EURange) is sent as is, and if the
server refuses it the item is subscribed without a deadband, with a warning. The sample's
timestamp is the SourceTimestamp, else the ServerTimestamp, else `clock()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Unpack

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

from plantline.connectors.config import Deadband, Device, Tag
from plantline.connectors.quality import opcua_quality
from plantline.connectors.samples import Quality, Sample, Value, scaled
from plantline.connectors.sources import Refusal
from plantline.connectors.sources.base import SourceBase, SourceOptions, describe
from plantline.connectors.sources.opcua_security import (
    Client,
    Identity,
    read_identity,
    refusal_of,
    secure,
    server_endpoint,
)

_log = logging.getLogger(__name__)

DEFAULT_WATCHDOG_INTERVAL_S = 10.0
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 15.0
SESSION_TIMEOUT_MS = 60_000  # a session we lost is dropped by the server after a minute
KEEPALIVE_EVERY_MS = 10_000  # an idle subscription still hears from the server this often
LIFETIME_MS = 600_000  # the server keeps a subscription this long without PublishRequests
MAX_NOTIFICATIONS_PER_PUBLISH = 1000
# What a server answers when it will not apply the deadband we asked for.
DEADBAND_REFUSED = frozenset(
    {
        StatusCodes.BadDeadbandFilterInvalid,
        StatusCodes.BadMonitoredItemFilterUnsupported,
        StatusCodes.BadMonitoredItemFilterInvalid,
        StatusCodes.BadFilterNotAllowed,
    }
)
_FILETIME_EPOCH_YEAR = 1601  # asyncua decodes a zero DateTime ("none") as 1601-01-01


# -- the plan: which subscriptions and monitored items a device needs (pure) ---------------------


@dataclass(frozen=True)
class MonitoredTag:
    """One tag as a monitored item: its client handle, parsed NodeId and raw-unit deadband."""

    handle: int
    tag: Tag
    node_id: ua.NodeId
    deadband: Deadband | None  # in the server's (raw) units


@dataclass(frozen=True)
class SubscriptionPlan:
    """One subscription: the tags sampled at one interval."""

    sampling_interval_ms: float
    publishing_interval_ms: float
    items: tuple[MonitoredTag, ...]


def raw_deadband(tag: Tag) -> Deadband | None:
    """Return the tag's deadband in the server's units (absolute ones are given scaled)."""
    deadband = tag.deadband
    if deadband is None or deadband.kind == "percent" or tag.scale in (0.0, 1.0):
        return deadband
    return Deadband(kind="absolute", value=deadband.value / abs(tag.scale))


def monitored_tags(device: Device) -> tuple[MonitoredTag, ...]:
    """Return every tag of the device with its client handle (its index + 1) and NodeId.

    Raises ValueError naming the tag when an address does not parse as a NodeId.
    """
    out = []
    for index, tag in enumerate(device.tags):
        try:
            node = ua.NodeId.from_string(tag.address)
        except (ValueError, UaError) as exc:
            raise ValueError(f"tags[{index}].address: {tag.address!r} is not an OPC UA NodeId: {exc}") from None
        out.append(MonitoredTag(index + 1, tag, node, raw_deadband(tag)))
    return tuple(out)


def plan_subscriptions(device: Device, tags: Sequence[MonitoredTag], slowdown: float = 1.0) -> list[SubscriptionPlan]:
    """Group the tags by sampling interval, one subscription each, intervals times `slowdown`.

    A subscription publishes at `opcua.publishing_interval_ms`, or at its sampling interval
    when that is longer: publishing a slow tag's subscription faster only sends keep-alives.
    """
    groups: dict[int, list[MonitoredTag]] = {}
    for item in tags:
        groups.setdefault(device.interval_of(item.tag), []).append(item)
    publishing = device.opcua.publishing_interval_ms
    return [
        SubscriptionPlan(interval * slowdown, max(publishing, interval) * slowdown, tuple(groups[interval]))
        for interval in sorted(groups)
    ]


# -- values (pure) --------------------------------------------------------------------------------


class UnsupportedValue(ValueError):
    """The server sent a value that is not a scalar bool, number, string or DateTime."""


def _epoch_ms(moment: datetime | None) -> int | None:
    if moment is None or moment.year <= _FILETIME_EPOCH_YEAR:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp() * 1000)


def normalise(tag: Tag, raw: object) -> Value:
    """Return the value to publish for a raw OPC UA value: scaled number, or bool/str as is."""
    if isinstance(raw, bool | str | int | float):
        return scaled(raw, tag.scale, tag.offset)
    if isinstance(raw, datetime):
        ms = _epoch_ms(raw)
        if ms is not None:
            return ms
    raise UnsupportedValue(f"{type(raw).__name__} value {raw!r:.60}")


def sample_from_datavalue(device_id: str, tag: Tag, datavalue: ua.DataValue | None, now_ms: int) -> Sample:
    """Return the Sample for one DataValue of `tag`; raises UnsupportedValue for a good non-scalar."""
    if datavalue is None:
        datavalue = ua.DataValue()
    code = int(datavalue.StatusCode.value) if datavalue.StatusCode is not None else 0
    quality = opcua_quality(code)
    source_ts = _epoch_ms(datavalue.SourceTimestamp) or _epoch_ms(datavalue.ServerTimestamp) or now_ms
    value: Value | None = None
    if quality is not Quality.BAD:  # a Bad value is not to be used, whatever the server put in it
        raw = datavalue.Value.Value if datavalue.Value is not None else None
        value = normalise(tag, raw)
    return Sample(device_id, tag.signal, value, quality, source_ts, code)


# -- the source -------------------------------------------------------------------------------------

PublishCallback = Callable[[ua.PublishResult], Coroutine[Any, Any, None]]


class OpcUaSource(SourceBase):
    """Samples of one OPC UA device, kept flowing across server restarts; use as `async with`."""

    def __init__(
        self,
        device: Device,
        *,
        watchdog_interval_s: float = DEFAULT_WATCHDOG_INTERVAL_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        **options: Unpack[SourceOptions],
    ) -> None:
        if device.protocol != "opcua":
            raise ValueError(f"device {device.id!r} speaks {device.protocol}, not opcua")
        super().__init__("opcua", device.id, device.endpoint, reconnect=device.reconnect, **options)
        self._device = device
        self._tags = monitored_tags(device)
        self._by_handle = {item.handle: item.tag for item in self._tags}
        self._watchdog_interval_s = watchdog_interval_s
        self._request_timeout_s = request_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._client: Client | None = None
        self._identity: Identity | None = None  # the certificate of the latest secured attempt
        self._resubscribe_pending = False
        self._generation = 0  # one per client, so a late callback of an old client is ignored
        self._lost_reason: str | None = None
        self._wake = asyncio.Event()
        self._subscription_ids: list[int] = []

    def _slowdown_changed(self) -> None:
        # Re-create the subscriptions on the current session (or at the next connection).
        self._resubscribe_pending = True
        self._wake.set()

    # -- the connection -------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Open a session and create the subscriptions; a failure leaves the client to `_disconnect`."""
        self._generation += 1
        self._lost_reason = None
        self._wake.clear()
        self._client = await asyncio.wait_for(self._new_client(self._generation), self._connect_timeout_s)
        await self._subscribe(self._client, self._generation)

    async def _serve(self) -> str:
        """Serve slowdown requests until the connection is lost; return why it was."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._lost_reason is not None:
                return self._lost_reason
            if self._resubscribe_pending and self._client is not None:
                await self._resubscribe(self._client)

    def _lost(self, generation: int, reason: str) -> None:
        if generation == self._generation and self._lost_reason is None:
            self._lost_reason = reason
            self._wake.set()

    async def _new_client(self, generation: int) -> Client:
        """Return a client connected (and signed in) to the server, reporting its loss to `_lost`."""
        device, options = self._device, self._device.opcua
        client = Client(device.endpoint, timeout=self._request_timeout_s, watchdog_intervall=self._watchdog_interval_s)
        client.session_timeout = SESSION_TIMEOUT_MS
        client.name = f"PlantLine connector ({device.id})"
        client.description = client.name
        client.application_uri = options.application_uri or f"urn:plantline:connector:{device.id}"
        if options.secured:
            self._identity = read_identity(options)
            warning = await secure(client, device, self._identity, datetime.fromtimestamp(self._clock(), UTC))
            if warning is not None:
                self._log_once("", warning, "device %s: %s", self.device_id, warning)
        else:
            await server_endpoint(client, device)  # a server that offers no unsecured endpoint refuses here
        if options.username is not None and options.password_file is not None:
            client.set_user(options.username)
            client.set_password(options.password_file.read_text(encoding="utf-8").rstrip("\r\n"))

        async def on_connection_lost(exc: Exception) -> None:
            self._lost(generation, describe(exc))

        client.connection_lost_callback = on_connection_lost
        try:
            await client.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            raise
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        self._subscription_ids = []
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), self._request_timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            raise

    def _refusal_of(self, exc: Exception) -> Refusal | None:
        return refusal_of(exc, self._device, self._identity if self._device.opcua.secured else None)

    # -- subscriptions --------------------------------------------------------------------------------

    async def _subscribe(self, client: Client, generation: int) -> None:
        self._resubscribe_pending = False
        callback = self._publish_callback(generation)
        for plan in plan_subscriptions(self._device, self._tags, self._slowdown):
            params = ua.CreateSubscriptionParameters()
            params.RequestedPublishingInterval = plan.publishing_interval_ms
            keepalive = max(1, round(KEEPALIVE_EVERY_MS / plan.publishing_interval_ms))
            params.RequestedMaxKeepAliveCount = keepalive
            params.RequestedLifetimeCount = max(3 * keepalive, round(LIFETIME_MS / plan.publishing_interval_ms))
            params.MaxNotificationsPerPublish = MAX_NOTIFICATIONS_PER_PUBLISH
            params.PublishingEnabled = True
            params.Priority = 0
            result = await client.uaclient.create_subscription(params, callback)
            self._subscription_ids.append(result.SubscriptionId)
            await self._monitor(client, result.SubscriptionId, plan)

    async def _resubscribe(self, client: Client) -> None:
        """Delete and re-create the subscriptions with the current slowdown, on the same session."""
        old, self._subscription_ids = self._subscription_ids, []
        if old:
            await client.uaclient.delete_subscriptions(old)
        await self._subscribe(client, self._generation)

    async def _monitor(self, client: Client, subscription_id: int, plan: SubscriptionPlan) -> None:
        results = await self._create_items(client, subscription_id, plan, plan.items, with_deadband=True)
        fallback = []
        for item, status in zip(plan.items, results, strict=True):
            if status.is_good():
                continue
            if item.deadband is not None and status.value in DEADBAND_REFUSED:
                self._counters.deadband_fallbacks += 1
                self._log_once(
                    item.tag.signal,
                    "deadband refused",
                    "device %s: %s (%s): the server refused the %s deadband (%s%s); subscribing without a deadband",
                    self.device_id,
                    item.tag.signal,
                    item.tag.address,
                    item.deadband.kind,
                    status.name,
                    ", a percent deadband needs an EURange on the node" if item.deadband.kind == "percent" else "",
                )
                fallback.append(item)
            else:
                await self._refused(item, status)
        if fallback:
            results = await self._create_items(client, subscription_id, plan, fallback, with_deadband=False)
            for item, status in zip(fallback, results, strict=True):
                if not status.is_good():
                    await self._refused(item, status)

    async def _create_items(
        self,
        client: Client,
        subscription_id: int,
        plan: SubscriptionPlan,
        items: Sequence[MonitoredTag],
        *,
        with_deadband: bool,
    ) -> list[ua.StatusCode]:
        params = ua.CreateMonitoredItemsParameters()
        params.SubscriptionId = subscription_id
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.ItemsToCreate = [self._item_request(item, plan, with_deadband=with_deadband) for item in items]
        results = await client.uaclient.create_monitored_items(params)
        return [result.StatusCode for result in results]

    def _item_request(
        self, item: MonitoredTag, plan: SubscriptionPlan, *, with_deadband: bool
    ) -> ua.MonitoredItemCreateRequest:
        target = ua.ReadValueId()
        target.NodeId = item.node_id
        target.AttributeId = AttributeIds.Value
        parameters = ua.MonitoringParameters()
        parameters.ClientHandle = item.handle
        parameters.SamplingInterval = plan.sampling_interval_ms
        parameters.QueueSize = self._device.opcua.queue_size
        parameters.DiscardOldest = True
        if with_deadband and item.deadband is not None:
            deadband = ua.DataChangeFilter()
            deadband.Trigger = ua.DataChangeTrigger.StatusValue
            deadband.DeadbandType = (
                ua.DeadbandType.Percent if item.deadband.kind == "percent" else ua.DeadbandType.Absolute
            )
            deadband.DeadbandValue = item.deadband.value
            parameters.Filter = deadband
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = target
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = parameters
        return request

    async def _refused(self, item: MonitoredTag, status: ua.StatusCode) -> None:
        self._counters.read_errors += 1
        self._log_once(
            item.tag.signal,
            "monitoring refused",
            "device %s: %s (%s): the server refused to monitor it: %s",
            self.device_id,
            item.tag.signal,
            item.tag.address,
            status.name,
        )
        code = int(status.value)
        await self._emit(Sample(self.device_id, item.tag.signal, None, opcua_quality(code), self._now_ms(), code))

    # -- notifications ---------------------------------------------------------------------------------

    def _publish_callback(self, generation: int) -> PublishCallback:
        async def on_publish(result: ua.PublishResult) -> None:
            for notification in result.NotificationMessage.NotificationData or ():
                if isinstance(notification, ua.DataChangeNotification):
                    changes = (self._on_data_change(item) for item in notification.MonitoredItems)
                    await self._emit_many([sample for sample in changes if sample is not None])
                elif isinstance(notification, ua.StatusChangeNotification):
                    status = notification.Status
                    if status is not None and not status.is_good():
                        self._lost(generation, f"subscription {result.SubscriptionId}: {status.name}")

        return on_publish

    def _on_data_change(self, item: ua.MonitoredItemNotification) -> Sample | None:
        """Return the sample a data change carries; None for an item this subscription does not know."""
        tag = self._by_handle.get(item.ClientHandle)
        if tag is None:
            return None
        try:
            sample = sample_from_datavalue(self.device_id, tag, item.Value, self._now_ms())
        except UnsupportedValue as exc:
            self._counters.read_errors += 1
            self._log_once(
                tag.signal,
                "unsupported value",
                "device %s: %s (%s): cannot use %s",
                self.device_id,
                tag.signal,
                tag.address,
                exc,
            )
            sample = Sample(self.device_id, tag.signal, None, Quality.BAD, self._now_ms(), None)
        return sample
