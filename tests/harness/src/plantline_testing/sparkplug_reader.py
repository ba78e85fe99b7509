"""A Sparkplug host for tests: subscribes over mutual TLS and decodes what an edge node publishes.

It keeps every message in arrival order and, per device, the aliases and datatypes of the last
DBIRTH, so DDATA values (sent without datatypes) are read as the birth declared them. Like a
Sparkplug host, it answers data from a device it has no birth for with an NCMD rebirth request
(births are QoS 0, so a broker does not keep them for a disconnected host), and reads the data
it held once the DBIRTH arrives.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from plantline.connectors.sparkplug import (
    NAMESPACE,
    DataType,
    MessageType,
    Metric,
    Payload,
    Topic,
    apply_datatype,
    decode,
    encode,
    parse_topic,
)


@dataclass(frozen=True)
class Received:
    """One decoded message."""

    kind: MessageType
    device_id: str | None
    payload: Payload
    qos: int
    retain: bool
    at: float
    data: bytes  # the payload as it came off the wire, for other decoders


@dataclass(frozen=True)
class Value:
    """One DDATA metric resolved through its device's DBIRTH."""

    device_id: str
    name: str
    value: object
    timestamp: int
    historical: bool
    properties: dict[str, object]


@dataclass
class _Birth:
    names: dict[int, str] = field(default_factory=dict)
    types: dict[int, DataType] = field(default_factory=dict)


KEEPALIVE_S = 60
"""The reader's MQTT keepalive. Tests freeze the broker (SIGSTOP) for as long as a connector
takes to go; a reader whose keepalive ran out meanwhile reconnects after the broker thaws, maybe
after the next session's births, which are QoS 0 and so not kept for it. 60 s outlasts such a
freeze (paho gives up after twice the keepalive without an answer, the broker after 1.5 times)."""


def _nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SparkplugReader:
    """Subscribes to `spBv1.0/<group>/#` with its own client certificate; use as a context manager."""

    def __init__(
        self,
        *,
        port: int,
        group_id: str,
        ca: Path,
        cert: Path,
        key: Path,
        client_id: str = "reader",
        persistent: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        """`persistent` keeps the subscription in the broker across disconnects (clean session off)."""
        self.host = host
        self.port = port
        self.group_id = group_id
        self.messages: list[Received] = []
        self.values: list[Value] = []
        self.errors: list[str] = []
        self._births: dict[str, _Birth] = {}
        self._unresolved: dict[str, list[Payload]] = {}
        self._rebirth_asked_at = 0.0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.subscriptions = 0  # SUBACKs received: one per (re)connection
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self._client.tls_set_context(context)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_socket_open = _nodelay
        self._client.reconnect_delay_set(1, 2)

    def __enter__(self) -> SparkplugReader:
        self._client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the reader did not get its subscription")
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Publish as this host (e.g. an NCMD, or a retained STATE); wait until the broker has it."""
        self._client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def __exit__(self, *_: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self._subscribed.clear()
            client.subscribe(f"{NAMESPACE}/{self.group_id}/#", qos=1)

    def _on_subscribe(self, *_: object) -> None:
        with self._lock:
            self.subscriptions += 1
        self._subscribed.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        data = bytes(message.payload)
        try:
            topic = parse_topic(message.topic)
            payload = decode(data)
        except ValueError as exc:
            with self._lock:
                self.errors.append(f"{message.topic}: {exc}")
            return
        received = Received(
            topic.message_type, topic.device_id, payload, message.qos, message.retain, time.time(), data
        )
        with self._lock:
            self.messages.append(received)
            if topic.message_type is MessageType.DBIRTH and topic.device_id is not None:
                birth = _Birth()
                for metric in payload.metrics:
                    if metric.alias is not None and metric.name is not None and metric.datatype is not None:
                        birth.names[metric.alias] = metric.name
                        birth.types[metric.alias] = metric.datatype
                self._births[topic.device_id] = birth
                for held in self._unresolved.pop(topic.device_id, []):
                    self._resolve(topic.device_id, held)
            elif topic.message_type is MessageType.DDATA and topic.device_id is not None:
                if topic.device_id in self._births:
                    self._resolve(topic.device_id, payload)
                else:
                    self._unresolved.setdefault(topic.device_id, []).append(payload)
                    self._ask_rebirth(topic.group_id, topic.edge_node_id)

    def _ask_rebirth(self, group_id: str | None, edge_node_id: str | None) -> None:
        now = time.time()
        if now - self._rebirth_asked_at < 2.0 or group_id is None or edge_node_id is None:
            return
        self._rebirth_asked_at = now
        stamp = int(now * 1000)
        request = Payload(stamp, None, (Metric("Node Control/Rebirth", None, stamp, DataType.Boolean, True),))
        self._client.publish(str(Topic.node(group_id, MessageType.NCMD, edge_node_id)), encode(request), qos=1)

    def _resolve(self, device_id: str, payload: Payload) -> None:
        birth = self._births[device_id]
        for metric in payload.metrics:
            if metric.alias not in birth.names:
                self.errors.append(f"DDATA for {device_id}: alias {metric.alias} not in its DBIRTH")
                continue
            datatype = birth.types[metric.alias]
            self.values.append(
                Value(
                    device_id=device_id,
                    name=birth.names[metric.alias],
                    value=apply_datatype(metric.value, datatype),
                    timestamp=metric.timestamp or 0,
                    historical=metric.is_historical,
                    properties={k: v.value for k, v in metric.properties},
                )
            )

    # -- for assertions ---------------------------------------------------------------------------

    def unresolved(self) -> int:
        """How many DDATA messages still wait for their device's DBIRTH."""
        with self._lock:
            return sum(len(held) for held in self._unresolved.values())

    def of(self, kind: MessageType, device_id: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.kind is kind and (device_id is None or m.device_id == device_id)]

    def values_of(self, device_id: str, name: str) -> list[Value]:
        with self._lock:
            return [v for v in self.values if v.device_id == device_id and v.name == name]

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                kinds = [(m.kind.value, m.device_id) for m in self.messages[-10:]]
                raise TimeoutError(
                    f"waited {timeout} s for {what}; last messages: {kinds}; errors: {self.errors[:5]};"
                    f" subscribed {self.subscriptions} time(s)"
                )
            time.sleep(0.02)
