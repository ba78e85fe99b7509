"""The Sparkplug B edge-node session, sans I/O: what to publish, in which order, with which seq.

It owns `seq` (0-255, wrapping) and `bdSeq`, the metric aliases, the last value of every metric
(births carry current values), which devices are born on the MQTT session and which of them
can reach their PLC. The runtime's publish schedule (`plantline.connectors.scheduler`) feeds it
events (connected, device up/down, samples, commands) and publishes the messages it returns.

Births: `births()` returns the NBIRTH and a DBIRTH for every configured device, so every device
is born right after the NBIRTH and before any data of the session (payloads-dbirth-order). A
device whose PLC is not reachable at that moment is born all the same, its metrics null
(is_null) with Quality bad, so that its buffered data can be replayed; its values then arrive
as DDATA. A device whose PLC is lost later gets a DDEATH, and a DBIRTH when it is back.

QoS: births and deaths follow the specification (NBIRTH/DBIRTH/DDEATH at QoS 0, the NDEATH Will
at QoS 1, nothing retained). Data (DDATA) goes at `data_qos`, 1 by default: the durable outbox
releases a sample only on the broker's PUBACK, which QoS 0 never sends. Set it to 0 for strict
`payloads-ddata-qos` conformance at the price of that guarantee.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plantline.connectors.config import ConnectorConfig, DataTypeName, Tag
from plantline.connectors.kpi import SPARKPLUG_METRICS as KPI_METRICS
from plantline.connectors.samples import Quality, Sample, Value
from plantline.connectors.sparkplug import (
    DataType,
    HostState,
    MessageType,
    Metric,
    Payload,
    PropertyValue,
    Topic,
    Uint32Field,
    encode,
    encode_ddata,
    format_topic,
)
from plantline.connectors.sparkplug.codec import DataMetric

REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
FIRST_DEVICE_ALIAS = 100
# Sparkplug's "Quality" property (Int32): 192 good, 0 bad; uncertain uses the OPC value 64.
QUALITY_CODES = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}

_DATATYPES: dict[DataTypeName, DataType] = {
    "bool": DataType.Boolean,
    "int8": DataType.Int8,
    "int16": DataType.Int16,
    "int32": DataType.Int32,
    "int64": DataType.Int64,
    "uint8": DataType.UInt8,
    "uint16": DataType.UInt16,
    "uint32": DataType.UInt32,
    "uint64": DataType.UInt64,
    "float": DataType.Float,
    "double": DataType.Double,
    "string": DataType.String,
    "datetime": DataType.DateTime,
}


def metric_datatype(tag: Tag) -> DataType:
    """Return the Sparkplug datatype a tag is published as (Double once it is scaled)."""
    scaled = tag.scale != 1.0 or tag.offset != 0.0
    if scaled and tag.datatype not in ("bool", "string", "datetime"):
        return DataType.Double
    return _DATATYPES[tag.datatype]


class Phase(enum.StrEnum):
    """Where the session is."""

    OFFLINE = "offline"  # no MQTT session
    WAITING_FOR_HOST = "waiting_for_host"  # connected; the primary host is not ONLINE
    BIRTHS_PENDING = "births_pending"  # connected and nothing holds the births back; not born yet
    ONLINE = "online"  # NBIRTH sent; data may flow


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message to publish."""

    kind: MessageType
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    device_id: str | None = None


@dataclass(slots=True)
class _MetricState:
    name: str
    alias: int
    datatype: DataType
    unit: str | None
    value: Value | None = None
    quality: Quality = Quality.BAD
    protocol_code: int | None = None
    timestamp_ms: int | None = None


@dataclass(slots=True)
class _DeviceState:
    metrics: dict[str, _MetricState] = field(default_factory=dict)
    born: bool = False  # a DBIRTH went out on this MQTT session and no DDEATH since
    reachable: bool = False  # its PLC is connected (births of an unreachable device carry no values)
    # signal -> (alias, datatype), for the data path
    table: dict[str, tuple[int, DataType]] = field(default_factory=dict)


class HostNews(enum.Enum):
    """What a primary host STATE tells the edge node."""

    ONLINE = "online"  # births may go (and data flow once they did)
    WENT_OFFLINE = "went_offline"  # newer than any STATE seen: the host went away just now
    STILL_OFFLINE = "still_offline"  # the offline STATE seen already (e.g. retained, on a reconnect)
    STALE = "stale"  # older than the latest STATE seen: ignored


