"""The Sparkplug B 3.0 host application, sans I/O: what a host makes of the messages it receives.

A host (the historian, the cloud bridge) feeds every inbound MQTT message to `HostSession.receive`
with an opaque token (its MQTT acknowledgement handle) and publishes the commands it returns. The
session keeps, per edge node, the bdSeq of its birth, the seq it expects next, and the metric
aliases and datatypes of the node's NBIRTH and of each device's DBIRTH; it resolves data messages
(sent by alias, without datatypes) into named, typed metrics.

A data message it cannot resolve (its device was born before the host was listening: births are
QoS 0, so a broker never queues them) is parked, not dropped: the session asks the edge node for a
rebirth (NCMD `Node Control/Rebirth`, at most once per `rebirth_interval_ms`, again while data
stays parked) and releases the parked messages, resolved, once the births arrive. A host that
acknowledges a message only when it is released (the historian, after its database commit) thus
never acknowledges data it could not read.

A primary host also owns its STATE (`spBv1.0/STATE/<host_id>`): `online` at connect, retained at
QoS 1, the MQTT Will carrying `online: false` with the same timestamp; should the broker ever hand
it an `online: false` for itself while it runs, it publishes `online` again.

Edge nodes keep their aliases across a rebirth of the same bdSeq session (PlantLine's do, as
Sparkplug requires within a session), which is what makes resolving parked data with the new
births correct.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from google.protobuf.message import DecodeError

from plantline.connectors.samples import Quality
from plantline.connectors.sparkplug import _sparkplug_b_pb2 as pb
from plantline.connectors.sparkplug.codec import (
    DataType,
    Metric,
    Payload,
    Properties,
    SparkplugDecodeError,
    apply_datatype,
    decode,
    encode,
)
from plantline.connectors.sparkplug.topics import (
    NAMESPACE,
    MessageType,
    Topic,
    format_topic,
    parse_state_payload,
    parse_topic,
    state_payload_offline,
    state_payload_online,
)

REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
# The "Quality" property (Int32) uses OPC DA's quality bits: 0xC0 good, 0x40 uncertain, 0x00 bad.
_QUALITY_MASK = 0xC0
_QUALITY_GOOD = 0xC0
_QUALITY_UNCERTAIN = 0x40

Token = TypeVar("Token")


def quality_of(properties: Properties) -> Quality:
    """Return the quality a metric's properties state (no `Quality` property means good)."""
    for key, prop in properties:
        if key == "Quality" and isinstance(prop.value, int) and not isinstance(prop.value, bool):
            bits = prop.value & _QUALITY_MASK
            if bits == _QUALITY_GOOD:
                return Quality.GOOD
            return Quality.UNCERTAIN if bits == _QUALITY_UNCERTAIN else Quality.BAD
    return Quality.GOOD


@dataclass(frozen=True, slots=True)
class NodeKey:
    """An edge node: its Sparkplug group and edge node id."""

    group_id: str
    edge_node_id: str


class HostMetric(NamedTuple):
    """One metric of a birth or data message, named and typed through the births.

    A named tuple, not a frozen dataclass: a host builds one per sample, and a tuple is built in a
    fifth of the time (measured: 0.3 against 1.5 us).
    """

    name: str
    datatype: DataType
    value: object  # as the codec represents the datatype; None is null
    timestamp_ms: int  # the metric's own timestamp, else the payload's
    quality: Quality
    historical: bool


