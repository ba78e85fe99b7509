"""The MQTT link of a connector: paho-mqtt 2.x over mutual TLS, failover across brokers in order.

paho runs its network loop in its own thread; this class turns its callbacks into asyncio events
on the connector's loop. One `MqttLink` owns at most one MQTT session at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from plantline.connectors.config import BrokerEndpoint

log = logging.getLogger(__name__)


class LinkState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes


class ConnectFailed(Exception):
    """A broker refused or could not be reached; `reason` says why in words.

    `refused` is true when a broker was reached and turned this identity away (TLS handshake or
    connection closed before CONNACK, or a failing CONNACK): waiting will not help, a certificate will.
    """

    def __init__(self, broker: BrokerEndpoint, reason: str, *, refused: bool = False) -> None:
        super().__init__(f"{broker.host}:{broker.port}: {reason}")
        self.broker = broker
        self.reason = reason
        self.refused = refused


def _tls_context(broker: BrokerEndpoint) -> ssl.SSLContext | None:
    if broker.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(broker.tls.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(broker.tls.cert_file), str(broker.tls.key_file))
    return context


def _set_nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    # paho never sets TCP_NODELAY; without it Nagle holds small publishes and p99 latency reaches 40 ms.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_CLOSED_BEFORE_CONNACK = "the broker closed the connection before CONNACK (our certificate refused or revoked?)"


def _resolve(future: asyncio.Future[ReasonCode | str], reason: ReasonCode | str) -> None:
    if not future.done():
        future.set_result(reason)


class MqttLink:
    """One MQTT client identity; connect to the first broker of the list that accepts it."""

    def __init__(
        self,
        *,
        client_id: str,
        brokers: Sequence[BrokerEndpoint],
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Inbound], None],
        on_puback: Callable[[int], None],
        on_disconnect: Callable[[str], None],
        keepalive_s: int = 15,
        max_inflight: int = 1000,
    ) -> None:
        self.client_id = client_id
        self.brokers = list(brokers)
        self._loop = loop
        self._on_message = on_message
        self._on_puback = on_puback
        self._on_disconnect = on_disconnect
        self.keepalive_s = keepalive_s
        self.max_inflight = max_inflight
        self.state = LinkState.DISCONNECTED
        self.broker: BrokerEndpoint | None = None
        self._client: paho.Client | None = None
        self._connack: asyncio.Future[ReasonCode | str] | None = None

    # -- callbacks (paho's thread) ----------------------------------------------------------------

    def _cb_connect(self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        future = self._connack
        if future is not None:
            self._loop.call_soon_threadsafe(_resolve, future, reason)

    def _cb_disconnect(self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        future = self._connack
        if future is not None and self.state is LinkState.CONNECTING:
            # With TLS 1.3 a refused client certificate shows up as this close, not as an alert.
            self._loop.call_soon_threadsafe(_resolve, future, _CLOSED_BEFORE_CONNACK)
        self._loop.call_soon_threadsafe(self._handle_disconnect, str(reason))

    def _cb_publish(self, _c: paho.Client, _u: Any, mid: int, _reason: ReasonCode, _props: Any) -> None:
        self._loop.call_soon_threadsafe(self._on_puback, mid)

    def _cb_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        inbound = Inbound(message.topic, bytes(message.payload))
        self._loop.call_soon_threadsafe(self._on_message, inbound)

    def _handle_disconnect(self, reason: str) -> None:
        if self.state is LinkState.CONNECTED:
            self.state = LinkState.DISCONNECTED
            log.warning("mqtt session to %s lost: %s", self._where(), reason)
            self._on_disconnect(reason)

    def _where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}" if self.broker else "?"

    # -- session ----------------------------------------------------------------------------------

    async def connect(self, will: Will, timeout_s: float = 10.0, *, start: int = 0) -> BrokerEndpoint:
        """Open a session on the first broker, in list order from `start`, that accepts; raise if none does."""
        self._drop_client()
        errors: list[ConnectFailed] = []
        for broker in self.brokers[start:] + self.brokers[:start]:
            try:
                await self._connect_one(broker, will, timeout_s)
            except ConnectFailed as exc:
                log.warning("mqtt connect refused: %s", exc)
                errors.append(exc)
                self._drop_client()
                continue
            return broker
        if len(errors) == 1:
            raise errors[0]
        reason = "; ".join(str(e) for e in errors)
        raise ConnectFailed(self.brokers[0], reason, refused=any(e.refused for e in errors))

    async def _connect_one(self, broker: BrokerEndpoint, will: Will, timeout_s: float) -> None:
        self.state = LinkState.CONNECTING
        self.broker = broker
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv311,
            clean_session=True,  # principles-persistence-clean-session
        )
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        client.on_socket_open = _set_nodelay
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        try:
            context = _tls_context(broker)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(broker, f"TLS files unusable: {exc}") from None
        if context is not None:
            client.tls_set_context(context)
        self._client = client
        self._connack = self._loop.create_future()
        try:
            await asyncio.wait_for(
                self._loop.run_in_executor(None, lambda: client.connect(broker.host, broker.port, self.keepalive_s)),
                timeout_s,
            )
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(
                broker, f"TLS: the broker's certificate was not accepted: {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectFailed(
                broker, f"TLS handshake failed (is our certificate revoked or untrusted?): {exc}", refused=True
            ) from None
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(broker, f"cannot reach the broker: {exc}") from None
        client.loop_start()
        try:
            reason = await asyncio.wait_for(self._connack, timeout_s)
        except TimeoutError:
            raise ConnectFailed(
                broker, "no CONNACK (the broker closed the TLS session: certificate refused?)", refused=True
            ) from None
        if isinstance(reason, str):
            raise ConnectFailed(broker, reason, refused=True)
        if reason.is_failure:
            raise ConnectFailed(broker, f"CONNACK refused: {reason}", refused=True)
        self.state = LinkState.CONNECTED
        log.info("mqtt session open on %s as %s", self._where(), self.client_id)

    def subscribe(self, topics: Sequence[tuple[str, int]]) -> None:
        if self._client is not None and topics:
            self._client.subscribe(list(topics))

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> int:
        """Queue a message; return its mid (PUBACK arrives through on_puback for QoS 1)."""
        if self._client is None or self.state is not LinkState.CONNECTED:
            raise ConnectionError("no MQTT session")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {paho.error_string(info.rc)}")
        return int(info.mid)

    async def disconnect(self) -> None:
        """Close the session cleanly (the Will is not sent)."""
        client = self._client
        if client is not None and self.state is LinkState.CONNECTED:
            self.state = LinkState.CLOSED
            await self._loop.run_in_executor(None, client.disconnect)
        self._drop_client()
        self.state = LinkState.CLOSED

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.loop_stop()
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.DISCONNECTED
