"""The MQTT link of a connector: paho-mqtt 2.x over mutual TLS, driven by the asyncio event loop.

There is no network thread. paho's socket is registered with the event loop, which calls
`loop_read` when it is readable and `loop_write` while paho has bytes it could not send at once;
`loop_misc` (keepalive) runs from a timer. A PUBACK therefore reaches the connector on its own
loop, without a hop between threads. Only the blocking part of opening a connection (TCP
connect and TLS handshake, inside paho's `connect`) runs in a worker thread.

One MQTT session is an `async with`:

    link = MqttLink(client_id="site1-line1", brokers=config.brokers)
    async with link.session(will, on_message=..., on_puback=...) as session:
        mid = session.publish(topic, payload, qos=1)
        await session.delivered(mid)          # its PUBACK
        await session.lost.wait()             # the broker went away
    # leaving the block sends DISCONNECT (the Will is not published)

`session()` tries the brokers in list order (from `start`), and raises ConnectFailed when none
accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from plantline.connectors.config import BrokerEndpoint

log = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0  # how often paho's keepalive bookkeeping runs
CLOSE_TIMEOUT_S = 2.0  # how long a DISCONNECT may take to leave


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


class MqttSession:
    """One open MQTT session on the event loop (made by `MqttLink.session`)."""

    def __init__(
        self,
        client: paho.Client,
        broker: BrokerEndpoint,
        index: int,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Inbound], None],
        on_puback: Callable[[int], None],
    ) -> None:
        self.broker = broker
        self.index = index  # in the link's broker list
        self.lost = asyncio.Event()  # set when the session ends, for whatever reason
        self.reason = ""
        self._client = client
        self._loop = loop
        self._on_message = on_message
        self._on_puback = on_puback
        self._connack: asyncio.Future[ReasonCode | str] = loop.create_future()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._sock: Any = None
        self._writing = False
        self._misc: asyncio.TimerHandle | None = None

    @property
    def where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    # -- the event loop drives paho -----------------------------------------------------------------

    def _attach(self) -> None:
        """Register paho's connected socket and callbacks with the loop (on the loop's thread).

        Until now paho ran only in the thread that connected it, so none of these callbacks ran there.
        """
        client = self._client
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        client.on_socket_close = self._cb_socket_close
        sock = client.socket()
        if sock is None:  # closed during the handshake
            self._end(_CLOSED_BEFORE_CONNACK)
            return
        self._sock = sock
        self._loop.add_reader(sock, self._read)
        self._want_write()
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._tick)

    def _read(self) -> None:
        client, sock = self._client, self._sock
        client.loop_read()
        # TLS may hold decrypted bytes the selector cannot see: read until it holds none.
        while self._sock is sock and sock is not None and getattr(sock, "pending", lambda: 0)():
            client.loop_read()
        self._want_write()

    def _write(self) -> None:
        self._client.loop_write()
        self._want_write()

    def _want_write(self) -> None:
        """Watch for writability only while paho holds bytes the socket did not take."""
        wants = self._sock is not None and self._client.want_write()
        if wants and not self._writing:
            self._loop.add_writer(self._sock, self._write)
        elif not wants and self._writing and self._sock is not None:
            self._loop.remove_writer(self._sock)
        self._writing = wants

    def _tick(self) -> None:
        self._misc = None
        if self._sock is None:
            return
        self._client.loop_misc()  # PINGREQ when idle; closes the session when PINGRESP is late
        self._want_write()
        if self._sock is not None:
            self._misc = self._loop.call_later(MISC_INTERVAL_S, self._tick)

    def _detach(self) -> None:
        sock, self._sock = self._sock, None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if sock is not None:
            self._loop.remove_reader(sock)
            if self._writing:
                self._loop.remove_writer(sock)
            self._writing = False

    # -- paho's callbacks (on the loop's thread, from loop_read/loop_write/loop_misc) ---------------

    def _cb_connect(self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if not self._connack.done():
            self._connack.set_result(reason)

    def _cb_disconnect(self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        # With TLS 1.3 a refused client certificate shows up as this close, not as an alert.
        self._end(_CLOSED_BEFORE_CONNACK if not self._connack.done() else str(reason))

    def _cb_socket_close(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        self._detach()

    def _cb_publish(self, _c: paho.Client, _u: Any, mid: int, _reason: ReasonCode, _props: Any) -> None:
        waiter = self._waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._on_puback(mid)

    def _cb_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self._on_message(Inbound(message.topic, bytes(message.payload)))

    def _end(self, reason: str) -> None:
        self._detach()
        if not self._connack.done():
            self._connack.set_result(reason)
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"the MQTT session to {self.where} ended: {reason}"))
        self._waiters.clear()

    # -- for the connector --------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> int:
        """Queue a message and write what the socket takes; return its mid (PUBACK: on_puback)."""
        if self.lost.is_set():
            raise ConnectionError(f"no MQTT session: {self.reason}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {paho.error_string(info.rc)}")
        if not self._writing:
            self._want_write()
        return int(info.mid)

    def delivered(self, mid: int) -> asyncio.Future[None]:
        """Return a future that completes with the PUBACK of `mid` (ConnectionError if the session ends)."""
        waiter = self._waiters.get(mid)
        if waiter is None:
            waiter = self._waiters[mid] = self._loop.create_future()
            if self.lost.is_set():
                waiter.set_exception(ConnectionError(f"no MQTT session: {self.reason}"))
        return waiter

    def subscribe(self, topics: Sequence[tuple[str, int]]) -> None:
        if topics and not self.lost.is_set():
            self._client.subscribe(list(topics))
            self._want_write()

    async def close(self) -> None:
        """Send DISCONNECT (the Will is not published) and let the socket go."""
        if not self.lost.is_set():
            with contextlib.suppress(OSError, ValueError):
                self._client.disconnect()  # written at once; paho closes the socket after it
            self._want_write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), CLOSE_TIMEOUT_S)
            self._end("closed by the connector")
        self.abandon()

    def abandon(self) -> None:
        """Let the socket go without a goodbye."""
        self._detach()
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    async def establish(self, keepalive_s: int, timeout_s: float) -> None:
        """Connect to the broker and wait for its CONNACK; raise ConnectFailed if it does not accept."""
        client, broker = self._client, self.broker
        try:
            # TCP connect and TLS handshake block: a worker thread does them, and sends CONNECT.
            await asyncio.wait_for(
                self._loop.run_in_executor(None, lambda: client.connect(broker.host, broker.port, keepalive_s)),
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
        self._attach()
        try:
            reason = await asyncio.wait_for(self._connack, timeout_s)
        except TimeoutError:
            raise ConnectFailed(
                self.broker, "no CONNACK (the broker closed the TLS session: certificate refused?)", refused=True
            ) from None
        if isinstance(reason, str):
            raise ConnectFailed(self.broker, reason, refused=True)
        if reason.is_failure:
            raise ConnectFailed(self.broker, f"CONNACK refused: {reason}", refused=True)


class MqttLink:
    """One MQTT client identity and its brokers, in failover order."""

    def __init__(
        self,
        *,
        client_id: str,
        brokers: Sequence[BrokerEndpoint],
        keepalive_s: int = 15,
        max_inflight: int = 1000,
    ) -> None:
        self.client_id = client_id
        self.brokers = list(brokers)
        self.keepalive_s = keepalive_s
        self.max_inflight = max_inflight

    @contextlib.asynccontextmanager
    async def session(
        self,
        will: Will,
        *,
        on_message: Callable[[Inbound], None],
        on_puback: Callable[[int], None],
        start: int = 0,
        timeout_s: float = 10.0,
    ) -> AsyncIterator[MqttSession]:
        """Open a session on the first broker, in list order from `start`, that accepts it.

        Raises ConnectFailed when none does; leaving the block closes the session cleanly.
        """
        session = await self._open(will, on_message, on_puback, start, timeout_s)
        try:
            yield session
        finally:
            await session.close()

    async def _open(
        self,
        will: Will,
        on_message: Callable[[Inbound], None],
        on_puback: Callable[[int], None],
        start: int,
        timeout_s: float,
    ) -> MqttSession:
        errors: list[ConnectFailed] = []
        order = list(range(len(self.brokers)))
        for index in order[start:] + order[:start]:
            broker = self.brokers[index]
            try:
                session = self._session_for(broker, index, will, on_message, on_puback)
            except ConnectFailed as exc:
                errors.append(exc)
                continue
            try:
                await session.establish(self.keepalive_s, timeout_s)
            except ConnectFailed as exc:
                log.warning("mqtt connect refused: %s", exc)
                session.abandon()
                errors.append(exc)
                continue
            log.info("mqtt session open on %s as %s", session.where, self.client_id)
            return session
        if len(errors) == 1:
            raise errors[0]
        reason = "; ".join(str(e) for e in errors)
        raise ConnectFailed(self.brokers[start % len(self.brokers)], reason, refused=any(e.refused for e in errors))

    def _session_for(
        self,
        broker: BrokerEndpoint,
        index: int,
        will: Will,
        on_message: Callable[[Inbound], None],
        on_puback: Callable[[int], None],
    ) -> MqttSession:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv311,
            clean_session=True,  # principles-persistence-clean-session
        )
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        client.on_socket_open = _set_nodelay
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        try:
            context = _tls_context(broker)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(broker, f"TLS files unusable: {exc}") from None
        if context is not None:
            client.tls_set_context(context)
        return MqttSession(client, broker, index, asyncio.get_running_loop(), on_message, on_puback)