@dataclass(frozen=True, slots=True)
class Release(Generic[Token]):
    """A message the host is done with: acknowledge `token`; `metrics` are what it carried.

    `metrics` is empty for deaths and for messages that could not be read at all (`error` says why).
    `seq` is the message's Sparkplug seq, `bdseq` the bdSeq of the node's birth it was resolved
    with (births and data only), for hosts that pass them on (the cloud bridge's records).
    """

    token: Token
    kind: MessageType | None
    node: NodeKey | None
    device_id: str | None
    metrics: tuple[HostMetric, ...] = ()
    error: str | None = None
    seq: int | None = None
    bdseq: int | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """An MQTT message the host must publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(slots=True)
class Outcome(Generic[Token]):
    """What receiving one message led to: messages released (in order) and commands to publish."""

    released: list[Release[Token]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


@dataclass(slots=True)
class HostStats:
    received: int = 0
    malformed: int = 0
    seq_gaps: int = 0  # a message whose seq is not the one expected (lost or re-delivered messages)
    stale_deaths: int = 0  # NDEATHs whose bdSeq is not the current birth's (an old session's Will)
    rebirths_requested: int = 0
    parked: int = 0  # data messages waiting for births now
    unresolvable: int = 0  # data messages released unread: no birth came to resolve them


_Aliases = dict[int, tuple[str, DataType]]


@dataclass(slots=True)
class _Device:
    aliases: _Aliases = field(default_factory=dict)
    types: dict[str, DataType] = field(default_factory=dict)
    born: bool = False
    online: bool = False


@dataclass(slots=True)
class _Parked(Generic[Token]):
    token: Token
    topic: Topic
    payload: Payload


@dataclass(slots=True)
class _Node(Generic[Token]):
    born: bool = False
    online: bool = False
    bdseq: int | None = None
    next_seq: int | None = None
    metrics: _Device = field(default_factory=_Device)  # the node's own metrics, from the NBIRTH
    devices: dict[str, _Device] = field(default_factory=dict)
    parked: dict[str | None, list[_Parked[Token]]] = field(default_factory=dict)  # per device (None: the node)
    rebirth_asked_ms: int | None = None
    rebirths_unanswered: int = 0


def _bdseq(payload: Payload) -> int | None:
    for metric in payload.metrics:
        if metric.name == BDSEQ_METRIC and isinstance(metric.value, int):
            return metric.value
    return None


def _learn(target: _Device, metrics: Iterable[Metric]) -> None:
    """Record the names, aliases and datatypes a birth declares."""
    target.aliases.clear()
    target.types.clear()
    for metric in metrics:
        if metric.name is None or metric.datatype is None:
            continue
        target.types[metric.name] = metric.datatype
        if metric.alias is not None:
            target.aliases[metric.alias] = (metric.name, metric.datatype)
    target.born = True


# The Python types the codec gives a value whose datatype it did not know, when that is already the
# value of the birth's datatype: the common floats and booleans need no apply_datatype.
_AS_DECODED = {DataType.Double: float, DataType.Float: float, DataType.Boolean: bool, DataType.String: str}


def _resolve(target: _Device, payload: Payload) -> tuple[HostMetric, ...] | None:
    """Return the payload's metrics named and typed by `target`'s birth, None if one is unknown."""
    out = []
    default_ts = payload.timestamp or 0
    aliases, types = target.aliases, target.types
    for metric in payload.metrics:
        found = aliases.get(metric.alias) if metric.alias is not None else None
        if found is not None:
            name, datatype = found
        elif metric.name is not None and metric.name in types:
            name, datatype = metric.name, types[metric.name]
        else:
            return None
        value = metric.value
        if metric.datatype is None and value is not None and type(value) is not _AS_DECODED.get(datatype):
            value = apply_datatype(value, datatype)
        quality = quality_of(metric.properties) if metric.properties else Quality.GOOD
        timestamp = metric.timestamp if metric.timestamp is not None else default_ts
        out.append(HostMetric(name, datatype, value, timestamp, quality, metric.is_historical))
    return tuple(out)


_SCALAR_FIELDS = frozenset(
    ("int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value", "bytes_value")
)


def _resolve_wire(target: _Device, data: bytes) -> tuple[int | None, tuple[HostMetric, ...]] | None:
    """Return a plain data message's seq and metrics, read off the wire by `target`'s aliases; else None.

    Plain, as an edge node sends its data: every metric by a known alias, with neither datatype,
    properties nor metadata, its value null or a scalar. It resolves as `decode` then `_resolve`
    would, without a Metric per sample in between. Anything else (None) takes that longer way,
    which also says what is wrong with a message.
    """
    message = pb.Payload()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None
    out = []
    default_ts = message.timestamp  # 0 when absent, as `payload.timestamp or 0`
    aliases = target.aliases
    for metric in message.metrics:
        alias = metric.alias
        found = aliases.get(alias) if alias or metric.HasField("alias") else None
        if found is None or metric.HasField("datatype") or metric.HasField("properties"):
            return None
        if metric.HasField("metadata"):
            return None
        name, datatype = found
        which = metric.WhichOneof("value")
        value: object = None
        if which is not None and not metric.is_null:
            if which not in _SCALAR_FIELDS:
                return None
            value = getattr(metric, which)
            if type(value) is not _AS_DECODED.get(datatype):
                try:
                    value = apply_datatype(value, datatype)
                except SparkplugDecodeError:
                    return None
        timestamp = metric.timestamp
        if not timestamp and not metric.HasField("timestamp"):
            timestamp = default_ts
        out.append(HostMetric(name, datatype, value, timestamp, Quality.GOOD, metric.is_historical))
    return (message.seq if message.HasField("seq") else None), tuple(out)


def _birth_metrics(payload: Payload) -> tuple[HostMetric, ...]:
    """Return a birth's metrics that carry a value (a birth's null is 'no value yet', not a sample)."""
    default_ts = payload.timestamp or 0
    return tuple(
        HostMetric(
            m.name,
            m.datatype,
            m.value,
            m.timestamp if m.timestamp is not None else default_ts,
            quality_of(m.properties),
            m.is_historical,
        )
        for m in payload.metrics
        if m.name is not None and m.datatype is not None and m.value is not None and m.name != BDSEQ_METRIC
    )


class HostSession(Generic[Token]):
    """The Sparkplug state a host application keeps about the edge nodes it hears."""

    def __init__(
        self,
        *,
        group_ids: Sequence[str],
        host_id: str | None = None,
        rebirth_interval_ms: int = 5000,
        max_rebirths: int = 10,
    ) -> None:
        """`group_ids` are the Sparkplug groups to follow; `host_id` makes this the primary host."""
        if not group_ids:
            raise ValueError("group_ids: a host follows at least one Sparkplug group")
        for group in group_ids:
            Topic.node(group, MessageType.NBIRTH, "x")  # refuses ids that are not valid topic levels
        if host_id is not None:
            Topic.state(host_id)
        self.group_ids = tuple(group_ids)
        self.host_id = host_id
        self.rebirth_interval_ms = rebirth_interval_ms
        self.max_rebirths = max_rebirths
        self.stats = HostStats()
        self._nodes: dict[NodeKey, _Node[Token]] = {}
        self._state_ts: int | None = None

    # -- the MQTT session -------------------------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, int]]:
        """Return the topic filters to subscribe to, QoS 1: each group's namespace, our own STATE."""
        subs = [(f"{NAMESPACE}/{group}/#", 1) for group in self.group_ids]
        if self.host_id is not None:
            subs.append((format_topic(Topic.state(self.host_id)), 1))
        return subs

    def will(self, now_ms: int) -> Command | None:
        """Return the Will to register with the next CONNECT (a primary host's STATE offline).

        The STATE birth published after that CONNECT carries the same timestamp, as Sparkplug
        3.0 requires (host-topic-phid-death-payload / -birth-payload).
        """
        if self.host_id is None:
            return None
        self._state_ts = now_ms
        topic = format_topic(Topic.state(self.host_id))
        return Command(topic, state_payload_offline(now_ms), qos=1, retain=True)

    def on_connected(self) -> list[Command]:
        """Return what to publish once subscribed: the primary host's retained STATE online."""
        if self.host_id is None:
            return []
        if self._state_ts is None:
            raise RuntimeError("will() must come first: the STATE birth repeats the Will's timestamp")
        return [self._state_online()]

    def shutdown(self) -> list[Command]:
        """Return what a clean disconnect publishes first: the STATE offline (a Will is not sent then)."""
        if self.host_id is None or self._state_ts is None:
            return []
        return [Command(format_topic(Topic.state(self.host_id)), state_payload_offline(self._state_ts), 1, True)]

    def _state_online(self) -> Command:
        if self.host_id is None or self._state_ts is None:
            raise RuntimeError("only a primary host that has registered its Will has a STATE")
        return Command(format_topic(Topic.state(self.host_id)), state_payload_online(self._state_ts), 1, True)

    # -- inbound messages -------------------------------------------------------------------------

    def receive(self, token: Token, topic: str, data: bytes, now_ms: int) -> Outcome[Token]:
        """Return what a message received on `topic` leads to; `token` comes back in its Release."""
        self.stats.received += 1
        outcome: Outcome[Token] = Outcome()
        try:
            parsed = parse_topic(topic)
        except ValueError as exc:
            self._malformed(outcome, token, None, str(exc))
            return outcome
        if parsed.message_type is MessageType.STATE:
            self._on_state(parsed, data, outcome)
            outcome.released.append(Release(token, MessageType.STATE, None, None))
            return outcome
        if parsed.message_type in (MessageType.NCMD, MessageType.DCMD):
            outcome.released.append(Release(token, parsed.message_type, None, parsed.device_id))
            return outcome  # commands of other hosts: nothing to record
        if parsed.message_type in (MessageType.DDATA, MessageType.NDATA) and self._receive_plain(
            token, parsed, data, outcome
        ):
            return outcome
        try:
            payload = decode(data)
        except SparkplugDecodeError as exc:
            self._malformed(outcome, token, parsed, str(exc))
            return outcome
        key = NodeKey(str(parsed.group_id), str(parsed.edge_node_id))  # set on every non-STATE topic
        node = self._nodes.setdefault(key, _Node())
        self._track_seq(node, parsed.message_type, payload.seq)
        handler = _HANDLERS[parsed.message_type]
        handler(self, key, node, token, parsed, payload, outcome, now_ms)
        self._count_parked()
        return outcome

    def _receive_plain(self, token: Token, topic: Topic, data: bytes, outcome: Outcome[Token]) -> bool:
        """Release a plain data message of a born device with nothing parked; False if it is not that."""
        key = NodeKey(str(topic.group_id), str(topic.edge_node_id))
        node = self._nodes.get(key)
        if node is None or node.parked.get(topic.device_id):
            return False
        target = node.metrics if topic.device_id is None else node.devices.get(topic.device_id)
        resolved = _resolve_wire(target, data) if target is not None and target.born else None
        if resolved is None:
            return False
        seq, metrics = resolved
        self._track_seq(node, topic.message_type, seq)
        outcome.released.append(
            Release(token, topic.message_type, key, topic.device_id, metrics, seq=seq, bdseq=node.bdseq)
        )
        return True

    def tick(self, now_ms: int) -> Outcome[Token]:
        """Return the rebirth requests due again for data still waiting for births.

        Data that `max_rebirths` requests in a row did not resolve (its device never births again)
        is released with an error, so that it stops holding the broker's in-flight window.
        """
        outcome: Outcome[Token] = Outcome()
        for key, node in self._nodes.items():
            if not node.parked:
                continue
            if node.rebirths_unanswered >= self.max_rebirths and self._rebirth_due(node, now_ms):
                for device_id, waiting in node.parked.items():
                    for parked in waiting:
                        self.stats.unresolvable += 1
                        why = f"no birth resolves it after {node.rebirths_unanswered} rebirth requests"
                        outcome.released.append(
                            Release(parked.token, parked.topic.message_type, key, device_id, error=why)
                        )
                node.parked.clear()
                node.rebirths_unanswered = 0
                continue
            outcome.commands += self._ask_rebirth(key, node, now_ms)
        self._count_parked()
        return outcome

    def _count_parked(self) -> None:
        self.stats.parked = sum(len(w) for n in self._nodes.values() for w in n.parked.values())

    def _malformed(self, outcome: Outcome[Token], token: Token, topic: Topic | None, why: str) -> None:
        self.stats.malformed += 1
        node = None
        if topic is not None and topic.group_id is not None and topic.edge_node_id is not None:
            node = NodeKey(topic.group_id, topic.edge_node_id)
        kind = topic.message_type if topic is not None else None
        device = topic.device_id if topic is not None else None
        outcome.released.append(Release(token, kind, node, device, error=why))

    def _on_state(self, topic: Topic, data: bytes, outcome: Outcome[Token]) -> None:
        if self.host_id is None or topic.host_id != self.host_id or self._state_ts is None:
            return
        try:
            state = parse_state_payload(data)
        except ValueError:
            state = None
        if state is None or not state.online:
            # Someone (a stale Will, a retained message of an earlier run) says we are offline
            # while we run: say online again (host-topic-phid-required-... republish).
            outcome.commands.append(self._state_online())

    def _track_seq(self, node: _Node[Token], kind: MessageType, seq: int | None) -> None:
        if kind is MessageType.NDEATH or seq is None:
            return  # an NDEATH carries no seq (payloads-ndeath-seq)
        if kind is MessageType.NBIRTH:
            node.next_seq = (seq + 1) % 256
            return
        if node.next_seq is not None and seq != node.next_seq:
            self.stats.seq_gaps += 1
        node.next_seq = (seq + 1) % 256

    def _on_nbirth(self, key: NodeKey, node: _Node[Token], token: Token, topic: Topic, payload: Payload,
                   outcome: Outcome[Token], now_ms: int) -> None:  # fmt: skip
        del now_ms
        node.born = node.online = True
        node.bdseq = _bdseq(payload)
        _learn(node.metrics, payload.metrics)
        outcome.released.append(
            Release(token, topic.message_type, key, None, _birth_metrics(payload), seq=payload.seq, bdseq=node.bdseq)
        )
        self._release_parked(key, node, None, outcome)

    def _on_dbirth(self, key: NodeKey, node: _Node[Token], token: Token, topic: Topic, payload: Payload,
                   outcome: Outcome[Token], now_ms: int) -> None:  # fmt: skip
        del now_ms
        assert topic.device_id is not None  # noqa: S101 - a D* topic
        device = node.devices.setdefault(topic.device_id, _Device())
        _learn(device, payload.metrics)
        device.online = True
        metrics = _birth_metrics(payload)
        outcome.released.append(
            Release(token, topic.message_type, key, topic.device_id, metrics, seq=payload.seq, bdseq=node.bdseq)
        )
        self._release_parked(key, node, topic.device_id, outcome)

    def _on_ndeath(self, key: NodeKey, node: _Node[Token], token: Token, topic: Topic, payload: Payload,
                   outcome: Outcome[Token], now_ms: int) -> None:  # fmt: skip
        del now_ms
        bdseq = _bdseq(payload)
        if node.bdseq is not None and bdseq is not None and bdseq != node.bdseq:
            self.stats.stale_deaths += 1  # the Will of a session the node has since replaced
        else:
            node.online = False
            for device in node.devices.values():
                device.online = False
        outcome.released.append(Release(token, topic.message_type, key, None))

    def _on_ddeath(self, key: NodeKey, node: _Node[Token], token: Token, topic: Topic, payload: Payload,
                   outcome: Outcome[Token], now_ms: int) -> None:  # fmt: skip
        del payload, now_ms
        assert topic.device_id is not None  # noqa: S101 - a D* topic
        node.devices.setdefault(topic.device_id, _Device()).online = False
        outcome.released.append(Release(token, topic.message_type, key, topic.device_id))

    def _on_data(self, key: NodeKey, node: _Node[Token], token: Token, topic: Topic, payload: Payload,
                 outcome: Outcome[Token], now_ms: int) -> None:  # fmt: skip
        waiting = node.parked.get(topic.device_id)
        # A device's data keeps its order: nothing overtakes data of the same device already waiting.
        metrics = None if waiting else self._try_resolve(node, topic, payload)
        if metrics is None:
            node.parked.setdefault(topic.device_id, []).append(_Parked(token, topic, payload))
            outcome.commands += self._ask_rebirth(key, node, now_ms)
            return
        outcome.released.append(
            Release(token, topic.message_type, key, topic.device_id, metrics, seq=payload.seq, bdseq=node.bdseq)
        )

    def _try_resolve(self, node: _Node[Token], topic: Topic, payload: Payload) -> tuple[HostMetric, ...] | None:
        target = node.metrics if topic.device_id is None else node.devices.get(topic.device_id, _Device())
        return _resolve(target, payload) if target.born else None

    def _release_parked(self, key: NodeKey, node: _Node[Token], device_id: str | None, outcome: Outcome[Token]) -> None:
        """Release a device's parked data, in order, up to the first message still unresolvable."""
        waiting = node.parked.get(device_id, [])
        while waiting:
            first = waiting[0]
            metrics = self._try_resolve(node, first.topic, first.payload)
            if metrics is None:
                return
            waiting.pop(0)
            kind, seq = first.topic.message_type, first.payload.seq
            outcome.released.append(Release(first.token, kind, key, device_id, metrics, seq=seq, bdseq=node.bdseq))
        node.parked.pop(device_id, None)
        if not node.parked:
            node.rebirths_unanswered = 0

    def _rebirth_due(self, node: _Node[Token], now_ms: int) -> bool:
        asked = node.rebirth_asked_ms
        return asked is None or now_ms - asked >= self.rebirth_interval_ms

    def _ask_rebirth(self, key: NodeKey, node: _Node[Token], now_ms: int) -> list[Command]:
        if not self._rebirth_due(node, now_ms):
            return []
        node.rebirth_asked_ms = now_ms
        node.rebirths_unanswered += 1
        self.stats.rebirths_requested += 1
        return [rebirth_request(key, now_ms)]

    # -- what the host knows ----------------------------------------------------------------------

    def node_online(self, key: NodeKey) -> bool:
        node = self._nodes.get(key)
        return node is not None and node.online

    def device_online(self, key: NodeKey, device_id: str) -> bool:
        node = self._nodes.get(key)
        device = None if node is None else node.devices.get(device_id)
        return node is not None and node.online and device is not None and device.online

    def nodes(self) -> list[NodeKey]:
        return list(self._nodes)


def rebirth_request(node: NodeKey, now_ms: int) -> Command:
    """Return the NCMD asking `node` for a rebirth (QoS 0, as payloads-ncmd-qos requires)."""
    payload = Payload(now_ms, None, (Metric(REBIRTH_METRIC, None, now_ms, DataType.Boolean, True),))
    topic = format_topic(Topic.node(node.group_id, MessageType.NCMD, node.edge_node_id))
    return Command(topic, encode(payload), qos=0)


_HANDLERS = {
    MessageType.NBIRTH: HostSession._on_nbirth,
    MessageType.DBIRTH: HostSession._on_dbirth,
    MessageType.NDEATH: HostSession._on_ndeath,
    MessageType.DDEATH: HostSession._on_ddeath,
    MessageType.NDATA: HostSession._on_data,
    MessageType.DDATA: HostSession._on_data,
}