class Rejected(enum.StrEnum):
    """Why buffered samples no longer fit the configuration (they are quarantined, not published)."""

    UNKNOWN_DEVICE = "unknown_device"  # the machine was removed
    UNKNOWN_SIGNAL = "unknown_signal"  # the tag was removed or renamed, or the KPIs were turned off
    TYPE_MISMATCH = "type_mismatch"  # the tag was retyped and the value does not fit the new type


@dataclass(slots=True)
class DataMessages:
    """What `data` made of some samples: the messages, and the samples it refused by reason."""

    messages: list[Outgoing]
    rejected: dict[Rejected, list[Sample]]


class BdSeqStore:
    """The persisted birth/death sequence number: one small file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def current(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        if not text.isdigit() or int(text) > 255:
            raise ValueError(f"{self.path}: expected a bdSeq from 0 to 255, found {text!r}")
        return int(text)

    def advance(self) -> int:
        """Return the bdSeq for the next MQTT CONNECT, persisted before it is used."""
        current = self.current()
        value = 0 if current is None else (current + 1) % 256
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        return value


def _data_props(sample: Sample) -> tuple[tuple[str, PropertyValue], ...] | None:
    if sample.quality is Quality.GOOD:
        return None  # no Quality property in data means good: most samples carry no properties
    props = [("Quality", PropertyValue(DataType.Int32, QUALITY_CODES[sample.quality]))]
    if sample.protocol_code is not None:
        props.append(("plantline.protocol_code", PropertyValue(DataType.Int64, sample.protocol_code)))
    return tuple(props)


def _props(state: _MetricState, *, birth: bool) -> tuple[tuple[str, PropertyValue], ...]:
    props: list[tuple[str, PropertyValue]] = []
    if birth and state.unit:
        props.append(("engUnit", PropertyValue(DataType.String, state.unit)))
    if birth or state.quality is not Quality.GOOD:
        props.append(("Quality", PropertyValue(DataType.Int32, QUALITY_CODES[state.quality])))
    if state.protocol_code is not None and (birth or state.quality is not Quality.GOOD):
        props.append(("plantline.protocol_code", PropertyValue(DataType.Int64, state.protocol_code)))
    return tuple(props)


class EdgeNodeSession:
    """The Sparkplug state of one edge node and its devices."""

    def __init__(
        self,
        *,
        group_id: str,
        edge_node_id: str,
        devices: Mapping[str, Sequence[Tag]],
        bdseq: BdSeqStore,
        derived: Mapping[str, Mapping[str, DataType]] | None = None,
        primary_host_id: str | None = None,
        data_qos: int = 1,
        rebirth_debounce_ms: int = 1000,
        uint32_field: Uint32Field = "int_value",
    ) -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.primary_host_id = primary_host_id
        self.data_qos = data_qos
        self.rebirth_debounce_ms = rebirth_debounce_ms
        self.uint32_field = uint32_field  # for DBIRTH and DDATA: node messages carry no UInt32
        self._bdseq_store = bdseq
        self.bdseq: int | None = None
        self.rebirths = 0  # births of a bdSeq session that was born already (plantline_sparkplug_rebirths)
        self._born_bdseq: int | None = None
        self.phase = Phase.OFFLINE
        self._seq = 0
        self._last_birth_ms: int | None = None
        self._rebirth_due_ms: int | None = None
        self._host_timestamp: int | None = None  # of the latest primary host STATE, across MQTT sessions
        self._devices: dict[str, _DeviceState] = {}
        alias = FIRST_DEVICE_ALIAS
        for device_id, tags in devices.items():
            state = _DeviceState()
            for tag in tags:
                state.metrics[tag.signal] = _MetricState(tag.signal, alias, metric_datatype(tag), tag.unit)
                alias += 1
            # Metrics the edge computes for the device (KPIs), after its tags.
            for name, datatype in (derived or {}).get(device_id, {}).items():
                state.metrics[name] = _MetricState(name, alias, datatype, None)
                alias += 1
            state.table = {name: (m.alias, m.datatype) for name, m in state.metrics.items()}
            self._devices[device_id] = state
        self._topics = {device_id: self.topic(MessageType.DDATA, device_id) for device_id in self._devices}

    @classmethod
    def from_config(cls, config: ConnectorConfig) -> EdgeNodeSession:
        return cls(
            group_id=config.sparkplug.group_id,
            edge_node_id=config.sparkplug.edge_node_id,
            devices={d.id: d.tags for d in config.devices},
            bdseq=BdSeqStore(config.state_directory / "bdseq"),
            derived={
                d.id: {name: _DATATYPES[datatype] for name, datatype in KPI_METRICS.items()}
                for d in config.devices
                if d.computes_kpis
            },
            primary_host_id=config.sparkplug.primary_host_id,
            uint32_field=config.sparkplug.uint32_field,
        )

    @property
    def devices(self) -> list[str]:
        """The configured devices, in configuration order."""
        return list(self._devices)

    # -- topics -----------------------------------------------------------------------------------

    def topic(self, kind: MessageType, device_id: str | None = None) -> str:
        return format_topic(Topic(self.group_id, kind, self.edge_node_id, device_id))

    def subscriptions(self) -> list[tuple[str, int]]:
        """Return the topics to subscribe to: our NCMD and DCMDs, and the primary host's STATE."""
        # A topic filter, not a topic: the device level is a wildcard (edge-subscribe-dcmd).
        dcmd = f"{self.topic(MessageType.NCMD).rsplit('/', 2)[0]}/{MessageType.DCMD}/{self.edge_node_id}/+"
        subs = [(self.topic(MessageType.NCMD), 1), (dcmd, 1)]
        if self.primary_host_id:
            subs.append((format_topic(Topic(None, MessageType.STATE, None, None, self.primary_host_id)), 1))
        return subs

    # -- the MQTT session's life ------------------------------------------------------------------

    def prepare_connect(self) -> Outgoing:
        """Advance and persist bdSeq, and return the NDEATH to register as the CONNECT's Will."""
        self.bdseq = self._bdseq_store.advance()
        return self._ndeath()

    def _ndeath(self) -> Outgoing:
        if self.bdseq is None:
            raise RuntimeError("prepare_connect() must come first")
        payload = Payload(
            timestamp=None,
            seq=None,  # payloads-ndeath-seq: an NDEATH carries no sequence number
            metrics=(Metric(BDSEQ_METRIC, None, None, DataType.Int64, self.bdseq),),
        )
        return Outgoing(MessageType.NDEATH, self.topic(MessageType.NDEATH), encode(payload), qos=1)

    def shutdown(self, now_ms: int) -> list[Outgoing]:
        """Return the NDEATH a clean shutdown publishes before disconnecting."""
        if self.phase is Phase.OFFLINE:
            return []
        self.on_disconnected()
        death = self._ndeath()
        payload = Payload(
            timestamp=now_ms,
            seq=None,
            metrics=(Metric(BDSEQ_METRIC, None, now_ms, DataType.Int64, self.bdseq),),
        )
        return [Outgoing(death.kind, death.topic, encode(payload), qos=1)]

    def on_connected(self, now_ms: int) -> list[Outgoing]:
        """The MQTT session is up: births now, or once the primary host is ONLINE."""
        self.on_session_open()
        return self.births(now_ms) if self.births_allowed else []

    def on_session_open(self) -> None:
        """The MQTT session is up; births are the caller's to time (`births_allowed`, `births`)."""
        self.phase = Phase.WAITING_FOR_HOST if self.primary_host_id else Phase.BIRTHS_PENDING

    def on_disconnected(self) -> None:
        self.phase = Phase.OFFLINE
        for device in self._devices.values():
            device.born = False

    def on_host_state(self, state: HostState) -> HostNews:
        """The primary host's STATE arrived: births may go while it is ONLINE; data waits while it is not.

        A STATE older than the latest one seen is stale (a retained message of a past session on
        another broker) and changes nothing (message-flow-edge-node-birth-publish-phid-wait-timestamp).
        """
        if self._host_timestamp is not None and state.timestamp < self._host_timestamp:
            return HostNews.STALE
        newer = self._host_timestamp is None or state.timestamp > self._host_timestamp
        self._host_timestamp = state.timestamp
        if state.online:
            if self.phase is Phase.WAITING_FOR_HOST:
                self.phase = Phase.BIRTHS_PENDING
            return HostNews.ONLINE
        if self.phase in (Phase.ONLINE, Phase.BIRTHS_PENDING):
            self.phase = Phase.WAITING_FOR_HOST
        return HostNews.WENT_OFFLINE if newer else HostNews.STILL_OFFLINE

    def on_rebirth_request(self, now_ms: int) -> list[Outgoing]:
        """NCMD Node Control/Rebirth: births again with the same bdSeq, at most once per debounce.

        A request inside the debounce window is not dropped: the host asked because it lacks
        births (e.g. it joined through a bridge just after them), so it is due when the window
        ends (`due_rebirth`), and several requests meanwhile make one rebirth.
        """
        if self.phase is not Phase.ONLINE:
            return []
        if self._last_birth_ms is not None and now_ms - self._last_birth_ms < self.rebirth_debounce_ms:
            self._rebirth_due_ms = self._last_birth_ms + self.rebirth_debounce_ms
            return []
        return self.births(now_ms)

    def due_rebirth(self, now_ms: int) -> list[Outgoing]:
        """Return the births of a rebirth deferred by the debounce once its time has come."""
        if self._rebirth_due_ms is None or now_ms < self._rebirth_due_ms:
            return []
        self._rebirth_due_ms = None
        return self.on_rebirth_request(now_ms)

    @property
    def rebirth_due_ms(self) -> int | None:
        """When a deferred rebirth is due (None: none is)."""
        return self._rebirth_due_ms

    @property
    def births_allowed(self) -> bool:
        """Whether the session is up and no primary host holds the births back."""
        return self.phase is Phase.BIRTHS_PENDING

    @property
    def can_publish_data(self) -> bool:
        return self.phase is Phase.ONLINE

    # -- devices ----------------------------------------------------------------------------------

    def set_reachable(self, device_id: str, reachable: bool) -> None:
        """Record whether the device's PLC is connected (births of an unreachable one carry no values)."""
        self._device(device_id).reachable = reachable

    def device_online(self, device_id: str, now_ms: int) -> list[Outgoing]:
        """The device's PLC is reachable: its DBIRTH, unless it is born already or the node is not."""
        device = self._device(device_id)
        device.reachable = True
        if self.phase is not Phase.ONLINE or device.born:
            return []
        return [self._dbirth(device_id, now_ms)]

    def device_offline(self, device_id: str, now_ms: int) -> list[Outgoing]:
        """The device's PLC is lost: DDEATH (when it was born on this session)."""
        device = self._device(device_id)
        device.reachable = False
        was_born, device.born = device.born, False
        if not was_born or self.phase is not Phase.ONLINE:
            return []
        payload = Payload(timestamp=now_ms, seq=self._next_seq(), metrics=())
        return [
            Outgoing(
                MessageType.DDEATH, self.topic(MessageType.DDEATH, device_id), encode(payload), 0, device_id=device_id
            )
        ]

    def knows(self, device_id: str) -> bool:
        """Whether the device is in the configuration."""
        return device_id in self._devices

    def device_is_born(self, device_id: str) -> bool:
        """Whether data of the device may be published now (its DBIRTH went out on this session)."""
        device = self._devices.get(device_id)
        return device is not None and device.born and self.phase is Phase.ONLINE

    # -- data -------------------------------------------------------------------------------------

    def remember(self, samples: Sequence[Sample], device_id: str | None = None) -> None:
        """Record the latest values (for births) without publishing them.

        With `device_id` (every sample is of that device), only the last sample of each signal is
        looked at: the scan from the end stops once every metric of the device was seen.
        """
        if device_id is None:
            for sample in samples:
                self.remember((sample,), sample.device)
            return
        metrics = self._device(device_id).metrics
        wanted = len(metrics)
        seen: set[str] = set()
        for sample in reversed(samples):
            signal = sample.signal
            if signal in seen:
                continue
            seen.add(signal)
            state = metrics.get(signal)
            if state is not None and (state.timestamp_ms is None or sample.source_ts_ms >= state.timestamp_ms):
                state.value = sample.value
                state.quality = sample.quality
                state.protocol_code = sample.protocol_code
                state.timestamp_ms = sample.source_ts_ms
            if len(seen) == wanted:
                break

    def data(self, samples: Sequence[Sample], now_ms: int, *, historical: bool) -> DataMessages:
        """Return one DDATA per device with the samples as metrics by alias, and what was refused.

        Samples that no longer fit the configuration (their device or signal is not configured,
        or their value does not fit the metric's datatype) are refused, by reason, and the rest
        is published. Every device of the samples must be born on this session (the caller
        defers the samples of devices that are not).
        """
        if self.phase is not Phase.ONLINE:
            raise RuntimeError("data() needs an online session")
        by_device: dict[str, list[DataMetric]] = {}
        rejected: dict[Rejected, list[Sample]] = {}
        current: str | None = None
        table: dict[str, tuple[int, DataType]] | None = None
        metrics: list[DataMetric] = []
        good = Quality.GOOD
        for sample in samples:
            device_id, signal, value, quality, source_ts_ms, _code = sample  # cheaper than six field reads
            if device_id != current:
                current = device_id
                device = self._devices.get(current)
                table = None if device is None else device.table
                if device is not None:
                    if not device.born:
                        raise RuntimeError(f"device {current} is not born on this session")
                    metrics = by_device.setdefault(current, [])
            if table is None:
                rejected.setdefault(Rejected.UNKNOWN_DEVICE, []).append(sample)
                continue
            entry = table.get(signal)
            if entry is None:
                rejected.setdefault(Rejected.UNKNOWN_SIGNAL, []).append(sample)
                continue
            # payloads-alias-data-cmd-requirement: DDATA metrics carry the alias, not the name
            metrics.append(
                (
                    entry[0],
                    source_ts_ms,
                    entry[1],
                    value,
                    None if quality is good else _data_props(sample),
                )
            )
        messages = []
        for device_id, device_metrics in by_device.items():
            if not device_metrics:
                continue
            payload = self._encode_data(device_id, device_metrics, samples, now_ms, historical, rejected)
            if payload is not None:
                messages.append(
                    Outgoing(MessageType.DDATA, self._topics[device_id], payload, self.data_qos, device_id=device_id)
                )
        return DataMessages(messages, rejected)

    def _encode_data(
        self,
        device_id: str,
        metrics: list[DataMetric],
        samples: Sequence[Sample],
        now_ms: int,
        historical: bool,
        rejected: dict[Rejected, list[Sample]],
    ) -> bytes | None:
        """Return a DDATA payload of the metrics; those whose value does not fit go to `rejected`."""
        try:
            payload = encode_ddata(
                self._seq, now_ms, metrics, strip_datatypes=True, historical=historical, uint32_field=self.uint32_field
            )
        except ValueError:
            # A retyped tag: find what does not fit, one metric at a time (rare, so slow is fine).
            kept = []
            mine = [s for s in samples if s.device == device_id and s.signal in self._devices[device_id].table]
            for sample, metric in zip(mine, metrics, strict=True):
                try:
                    encode_ddata(0, now_ms, [metric], strip_datatypes=True, uint32_field=self.uint32_field)
                except ValueError:
                    rejected.setdefault(Rejected.TYPE_MISMATCH, []).append(sample)
                else:
                    kept.append(metric)
            if not kept:
                return None
            payload = encode_ddata(
                self._seq, now_ms, kept, strip_datatypes=True, historical=historical, uint32_field=self.uint32_field
            )
        self._next_seq()  # taken only by a message that goes out
        return payload

    # -- internals --------------------------------------------------------------------------------

    def _device(self, device_id: str) -> _DeviceState:
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(f"unknown device {device_id!r}") from None

    def _next_seq(self) -> int:
        value = self._seq
        self._seq = (self._seq + 1) % 256
        return value

    def births(self, now_ms: int) -> list[Outgoing]:
        """Return the NBIRTH and, right after it, a DBIRTH for every configured device."""
        if self.bdseq is None:
            raise RuntimeError("prepare_connect() must come first")
        self._seq = 0  # payloads-nbirth-seq: an NBIRTH always carries seq 0
        nbirth = Payload(
            timestamp=now_ms,
            seq=self._next_seq(),
            metrics=(
                Metric(BDSEQ_METRIC, None, now_ms, DataType.Int64, self.bdseq),
                Metric(REBIRTH_METRIC, 1, now_ms, DataType.Boolean, False),
            ),
        )
        self.phase = Phase.ONLINE
        self.rebirths += self._born_bdseq == self.bdseq
        self._born_bdseq = self.bdseq
        self._last_birth_ms = now_ms
        self._rebirth_due_ms = None  # these births answer any deferred request
        out = [Outgoing(MessageType.NBIRTH, self.topic(MessageType.NBIRTH), encode(nbirth), 0)]
        out += [self._dbirth(device_id, now_ms) for device_id in self._devices]
        return out

    def _dbirth(self, device_id: str, now_ms: int) -> Outgoing:
        device = self._device(device_id)
        device.born = True
        if device.reachable:
            metrics = tuple(
                Metric(
                    state.name,
                    state.alias,
                    state.timestamp_ms if state.timestamp_ms is not None else now_ms,
                    state.datatype,
                    state.value,  # None: no value yet (is_null), never a made-up one
                    properties=_props(state, birth=True),
                )
                for state in device.metrics.values()
            )
        else:
            # The PLC is not reachable: no current value (is_null), Quality bad.
            unreachable = [_MetricState(m.name, m.alias, m.datatype, m.unit) for m in device.metrics.values()]
            metrics = tuple(
                Metric(state.name, state.alias, now_ms, state.datatype, None, properties=_props(state, birth=True))
                for state in unreachable
            )
        payload = Payload(timestamp=now_ms, seq=self._next_seq(), metrics=metrics)
        return Outgoing(
            MessageType.DBIRTH,
            self.topic(MessageType.DBIRTH, device_id),
            encode(payload, uint32_field=self.uint32_field),
            0,
            device_id=device_id,
        )
