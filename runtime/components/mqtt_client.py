"""A small MQTT 3.1.1 / 5 client on mecha's codec, for the MQTT pub/sub and binding.

aiomqtt (paho-mqtt 2.x) offers no way to hold back a PUBACK until a handler answered and does
not reconnect by itself; both are what a subscriber needs, so the client is ours. It keeps one
connection, reconnects it with a backoff, and lets operations wait for it at most `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from protocols.mqtt import (
    NO_PROPERTIES,
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttError,
    Packet,
    Pingreq,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    encode,
    is_topic_filter,
    is_topic_name,
)
from runtime.components.api import Metadata
from runtime.components.errors import BadMetadata, ComponentError
from runtime.components.metadata import choice, duration, flag

log = logging.getLogger("mecha.mqtt.client")

MAX_PACKET = 16 << 20
"""The largest packet read from the broker (advertised in MQTT 5)."""


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    stable_id: bool = False
    """The client id came from metadata, so a persistent session is found again."""
    qos: int = 1
    retain: bool = False
    clean_session: bool = False
    version: int = 4
    keep_alive: int = 30
    timeout: float = 5.0
    initial: float = 0.1
    maximum: float = 10.0

    def backoff(self, attempt: int) -> float:
        return min(self.initial * 2.0 ** min(max(attempt, 1) - 1, 62), self.maximum)

    @property
    def durable(self) -> bool:
        return self.qos >= 1 and not self.clean_session and self.stable_id


def parse_settings(metadata: Metadata) -> MqttSettings:
    url = urlsplit(metadata.get("url", "").strip())
    if url.scheme in ("ssl", "tls", "mqtts"):
        raise BadMetadata("url", "TLS (ssl://) is not supported yet; use tcp://")
    if url.scheme not in ("tcp", "mqtt") or not url.hostname:
        raise BadMetadata("url", "expected tcp://[user[:password]@]host[:port]")
    try:
        port = url.port or 1883
    except ValueError:
        raise BadMetadata("url", "the port is not a number") from None
    client_id = metadata.get("consumerID", "").strip()
    initial = duration(metadata, "redeliverInitialInterval", 0.1)
    maximum = duration(metadata, "redeliverMaxInterval", max(10.0, initial))
    if maximum < initial:
        raise BadMetadata("redeliverMaxInterval", "must not be less than redeliverInitialInterval")
    return MqttSettings(
        host=url.hostname,
        port=port,
        username=unquote(url.username) if url.username is not None else None,
        password=unquote(url.password) if url.password is not None else None,
        client_id=client_id or f"mecha-{uuid.uuid4().hex[:12]}",
        stable_id=bool(client_id),
        qos=choice(metadata, "qos", {"0": 0, "1": 1, "2": 2}, 1),
        retain=flag(metadata, "retain", False),
        clean_session=flag(metadata, "cleanSession", False),
        version=choice(metadata, "protocolVersion", {"4": 4, "3.1.1": 4, "5": 5}, 4),
        keep_alive=max(1, round(duration(metadata, "keepAlive", 30.0))),
        timeout=max(0.1, duration(metadata, "timeout", 5.0)),
        initial=initial,
        maximum=maximum,
    )


# -- the client -------------------------------------------------------------------------------

PublishCallback = Callable[[Publish, int], None]
"""Called with each PUBLISH received and the connection generation it arrived on."""


class _Connection(asyncio.Protocol):
    """One TCP connection: bytes into the decoder, packets to the client."""

    def __init__(self, client: MqttClient, version: int) -> None:
        self.client = client
        self.decoder = MqttDecoder(MAX_PACKET, "client", version=version)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except MqttError as error:
            for packet in error.packets:
                self.client.dispatch(self, packet)
            log.warning("mqtt %s: malformed input from the broker: %s", self.client.client_id,
                        error.reason)  # fmt: skip
            self.abort()
            return
        for packet in packets:
            self.client.dispatch(self, packet)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def send(self, packet: Packet, version: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(packet, version))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class MqttClient:
    """A small asyncio MQTT client: one connection at a time, reconnected with a backoff.

    Received PUBLISH packets go to `on_publish`; the caller acknowledges them with `ack` (QoS
    1: PUBACK, QoS 2: PUBREC). Subscriptions are remembered and made again after a reconnect
    that did not resume the session. Outgoing operations fail (ComponentError) when the
    connection drops before they complete; nothing is resent."""

    def __init__(self, settings: MqttSettings, client_id: str, clean_session: bool,
                 on_publish: PublishCallback | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.client_id = client_id
        self.clean_session = clean_session
        self.on_publish = on_publish
        self.generation = 0
        self._connection: _Connection | None = None
        self._connected = asyncio.Event()
        self._connack: asyncio.Future[Connack] | None = None
        self._pending: dict[int, asyncio.Future[Packet]] = {}
        self._ids = itertools.cycle(range(1, 0x10000))
        self._filters: dict[str, int] = {}
        self._incoming_qos2: set[int] = set()
        self._last_received = 0.0
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect once (ComponentError if that fails), then stay connected in a task."""
        await self._connect()
        self._task = asyncio.create_task(self._supervise(), name=f"mqtt {self.client_id}")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        connection = self._connection
        if connection is not None and self.connected:
            connection.send(Disconnect(), self.settings.version)
            if connection.transport is not None:
                connection.transport.close()
        self._lost(connection, "closed")

    # -- connecting ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            connection = self._connection
            if connection is not None:
                await asyncio.shield(connection.closed)
                self._lost(connection, "connection lost")
                log.warning("mqtt %s: connection to %s:%d lost; reconnecting", self.client_id,
                            self.settings.host, self.settings.port)  # fmt: skip
            delay = 0.1
            while True:
                try:
                    await self._connect()
                    break
                except ComponentError as error:
                    log.debug("mqtt %s: %s; again in %.1fs", self.client_id, error, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _connect(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(s.timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, s.version), s.host, s.port)  # fmt: skip
                self._connection = connection
                self._connack = loop.create_future()
                connection.send(self._connect_packet(), s.version)
                connack = await self._connack
                if connack.reason_code:
                    raise ComponentError(f"mqtt: the broker refused the connection (code "
                                         f"{connack.reason_code})", retryable=False)  # fmt: skip
                if self.clean_session or not connack.session_present:
                    for topic_filter, qos in list(self._filters.items()):
                        await self._subscribe(connection, topic_filter, qos)
        except (OSError, TimeoutError, ComponentError) as error:
            if connection is not None:
                connection.abort()
                self._lost(connection, "connect failed")
            if isinstance(error, ComponentError):
                raise
            where = f"{s.host}:{s.port}"
            raise ComponentError(
                f"mqtt: cannot connect to {where}: {error or 'timed out'}"
            ) from None
        self._connected.set()
        name = f"mqtt {self.client_id} keep-alive"
        self._pinger = asyncio.create_task(self._keep_alive(connection), name=name)

    def _connect_packet(self) -> Connect:
        s = self.settings
        props = NO_PROPERTIES
        if s.version == 5:
            expiry = 0 if self.clean_session else 0xFFFFFFFF
            props = Properties(session_expiry_interval=expiry, maximum_packet_size=MAX_PACKET)
        return Connect(client_id=self.client_id, version=s.version, clean_start=self.clean_session,
                       keep_alive=s.keep_alive, username=s.username,
                       password=s.password.encode() if s.password is not None else None,
                       properties=props)  # fmt: skip

    async def _keep_alive(self, connection: _Connection) -> None:
        interval = self.settings.keep_alive / 2
        while not connection.closed.done():
            await asyncio.wait([connection.closed], timeout=interval)
            if connection.closed.done():
                return
            if time.monotonic() - self._last_received > self.settings.keep_alive * 1.5:
                log.warning("mqtt %s: the broker stopped answering; reconnecting", self.client_id)
                connection.abort()
                return
            connection.send(Pingreq(), self.settings.version)

    def _lost(self, connection: _Connection | None, why: str) -> None:
        if connection is not self._connection:
            return
        self._connected.clear()
        self._connection = None
        self._incoming_qos2.clear()
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ComponentError(f"mqtt {self.client_id}: {why}"))
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ComponentError(f"mqtt {self.client_id}: {why}"))

    # -- packets from the broker --------------------------------------------------------------

    def dispatch(self, connection: _Connection, packet: Packet) -> None:
        if connection is not self._connection:
            return
        self._last_received = time.monotonic()
        version = self.settings.version
        if isinstance(packet, Publish):
            if packet.qos == 2 and packet.packet_id in self._incoming_qos2:
                connection.send(Pubrec(packet.packet_id), version)  # a resend: already ours
            elif self.on_publish is not None:
                self.on_publish(packet, self.generation)
        elif isinstance(packet, Pubrel):
            self._incoming_qos2.discard(packet.packet_id)
            connection.send(Pubcomp(packet.packet_id), version)
        elif isinstance(packet, Pubrec) and packet.reason_code < 0x80:
            connection.send(Pubrel(packet.packet_id), version)
        elif isinstance(packet, Puback | Pubrec | Pubcomp | Suback | Unsuback):
            future = self._pending.pop(packet.packet_id, None)
            if future is not None and not future.done():
                future.set_result(packet)
        elif isinstance(packet, Connack):
            if packet.reason_code == 0:
                self.generation += 1  # now: PUBLISH packets may follow in the same read
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
        elif isinstance(packet, Disconnect):
            log.warning("mqtt %s: the broker disconnected (reason 0x%02X)", self.client_id,
                        packet.reason_code)  # fmt: skip
            connection.abort()

    def ack(self, packet: Publish, generation: int) -> None:
        """Acknowledge a received message (no-op for QoS 0, or after a reconnect: the broker
        sends it again then)."""
        connection = self._connection
        if packet.qos == 0 or generation != self.generation or connection is None:
            return
        if packet.qos == 1:
            connection.send(Puback(packet.packet_id), self.settings.version)
        else:
            self._incoming_qos2.add(packet.packet_id)
            connection.send(Pubrec(packet.packet_id), self.settings.version)

    # -- operations ---------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                      properties: Properties = NO_PROPERTIES) -> None:  # fmt: skip
        if not is_topic_name(topic):
            raise ComponentError(f"mqtt: {topic!r} is not a valid topic name", retryable=False)
        async with self._deadline(f"publish to {topic!r}"):
            connection = await self._ready()
            await connection.writable.wait()
            if not qos:
                connection.send(Publish(topic, payload, 0, retain, properties=properties),
                                self.settings.version)  # fmt: skip
                return
            packet_id = self._next_id()
            publish = Publish(topic, payload, qos, retain, packet_id=packet_id,
                              properties=properties)  # fmt: skip
            _check_code(
                await self._request(connection, publish, packet_id), f"publish to {topic!r}"
            )

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        """Subscribe now and after every reconnect that lost the session."""
        if not is_topic_filter(topic_filter, shared=self.settings.version == 5):
            raise ComponentError(f"mqtt: {topic_filter!r} is not a valid topic filter",
                                 retryable=False)  # fmt: skip
        self._filters[topic_filter] = qos
        async with self._deadline(f"subscribe to {topic_filter!r}"):
            await self._subscribe(await self._ready(), topic_filter, qos)

    async def _subscribe(self, connection: _Connection, topic_filter: str, qos: int) -> None:
        packet_id = self._next_id()
        subscribe = Subscribe(packet_id, (Subscription(topic_filter, qos),))
        reply = await self._request(connection, subscribe, packet_id)
        assert isinstance(reply, Suback)
        if not reply.reason_codes or reply.reason_codes[0] >= 0x80:
            raise ComponentError(f"mqtt: the broker refused the subscription to {topic_filter!r}",
                                 retryable=False)  # fmt: skip

    async def unsubscribe(self, topic_filter: str) -> None:
        self._filters.pop(topic_filter, None)
        async with self._deadline(f"unsubscribe from {topic_filter!r}"):
            packet_id = self._next_id()
            unsubscribe = Unsubscribe(packet_id, (topic_filter,))
            await self._request(await self._ready(), unsubscribe, packet_id)

    async def _request(self, connection: _Connection, packet: Packet, packet_id: int) -> Packet:
        """Send `packet` and wait for the broker's answer with the same packet id."""
        future: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()
        self._pending[packet_id] = future
        try:
            connection.send(packet, self.settings.version)
            return await future
        finally:
            if self._pending.get(packet_id) is future:
                del self._pending[packet_id]

    @contextlib.asynccontextmanager
    async def _deadline(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.settings.timeout):
                yield
        except TimeoutError:
            raise ComponentError(f"mqtt {self.client_id}: {what} timed out "
                                 f"(after {self.settings.timeout}s)") from None  # fmt: skip
        except ValueError as error:  # the encoder refused the packet
            raise ComponentError(f"mqtt: {what}: {error}", retryable=False) from None

    async def _ready(self) -> _Connection:
        if self._closing:
            raise ComponentError(f"mqtt {self.client_id}: closed", retryable=False)
        await self._connected.wait()
        assert self._connection is not None
        return self._connection

    def _next_id(self) -> int:
        for packet_id in self._ids:
            if packet_id not in self._pending:
                return packet_id
        raise AssertionError("unreachable")


def _check_code(reply: Packet, what: str) -> None:
    code = getattr(reply, "reason_code", 0)
    if code >= 0x80:
        raise ComponentError(f"mqtt: the broker refused the {what} (reason 0x{code:02X})")
