"""The Sparkplug B edge-node session, sans I/O: what to publish, in which order, with which seq.

It owns `seq` (0-255, wrapping) and `bdSeq`, the metric aliases, the last value of every metric
(births carry current values), and which devices are online. The runtime feeds it events
(connected, device up/down, samples, commands) and publishes the messages it returns.

QoS: births and deaths follow the specification (NBIRTH/DBIRTH/DDEATH at QoS 0, the NDEATH Will
at QoS 1, nothing retained). Data (DDATA) goes at `data_qos`, 1 by default: the durable outbox
releases a sample only on the broker's PUBACK, which QoS 0 never sends. Set it to 0 for strict
`payloads-ddata-qos` conformance at the price of that guarantee.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plantline.connectors.config import ConnectorConfig, DataTypeName, Tag
from plantline.connectors.kpi import SPARKPLUG_METRICS as KPI_METRICS
from plantline.connectors.samples import Quality, Sample, Value
from plantline.connectors.sparkplug import (
    DataType,
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
    online: bool = False


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
        self.phase = Phase.OFFLINE
        self._seq = 0
        self._last_birth_ms: int | None = None
        self._rebirth_due_ms: int | None = None
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
            self._devices[device_id] = state

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
        self.phase = Phase.OFFLINE
        death = self._ndeath()
        payload = Payload(
            timestamp=now_ms,
            seq=None,
            metrics=(Metric(BDSEQ_METRIC, None, now_ms, DataType.Int64, self.bdseq),),
        )
        return [Outgoing(death.kind, death.topic, encode(payload), qos=1)]

    def on_connected(self, now_ms: int) -> list[Outgoing]:
        """The MQTT session is up: births now, or once the primary host is ONLINE."""
        if self.primary_host_id:
            self.phase = Phase.WAITING_FOR_HOST
            return []
        return self._births(now_ms)

    def on_disconnected(self) -> None:
        self.phase = Phase.OFFLINE

    def on_host_state(self, online: bool, now_ms: int) -> list[Outgoing]:
        """The primary host's STATE arrived: births when it comes ONLINE; hold data when OFFLINE."""
        if online and self.phase is Phase.WAITING_FOR_HOST:
            return self._births(now_ms)
        if not online and self.phase is Phase.ONLINE:
            self.phase = Phase.WAITING_FOR_HOST
        return []

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
        return self._births(now_ms)

    def due_rebirth(self, now_ms: int) -> list[Outgoing]:
        """Return the births of a rebirth deferred by the debounce once its time has come."""
        if self._rebirth_due_ms is None or now_ms < self._rebirth_due_ms:
            return []
        self._rebirth_due_ms = None
        return self.on_rebirth_request(now_ms)

    @property
    def can_publish_data(self) -> bool:
        return self.phase is Phase.ONLINE

    # -- devices ----------------------------------------------------------------------------------

    def device_online(self, device_id: str, now_ms: int) -> list[Outgoing]:
        """The device's source is connected: DBIRTH (when the node is online)."""
        device = self._device(device_id)
        device.online = True
        if self.phase is not Phase.ONLINE:
            return []
        return [self._dbirth(device_id, now_ms)]

    def device_offline(self, device_id: str, now_ms: int) -> list[Outgoing]:
        """The device's source is lost: DDEATH (when it was born on this session)."""
        device = self._device(device_id)
        was_online, device.online = device.online, False
        if not was_online or self.phase is not Phase.ONLINE:
            return []
        payload = Payload(timestamp=now_ms, seq=self._next_seq(), metrics=())
        return [
            Outgoing(
                MessageType.DDEATH, self.topic(MessageType.DDEATH, device_id), encode(payload), 0, device_id=device_id
            )
        ]

    def device_is_online(self, device_id: str) -> bool:
        return self._device(device_id).online

    # -- data -------------------------------------------------------------------------------------

    def remember(self, samples: Iterable[Sample]) -> None:
        """Record the latest values (for births) without publishing them."""
        for sample in samples:
            state = self._device(sample.device).metrics.get(sample.signal)
            if state is not None and (state.timestamp_ms is None or sample.source_ts_ms >= state.timestamp_ms):
                state.value = sample.value
                state.quality = sample.quality
                state.protocol_code = sample.protocol_code
                state.timestamp_ms = sample.source_ts_ms

    def data(self, samples: Sequence[Sample], now_ms: int, *, historical: bool) -> list[Outgoing]:
        """Return one DDATA per device with the samples as metrics by alias.

        Samples of devices that are not born on this session are not publishable now; the caller
        keeps them (they stay in the outbox).
        """
        if self.phase is not Phase.ONLINE:
            raise RuntimeError("data() needs an online session")
        by_device: dict[str, list[DataMetric]] = {}
        for sample in samples:
            device = self._device(sample.device)
            if not device.online:
                raise RuntimeError(f"device {sample.device} is not born on this session")
            state = device.metrics.get(sample.signal)
            if state is None:
                raise KeyError(f"device {sample.device} has no signal {sample.signal}")
            props = _data_props(sample)
            # payloads-alias-data-cmd-requirement: DDATA metrics carry the alias, not the name
            by_device.setdefault(sample.device, []).append(
                (state.alias, sample.source_ts_ms, state.datatype, sample.value, props)
            )
        if not historical:
            self.remember(samples)
        return [
            Outgoing(
                MessageType.DDATA,
                self.topic(MessageType.DDATA, device_id),
                encode_ddata(
                    self._next_seq(),
                    now_ms,
                    metrics,
                    strip_datatypes=True,
                    historical=historical,
                    uint32_field=self.uint32_field,
                ),
                self.data_qos,
                device_id=device_id,
            )
            for device_id, metrics in by_device.items()
        ]

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

    def _births(self, now_ms: int) -> list[Outgoing]:
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
        self._last_birth_ms = now_ms
        self._rebirth_due_ms = None  # these births answer any deferred request
        out = [Outgoing(MessageType.NBIRTH, self.topic(MessageType.NBIRTH), encode(nbirth), 0)]
        out += [self._dbirth(device_id, now_ms) for device_id, d in self._devices.items() if d.online]
        return out

    def _dbirth(self, device_id: str, now_ms: int) -> Outgoing:
        metrics = tuple(
            Metric(
                state.name,
                state.alias,
                state.timestamp_ms if state.timestamp_ms is not None else now_ms,
                state.datatype,
                state.value,  # None: no value yet (is_null), never a made-up one
                properties=_props(state, birth=True),
            )
            for state in self._device(device_id).metrics.values()
        )
        payload = Payload(timestamp=now_ms, seq=self._next_seq(), metrics=metrics)
        return Outgoing(
            MessageType.DBIRTH,
            self.topic(MessageType.DBIRTH, device_id),
            encode(payload, uint32_field=self.uint32_field),
            0,
            device_id=device_id,
        )
