"""The historian's MQTT link: paho-mqtt 2.x over mutual TLS, a persistent session, manual acknowledgement.

The session is persistent (clean_session false, a fixed client id): while the historian is away,
the broker keeps its QoS 1 messages, and re-delivers those it sent but never saw acknowledged.
paho's `manual_ack` leaves the PUBACK to us: `ack` is called only once the message's rows are
committed, so a crash before that makes the broker deliver it again (the database's unique key
absorbs the repeat).

A PUBACK names a packet id, which is only meaningful on the connection that received it: every
inbound message carries the connection's generation, and an acknowledgement for an older
generation is dropped (the broker re-delivers that message on the new connection anyway).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from plantline.connectors.config import BrokerEndpoint
from plantline.connectors.sparkplug.host import Command
from plantline.connectors.transport import set_nodelay, tls_context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AckToken:
    """What acknowledging one inbound message takes: its connection generation and packet id."""

    generation: int
    mid: int
    qos: int


@dataclass(frozen=True, slots=True)
class Inbound:
    token: AckToken
    topic: str
    payload: bytes


class HostLink:
    """One MQTT session of the host at one broker; paho's thread reconnects it by itself.

    Inbound messages are put on `inbox` in arrival order. On every (re)connection the link
    subscribes to `subscriptions` and then publishes `on_connect` (the primary host's STATE online).
    """

    def __init__(
        self,
        *,
        broker: BrokerEndpoint,
        client_id: str,
        subscriptions: list[tuple[str, int]],
        keepalive_s: int = 15,
    ) -> None:
        self.broker = broker
        self.subscriptions = subscriptions
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.generation = 0
        self.connected = threading.Event()
        self.on_connect: list[Command] = []
        self.keepalive_s = keepalive_s
        self._lock = threading.Lock()
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_message = self._cb_message
        client.on_socket_open = set_nodelay
        context = tls_context(broker)
        if context is not None:
            client.tls_set_context(context)
        self._client = client

    def start(self, will: Command | None) -> None:
        """Register the Will and start connecting (paho's thread retries until `stop`)."""
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.connect_async(self.broker.host, self.broker.port, self.keepalive_s)
        self._client.loop_start()

    def stop(self, goodbye: list[Command]) -> None:
        """Publish `goodbye` (a clean STATE offline), disconnect, and stop paho's thread."""
        if self.connected.is_set():
            for command in goodbye:
                with contextlib.suppress(ValueError, RuntimeError):
                    self._client.publish(command.topic, command.payload, command.qos, command.retain).wait_for_publish(
                        2
                    )
            self._client.disconnect()
        self._client.loop_stop()

    def _cb_connect(self, client: paho.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.warning("the broker %s:%d refused the historian: %s", self.broker.host, self.broker.port, reason)
            return
        with self._lock:
            self.generation += 1
        client.subscribe(self.subscriptions)
        for command in self.on_connect:
            client.publish(command.topic, command.payload, command.qos, command.retain)
        resumed = bool(getattr(flags, "session_present", False))
        log.info("connected to %s:%d (session %s)", self.broker.host, self.broker.port, "resumed" if resumed else "new")
        self.connected.set()

    def _cb_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connected.clear()
        log.warning("MQTT session to %s:%d lost: %s", self.broker.host, self.broker.port, reason)

    def _cb_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        token = AckToken(self.generation, message.mid, message.qos)
        self.inbox.put(Inbound(token, message.topic, bytes(message.payload)))

    def ack(self, token: AckToken) -> bool:
        """Send the PUBACK of a message; False when its connection is gone (it will be re-delivered)."""
        if token.qos == 0 or token.generation != self.generation:
            return token.qos == 0
        return self._client.ack(token.mid, token.qos) == paho.MQTT_ERR_SUCCESS

    def publish(self, command: Command) -> None:
        if not self.connected.is_set():
            return
        self._client.publish(command.topic, command.payload, command.qos, command.retain)
