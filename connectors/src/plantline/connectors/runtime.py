"""One connector process: sources -> outbox -> Sparkplug session -> MQTT, and back for PUBACKs.

An asyncio shell around the publish schedule (`plantline.connectors.scheduler`), which decides
what goes to the broker and when; this module does the I/O. Every sample a source yields is
appended to the durable outbox, in batches of one device, before anything is published; a batch
leaves the outbox only when the broker acknowledged the DDATA that carried it. Losing the
broker, the network or the process loses nothing: unacknowledged batches are published again,
flagged historical.

Batching follows what is waiting, not a timer: a device's samples are stored and published at
once when nothing of the device is in flight; while acknowledgements are outstanding they
accumulate, up to `batching.max_metrics`, and at most `batching.linger_ms` (which bounds how long
a sample stays in memory before it is on disk). PUBACKs arrive on this event loop (the MQTT link
has no thread of its own); the batches they deliver leave the outbox together, a few
milliseconds later, in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from prometheus_client import Counter, Gauge

from plantline.connectors.backoff import Backoff
from plantline.connectors.config import ConnectorConfig, Device
from plantline.connectors.health import HealthServer
from plantline.connectors.kpi import KpiEngine, gauge_values, sparkplug_metrics
from plantline.connectors.kpi.settings import kpi_config
from plantline.connectors.metrics import ConnectorMetrics
from plantline.connectors.mqtt import ConnectFailed, Inbound, MqttLink, MqttSession, Will
from plantline.connectors.outbox import Batch, CorruptionReport, Outbox
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.scheduler import Plan, PublishScheduler, Send, SetAside
from plantline.connectors.session import REBIRTH_METRIC, EdgeNodeSession, Rejected
from plantline.connectors.sources import Source, SourceState
from plantline.connectors.sparkplug import MessageType, SparkplugDecodeError, decode, parse_state_payload, parse_topic

log = logging.getLogger(__name__)

SLOWDOWN_UNDER_PRESSURE = 4.0
MAX_INFLIGHT_BATCHES = 500  # data messages awaiting PUBACK
REPLAY_ROUND_BATCHES = 4  # batches read back per round of a replay, between which the loop runs
BIRTH_WAIT_S = 2.0  # how long births wait for the first values of a PLC that is connecting
GOODBYE_TIMEOUT_S = 5.0  # how long an NDEATH waits for its PUBACK before the DISCONNECT
ACK_DELAY_S = 0.005  # delivered batches leave the outbox together, at most this long after their PUBACK
_quality_of = attrgetter("quality")
_ALL_GOOD = {Quality.GOOD}
UNFIT_CAUSES = {
    Rejected.UNKNOWN_DEVICE: "the device is not configured any more",
    Rejected.UNKNOWN_SIGNAL: "the signal is not configured for the device any more (or its KPIs were turned off)",
    Rejected.TYPE_MISMATCH: "the value does not fit the tag's datatype any more",
}


class SourceFailed(RuntimeError):
    """A source's own task ended while the connector ran: a bug, not a PLC problem."""


def default_source(device: Device) -> Source:
    """Return the source for a device's protocol."""
    if device.protocol == "opcua":
        from plantline.connectors.sources.opcua import OpcUaSource  # noqa: PLC0415 -- the opcua extra

        return OpcUaSource(device)
    if device.protocol == "s7":
        from plantline.connectors.sources.s7 import S7Source  # noqa: PLC0415 -- the s7 extra

        return S7Source(device)
    from plantline.connectors.sources.cip import CipSource  # noqa: PLC0415 -- the cip extra

    return CipSource(device)


@dataclass
class _DeviceFlow:
    source: Source
    samples: Counter  # plantline_samples_total of the device
    last_sample: Gauge
    kpi: KpiEngine | None = None
    kpi_published: float = 0.0
    buffer: list[Sample] = field(default_factory=list)
    flush: asyncio.Handle | None = None  # the flush the buffer's first sample scheduled
    read: bool = False  # samples were read from the device since the connector started
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # the source's own tasks
    seen: dict[str, int] = field(default_factory=dict)  # counters already exported


