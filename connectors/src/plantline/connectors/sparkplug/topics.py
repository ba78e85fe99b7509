"""Sparkplug 3.0 topic names and the host application's STATE payload, as pure functions.

Edge node and device messages: ``spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]``,
with a device_id exactly on the D* message types. Host application state: ``spBv1.0/STATE/<host_id>``
(Sparkplug 3.0; the 2.x form ``STATE/<host_id>`` is refused), with a JSON payload
``{"online": <bool>, "timestamp": <ms since the epoch>}``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from plantline.connectors.addressing.mqtt import SPARKPLUG_NAMESPACE as NAMESPACE

__all__ = [
    "NAMESPACE",
    "HostState",
    "MessageType",
    "Topic",
    "format_topic",
    "parse_state_payload",
    "parse_topic",
    "state_payload_offline",
    "state_payload_online",
]

# tck-id-topic-structure-namespace-valid-*-id: an id is UTF-8 without these; MQTT forbids NUL.
_RESERVED = frozenset("+/#\x00")
_U64 = 0xFFFF_FFFF_FFFF_FFFF


class MessageType(enum.StrEnum):
    """The message_type element of a Sparkplug topic."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"

    @property
    def is_device(self) -> bool:
        """Whether topics of this type end with a device_id."""
        return self in _DEVICE_TYPES


_DEVICE_TYPES = frozenset({MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD})


def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} is empty")
    bad = sorted(_RESERVED.intersection(value))
    if bad:
        raise ValueError(f"{what} {value!r} contains {', '.join(repr(c) for c in bad)}, reserved in Sparkplug topics")


@dataclass(frozen=True, slots=True)
class Topic:
    """A valid Sparkplug topic: an edge node's or device's message, or a host's STATE.

    Build one with `Topic.node`, `Topic.device` or `Topic.state`, or directly; an inconsistent
    combination (a device_id on a node message, a host_id anywhere but STATE, an id holding
    ``+``, ``/``, ``#`` or nothing) raises ValueError.
    """

    group_id: str | None
    message_type: MessageType
    edge_node_id: str | None
    device_id: str | None = None
    host_id: str | None = None

    def __post_init__(self) -> None:
        message_type = self.message_type
        if not isinstance(message_type, MessageType):
            raise ValueError(f"message_type {message_type!r} is not a Sparkplug message type")
        if message_type is MessageType.STATE:
            if self.group_id is not None or self.edge_node_id is not None or self.device_id is not None:
                raise ValueError("a STATE topic has only a host_id (spBv1.0/STATE/<host_id>)")
            _check_id("host_id", self.host_id)
            return
        if self.host_id is not None:
            raise ValueError(f"host_id belongs to STATE topics, not {message_type}")
        _check_id("group_id", self.group_id)
        _check_id("edge_node_id", self.edge_node_id)
        if message_type.is_device:
            # tck-id-topic-structure-namespace-device-id-associated-message-types
            if self.device_id is None:
                raise ValueError(f"{message_type} needs a device_id (spBv1.0/<group>/{message_type}/<node>/<device>)")
            _check_id("device_id", self.device_id)
        elif self.device_id is not None:
            # tck-id-topic-structure-namespace-device-id-non-associated-message-types
            raise ValueError(f"{message_type} is an edge node message and takes no device_id")

    @classmethod
    def node(cls, group_id: str, message_type: MessageType, edge_node_id: str) -> Topic:
        """Return the topic of an edge node message (NBIRTH, NDEATH, NDATA, NCMD)."""
        return cls(group_id, message_type, edge_node_id)

    @classmethod
    def device(cls, group_id: str, message_type: MessageType, edge_node_id: str, device_id: str) -> Topic:
        """Return the topic of a device message (DBIRTH, DDEATH, DDATA, DCMD)."""
        return cls(group_id, message_type, edge_node_id, device_id)

    @classmethod
    def state(cls, host_id: str) -> Topic:
        """Return the STATE topic of a host application."""
        return cls(None, MessageType.STATE, None, host_id=host_id)

    def __str__(self) -> str:
        return format_topic(self)


def format_topic(topic: Topic) -> str:
    """Return the MQTT topic name of `topic`."""
    if topic.message_type is MessageType.STATE:
        return f"{NAMESPACE}/STATE/{topic.host_id}"
    name = f"{NAMESPACE}/{topic.group_id}/{topic.message_type}/{topic.edge_node_id}"
    return name if topic.device_id is None else f"{name}/{topic.device_id}"


def parse_topic(text: str) -> Topic:
    """Return the Topic that `text` names; ValueError says what is wrong with a malformed one."""
    if not isinstance(text, str):
        raise ValueError(f"a topic is a str, got {type(text).__name__}")
    levels = text.split("/")
    if levels[0] != NAMESPACE:
        if levels[0] == "STATE":
            raise ValueError(f"topic {text!r}: Sparkplug 2.x STATE topic; 3.0 uses {NAMESPACE}/STATE/<host_id>")
        # tck-id-topic-structure-namespace-a
        raise ValueError(f"topic {text!r}: namespace {levels[0]!r} is not {NAMESPACE!r}")
    try:
        if len(levels) == 3 and levels[1] == "STATE":
            return Topic.state(levels[2])
        if len(levels) not in (4, 5):
            raise ValueError(
                f"has {len(levels)} levels; expected {NAMESPACE}/<group_id>/<message_type>/<edge_node_id>[/<device_id>]"
                f" or {NAMESPACE}/STATE/<host_id>"
            )
        try:
            message_type = MessageType(levels[2])
        except ValueError:
            raise ValueError(f"message type {levels[2]!r} is not one of {', '.join(MessageType)}") from None
        if message_type is MessageType.STATE:
            raise ValueError(f"a STATE topic is {NAMESPACE}/STATE/<host_id>")
        device_id = levels[4] if len(levels) == 5 else None
        return Topic(levels[1], message_type, levels[3], device_id)
    except ValueError as exc:
        raise ValueError(f"topic {text!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class HostState:
    """A host application's STATE: online or not, as of `timestamp` (ms since the epoch, UTC)."""

    online: bool
    timestamp: int


def _state_payload(online: bool, timestamp: int) -> bytes:
    if type(timestamp) is not int or not 0 <= timestamp <= _U64:
        raise ValueError(f"STATE timestamp {timestamp!r} is not a uint64 (ms since the epoch)")
    return json.dumps({"online": online, "timestamp": timestamp}, separators=(",", ":")).encode()


def state_payload_online(timestamp: int) -> bytes:
    """Return the STATE birth payload of a host application that came online at `timestamp`."""
    return _state_payload(True, timestamp)


def state_payload_offline(timestamp: int) -> bytes:
    """Return the STATE death payload (the MQTT Will, or a clean disconnect) stamped `timestamp`.

    In the Will, the timestamp is the one of the birth it ends: the host sets both at connect.
    """
    return _state_payload(False, timestamp)


def parse_state_payload(data: bytes) -> HostState:
    """Return the HostState in a STATE payload; ValueError if it is not the 3.0 JSON form."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"STATE payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f'STATE payload is {type(document).__name__}, expected {{"online": ..., "timestamp": ...}}')
    online, timestamp = document.get("online"), document.get("timestamp")
    if not isinstance(online, bool):
        raise ValueError(f'STATE payload "online" is {online!r}, expected true or false')
    if type(timestamp) is not int or not 0 <= timestamp <= _U64:
        raise ValueError(f'STATE payload "timestamp" is {timestamp!r}, expected ms since the epoch')
    return HostState(online, timestamp)
