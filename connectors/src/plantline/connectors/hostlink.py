"""A Sparkplug host's MQTT link: paho-mqtt 2.x over mutual TLS, a persistent session, manual acknowledgement.

The hosts (the historian, the cloud bridge) share it. The session is persistent (clean_session
false, a fixed client id): while the host is away, the broker keeps its QoS 1 messages, and
re-delivers those it sent but never saw acknowledged. paho's `manual_ack` leaves the PUBACK to the
host: it calls `ack` only once the message is safely elsewhere (the historian after its database
commit, the bridge after Kafka acknowledged every record made from it), so a crash before that
makes the broker deliver it again (the historian's unique key, the bridge's record id absorb the
repeat).

A PUBACK names a packet id, which is only meaningful on the connection that received it: every
inbound message carries the connection's generation, and an acknowledgement for an older
generation is dropped (the broker re-delivers that message on the new connection anyway).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from plantline.connectors.config import BrokerEndpoint, HostMqttSettings
from plantline.connectors.sparkplug.host import Command, HostSession, Token
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
        self.client_id = client_id
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

    @classmethod
    def of(cls, mqtt: HostMqttSettings, host: HostSession[Any]) -> HostLink:
        """Return the link of a host configured by `mqtt` (its first broker), subscribing as `host` needs."""
        return cls(
            broker=mqtt.brokers[0], client_id=mqtt.client_id, subscriptions=host.subscriptions(),
            keepalive_s=mqtt.keepalive_s,
        )  # fmt: skip

    def open(self, host: HostSession[Any], now_ms: int) -> None:
        """Start the session of `host`: its Will (a primary host's STATE offline), then STATE online on connect."""
        will = host.will(now_ms)  # before on_connected: the STATE birth repeats its timestamp
        self.on_connect = host.on_connected()
        self.start(will)

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
            log.warning(
                "the broker %s:%d refused the host %s: %s", self.broker.host, self.broker.port, self.client_id, reason
            )
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


def host_session(mqtt: HostMqttSettings, group_ids: Sequence[str]) -> HostSession[Token]:
    """Return the Sparkplug host session of a host configured by `mqtt`, following `group_ids`."""
    return HostSession(
        group_ids=group_ids, host_id=mqtt.primary_host_id, rebirth_interval_ms=round(mqtt.rebirth_interval_s * 1000)
    )