class Connector:
    """Runs one connector configuration until `stop` is set."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        source_factory: Callable[[Device], Source] = default_source,
        clock: Callable[[], float] = time.time,
        client_id: str | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = ConnectorMetrics.create()
        self.session = EdgeNodeSession.from_config(config)
        self.schedule = PublishScheduler(
            self.session,
            window=MAX_INFLIGHT_BATCHES,
            replay_share=config.outbox.replay_share,
            birth_wait_ms=int(BIRTH_WAIT_S * 1000),
            host_offline=config.sparkplug.primary_host_offline,
        )
        self.link = MqttLink(
            client_id=client_id or f"{config.sparkplug.group_id}-{config.sparkplug.edge_node_id}",
            brokers=config.brokers,
        )
        self._source_factory = source_factory
        self._flows: dict[str, _DeviceFlow] = {}
        self._mqtt: MqttSession | None = None
        self._inflight: dict[int, Send] = {}  # MQTT mid -> the data message it is
        self._acked: list[int] = []  # delivered batches, to leave the outbox within ACK_DELAY_S
        self._ack_timer: asyncio.TimerHandle | None = None
        self._unblocking = False  # _unblock is due in this turn of the loop
        self._messages: dict[str, Counter] = {}  # plantline_sparkplug_messages_total by type
        self._rebirths_counted = 0
        self._replay = asyncio.Event()  # the replay lane may have room
        self._walk = asyncio.Event()  # the primary host went offline: on to the next broker
        self._goodbye: list[int] = []  # the NDEATH of such a walk, to be acknowledged first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: int | None = None
        self._heartbeat = time.monotonic()
        self._seen_drops: dict[str, int] = {}
        self._unfit_logged: dict[Rejected, set[tuple[str, str | None]]] = {}  # one log line per cause
        self._outbox: Outbox | None = None
        self.health: HealthServer | None = None
        self.metrics.follow_sources(
            [device.id for device in config.devices],
            lambda: {device_id: source.refusal for device_id, source in self.sources.items()},
        )

    # -- the whole process ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.config.state_directory.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            self._outbox = stack.enter_context(Outbox.from_settings(self.config.outbox, on_corrupt=self._on_corrupt))
            if self.config.metrics_port:
                self.health = HealthServer(
                    address=self.config.metrics_address,
                    port=self.config.metrics_port,
                    registry=self.metrics.registry,
                    ready=self._ready,
                )
                self.health.start()
                stack.callback(self.health.stop)
            for device in self.config.devices:
                await self._open_source(device, stack)
            stack.callback(self._cancel_timer)
            async with asyncio.TaskGroup() as tasks:
                closing = asyncio.Event()
                mqtt = tasks.create_task(self._supervise_mqtt(closing), name="mqtt")
                workers = [
                    tasks.create_task(self._replay_loop(), name="replay"),
                    tasks.create_task(self._housekeeping(), name="housekeeping"),
                ]
                pumps = []
                for device_id, flow in self._flows.items():
                    pumps.append(tasks.create_task(self._pump(device_id, flow), name=f"pump:{device_id}"))
                    workers.append(tasks.create_task(self._watch_device(device_id, flow), name=f"watch:{device_id}"))
                    workers += [tasks.create_task(self._watch_task(device_id, t)) for t in flow.tasks]
                await stop.wait()
                # Stop reading first: a sample a pump took after the last flush would be lost.
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                for device_id in self._flows:
                    self._flush(device_id)
                closing.set()
                await mqtt  # the NDEATH, its PUBACK, the DISCONNECT
                for worker in workers:
                    worker.cancel()
            self._ack_delivered()
        log.info("connector stopped")

    async def _open_source(self, device: Device, stack: contextlib.AsyncExitStack) -> None:
        """Enter the device's source; the tasks it starts are watched like the connector's own."""
        before = asyncio.all_tasks()
        source = await stack.enter_async_context(self._source_factory(device))
        engine = KpiEngine(device.id, kpi_config(device, self.config.shifts)) if device.computes_kpis else None
        samples, last = self.metrics.samples.labels(device.id), self.metrics.source_last_sample.labels(device.id)
        flow = _DeviceFlow(source, samples, last, engine)
        flow.tasks = asyncio.all_tasks() - before
        self._flows[device.id] = flow

    async def _watch_task(self, device_id: str, task: asyncio.Task[Any]) -> None:
        """Fail the connector (its supervisor restarts it) when a source's own task ends."""
        await asyncio.wait({task})
        cause = None if task.cancelled() else task.exception()
        log.error("the source of device %s stopped working (its task %s ended: %r)", device_id, task.get_name(), cause)
        raise SourceFailed(f"device {device_id}: the source's task {task.get_name()} ended") from cause

    # -- from sources to the outbox ---------------------------------------------------------------

    async def _pump(self, device_id: str, flow: _DeviceFlow) -> None:
        limit = self.config.batching.max_metrics
        async for samples in flow.source.batches():
            waiting = bool(flow.buffer)
            if waiting:
                flow.buffer += samples
            else:
                flow.buffer = samples  # the source handed this list over: it is ours
            if len(flow.buffer) >= limit:
                self._flush(device_id)
            elif not waiting:
                self._schedule_flush(device_id, flow)

    def _schedule_flush(self, device_id: str, flow: _DeviceFlow) -> None:
        """A first sample is buffered: flush what is waiting now, or at the latest after linger_ms."""
        loop = asyncio.get_running_loop()
        if self.schedule.idle(device_id):
            # Nothing of the device in flight: go once the samples available now are taken.
            flow.flush = loop.call_soon(self._flush, device_id)
        else:
            flow.flush = loop.call_later(self.config.batching.linger_ms / 1000, self._flush, device_id)

    def _flush(self, device_id: str) -> None:
        flow = self._flows[device_id]
        if flow.flush is not None:
            flow.flush.cancel()
            flow.flush = None
        if not flow.buffer or self._outbox is None:
            return
        limit = self.config.batching.max_metrics
        waiting, flow.buffer = flow.buffer, []
        flow.read = True
        for start in range(0, len(waiting), limit):  # a DDATA carries at most max_metrics
            self._store(self._outbox, flow, device_id, waiting[start : start + limit])

    def _store(self, outbox: Outbox, flow: _DeviceFlow, device_id: str, batch: list[Sample]) -> None:
        """Append one batch to the outbox, hand it to the schedule, and count it."""
        stored = Batch(outbox.append(batch), tuple(batch), self.clock(), False)
        self._execute(self.schedule.stored(stored, self._now_ms()))
        flow.samples.inc(len(batch))
        flow.last_sample.set_to_current_time()
        qualities = set(map(_quality_of, batch))  # at C speed: most batches are all good
        if qualities != _ALL_GOOD:
            for sample in batch:
                if sample.quality is not Quality.GOOD:
                    self.metrics.samples_bad_quality.labels(device_id, str(sample.quality)).inc()
        if flow.kpi is not None:
            for sample in batch:
                flow.kpi.update(sample)

    # -- device lifecycle: DBIRTH / DDEATH --------------------------------------------------------

    async def _watch_device(self, device_id: str, flow: _DeviceFlow) -> None:
        source = flow.source
        while True:
            state = await source.wait_for_state(SourceState.CONNECTED, SourceState.BACKOFF, SourceState.CLOSED)
            if state is SourceState.CONNECTED:
                self.metrics.source_connected.labels(device_id).set(1)
                self._execute(self.schedule.device_up(device_id, self._now_ms()))
                state = await source.wait_for_state(SourceState.BACKOFF, SourceState.DISCONNECTED, SourceState.CLOSED)
            self.metrics.source_connected.labels(device_id).set(0)
            self._flush(device_id)  # what was read before the loss goes before the DDEATH
            self._execute(self.schedule.device_down(device_id, self._now_ms()))
            if state is SourceState.CLOSED:
                return
            await source.wait_for_state(SourceState.CONNECTED, SourceState.CLOSED)

    # -- MQTT sessions ----------------------------------------------------------------------------

    async def _supervise_mqtt(self, closing: asyncio.Event) -> None:
        """Keep an MQTT session open until `closing`; then say goodbye (NDEATH, DISCONNECT)."""
        backoff = Backoff(initial=0.2, cap=30.0)
        start = 0  # the broker to try first: the list's first, or the next one after a walk
        while not closing.is_set():
            death = self.session.prepare_connect()
            self.metrics.sparkplug_bdseq.set(self.session.bdseq or 0)
            will = Will(death.topic, death.payload, death.qos, death.retain)
            try:
                async with self.link.session(
                    will, on_message=self._on_message, on_puback=self._on_puback, start=start
                ) as mqtt:
                    backoff.reset()
                    if closing.is_set():  # stopped while connecting: nothing was born, nothing to say
                        return
                    start = await self._serve(mqtt, closing)
            except ConnectFailed as exc:
                self.metrics.mqtt_refused.set(1 if exc.refused else 0)
                delay = backoff.next_delay()
                log.warning("no broker accepted the connection (%s); retrying in %.1f s", exc.reason, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), delay)

    async def _serve(self, mqtt: MqttSession, closing: asyncio.Event) -> int:
        """Run one MQTT session until it ends; return the broker to try first next time."""
        connected = self.metrics.mqtt_connected.labels(mqtt.where)
        self.metrics.mqtt_refused.set(0)
        connected.set(1)
        self._mqtt = mqtt
        self._walk.clear()
        try:
            mqtt.subscribe(self.session.subscriptions())
            self._execute(self.schedule.connected(self._now_ms()))
            waits = {asyncio.ensure_future(e.wait()) for e in (closing, mqtt.lost, self._walk)}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
            if mqtt.lost.is_set():
                return 0
            if closing.is_set():
                goodbye = [self._publish(Send(m)) for m in self.schedule.shutdown(self._now_ms())]
                await self._acknowledged(mqtt, [mid for mid in goodbye if mid is not None])
                return 0
            # The primary host went offline: the NDEATH is out; DISCONNECT, then the next broker.
            await self._acknowledged(mqtt, self._goodbye)
            following = (mqtt.index + 1) % len(self.link.brokers)
            log.warning(
                "the primary host %s is offline: NDEATH sent, disconnecting from %s; next: %s:%d",
                self.session.primary_host_id,
                mqtt.where,
                self.link.brokers[following].host,
                self.link.brokers[following].port,
            )
            return following
        finally:
            self._mqtt = None
            self._goodbye = []
            self._ack_delivered()  # what was delivered leaves now, not again after the requeue
            self.schedule.lost()
            self._inflight.clear()
            self._require_outbox().requeue_in_flight()
            connected.set(0)

    @staticmethod
    async def _acknowledged(mqtt: MqttSession, mids: list[int]) -> None:
        """Wait for the PUBACKs of these messages (at most GOODBYE_TIMEOUT_S; not past the session)."""
        if mids:
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.gather(*(mqtt.delivered(mid) for mid in mids)), GOODBYE_TIMEOUT_S)

    def _on_message(self, message: Inbound) -> None:
        try:
            topic = parse_topic(message.topic)
        except ValueError:
            log.warning("ignored a message on an unexpected topic %s", message.topic)
            return
        now = self._now_ms()
        if topic.message_type is MessageType.STATE:
            try:
                state = parse_state_payload(message.payload)
            except ValueError as exc:
                log.warning("ignored a malformed STATE from %s: %s", topic.host_id, exc)
                return
            self._execute(self.schedule.host_state(state, now))
        elif topic.message_type is MessageType.NCMD:
            try:
                payload = decode(message.payload)
            except SparkplugDecodeError as exc:
                log.warning("ignored a malformed NCMD: %s", exc)
                return
            if any(m.name == REBIRTH_METRIC and m.value is True for m in payload.metrics):
                plan = self.schedule.rebirth_requested(now)
                outcome = "births sent" if plan.sends else "deferred to the end of the debounce"
                log.info("rebirth requested: %s", outcome)
                self._execute(plan)
        elif topic.message_type is MessageType.DCMD:
            log.info("DCMD for %s ignored: writes to devices are not supported", topic.device_id)

    # -- carrying out the schedule's plans --------------------------------------------------------

    def _execute(self, plan: Plan) -> None:
        """Do what the schedule planned: claim, set aside, publish (in its order)."""
        if plan.claim is not None and not self._require_outbox().claim(plan.claim):
            self.schedule.unclaimed()
        for aside in plan.set_aside:
            self._set_aside(aside)
        for send in plan.sends:
            mid = self._publish(send)
            if mid is None:
                break  # the session is lost; its requeue hands the batches out again
            if plan.disconnect:
                self._goodbye.append(mid)
        if plan.disconnect:
            self._walk.set()
        if plan.sends:
            self._replay.set()
        self._arm_timer()

    def _publish(self, send: Send) -> int | None:
        """Publish a message; return its MQTT message id, None when there is no session."""
        mqtt, message = self._mqtt, send.message
        if mqtt is None:
            return None
        try:
            mid = mqtt.publish(message.topic, message.payload, message.qos, message.retain)
        except ConnectionError:
            return None
        counter = self._messages.get(message.kind)
        if counter is None:
            counter = self._messages[message.kind] = self.metrics.sparkplug_messages.labels(message.kind)
        counter.inc()
        if message.kind == MessageType.NBIRTH:
            self._count_rebirths()
        if send.batch_id is not None:
            if message.qos == 0:
                self._delivered(send)  # QoS 0: no PUBACK will come
            else:
                self._inflight[mid] = send
        return mid

    def _count_rebirths(self) -> None:
        """Bring the rebirths counter up to the session's count (births of a bdSeq born already)."""
        new = self.session.rebirths - self._rebirths_counted
        if new > 0:
            self.metrics.sparkplug_rebirths.inc(new)
            self._rebirths_counted = self.session.rebirths

    def _set_aside(self, aside: SetAside) -> None:
        """Keep samples that no longer fit the configuration in the outbox's unfit table, counted."""
        unfit = {str(reason): samples for reason, samples in aside.rejected.items()}
        self._require_outbox().set_aside(aside.batch_id, unfit, remove=aside.whole)
        for reason, samples in aside.rejected.items():
            self.metrics.outbox_quarantined.labels(str(reason)).inc(len(samples))
            causes: set[tuple[str, str | None]]
            if reason is Rejected.UNKNOWN_DEVICE:
                causes = {(sample.device, None) for sample in samples}
            else:
                causes = {(sample.device, sample.signal) for sample in samples}
            for device, signal in causes - self._unfit_logged.setdefault(reason, set()):
                self._unfit_logged[reason].add((device, signal))
                log.warning(
                    "buffered samples of %s no longer fit the configuration (%s: %s); they are set aside in the "
                    "outbox's unfit table, the rest is published",
                    device if signal is None else f"{device} {signal}",
                    reason,
                    UNFIT_CAUSES[reason],
                )

    def _on_puback(self, mid: int) -> None:
        send = self._inflight.pop(mid, None)
        if send is not None:
            self._delivered(send)

    def _delivered(self, send: Send) -> None:
        done = self.schedule.acked(send)
        if done is None:
            return
        loop = asyncio.get_running_loop()
        if not self._acked:
            # Deleting from the outbox can wait a moment, to take several batches per transaction.
            self._ack_timer = loop.call_later(ACK_DELAY_S, self._ack_delivered)
        self._acked.append(done.batch_id)
        if not self._unblocking:
            self._unblocking = True
            loop.call_soon(self._unblock)
        self.metrics.ingest_lag.observe(max(0.0, self.clock() - done.oldest_ts_ms / 1000))

    def _unblock(self) -> None:
        """After this turn's PUBACKs: flush the buffers that waited for them, let the replay go on."""
        self._unblocking = False
        for device_id, flow in self._flows.items():
            if flow.buffer and self.schedule.idle(device_id):
                self._flush(device_id)
        self._replay.set()

    def _ack_delivered(self) -> None:
        """Remove the delivered batches from the outbox, in one transaction."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        delivered, self._acked = self._acked, []
        if self._outbox is not None and delivered:
            self._outbox.ack(delivered)

    async def _replay_loop(self) -> None:
        """Publish what the outbox holds from before, within the replay lane's share of the window."""
        outbox = self._require_outbox()
        limit = self.config.batching.max_metrics
        while True:
            await self._replay.wait()
            self._replay.clear()
            while (room := self.schedule.replay_room()) > 0:
                batches = outbox.pending(max_samples=min(room, REPLAY_ROUND_BATCHES) * limit)
                self._execute(self.schedule.replayed(batches, self._now_ms()))
                if not batches:
                    break
                await asyncio.sleep(0)  # between rounds, PUBACKs, sources and the live lane run

    def _arm_timer(self) -> None:
        due = self.schedule.next_deadline_ms()
        if due == self._timer_due:
            return
        self._cancel_timer()
        if due is not None:
            self._timer_due = due
            delay = max(0.0, due / 1000 - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_due = None, None

    def _on_timer(self) -> None:
        self._timer, self._timer_due = None, None
        self._execute(self.schedule.tick(self._now_ms()))

    # -- every second -----------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Each second: export stats, adapt sampling, publish KPIs (buffers flush on their own)."""
        while True:
            now = self._heartbeat = time.monotonic()
            self._export_stats()
            self._publish_kpis(now)
            await asyncio.sleep(1.0)

    def _export_stats(self) -> None:
        outbox = self._outbox
        if outbox is None:
            return
        stats = outbox.stats()
        m = self.metrics
        m.outbox_batches.set(stats.batches)
        m.outbox_samples.set(stats.samples)
        m.outbox_bytes.set(stats.bytes)
        m.outbox_oldest_age.set(stats.oldest_age_s or 0.0)
        factor = SLOWDOWN_UNDER_PRESSURE if stats.pressure else 1.0
        for device_id, flow in self._flows.items():
            flow.source.set_slowdown(factor)
            m.sampling_slowdown.labels(device_id).set(factor)
            counters = flow.source.counters
            for name, metric in (("reconnects", m.source_reconnects), ("read_errors", m.source_read_errors)):
                value = getattr(counters, name)
                delta = value - flow.seen.get(name, 0)
                if delta > 0:
                    metric.labels(device_id).inc(delta)
                flow.seen[name] = value
        for reason, dropped in stats.dropped.items():
            delta = dropped.samples - self._seen_drops.get(str(reason), 0)
            if delta > 0:
                m.outbox_dropped.labels(str(reason)).inc(delta)
            self._seen_drops[str(reason)] = dropped.samples

    def _publish_kpis(self, now: float) -> None:
        """Snapshot each device's KPIs into the outbox (as its kpi/* metrics) and the gauges.

        Not before the device was read once: KPIs of a machine nothing is known of are noise.
        """
        outbox = self._require_outbox()
        interval = {d.id: d.kpi.publish_interval_s for d in self.config.devices}
        for device_id, flow in self._flows.items():
            if flow.kpi is None or not flow.read or now - flow.kpi_published < interval[device_id]:
                continue
            flow.kpi_published = now
            now_ms = self._now_ms()
            snapshot = flow.kpi.snapshot(now_ms)
            samples = [
                Sample(device_id, name, value, Quality.GOOD, now_ms)
                for name, (value, _datatype) in sparkplug_metrics(snapshot).items()
            ]
            stored = Batch(outbox.append(samples), tuple(samples), self.clock(), False)
            self._execute(self.schedule.stored(stored, now_ms, readings=False))
            for name, scope, value in gauge_values(snapshot):
                self.metrics.kpi[name].labels(device_id, scope).set(value)

    def _on_corrupt(self, report: CorruptionReport) -> None:
        log.error("outbox damage set aside: %s", report.detail)
        self.metrics.outbox_corrupt.inc()
        self.metrics.outbox_quarantined.labels("corrupt").inc(report.samples)

    # -- helpers ----------------------------------------------------------------------------------

    def _require_outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("the connector is not running")
        return self._outbox

    def _ready(self) -> bool:
        return self.session.can_publish_data and time.monotonic() - self._heartbeat < 10

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def sources(self) -> Mapping[str, Source]:
        return {device_id: flow.source for device_id, flow in self._flows.items()}
