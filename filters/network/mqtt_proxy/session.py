"""One MQTT client connection: CONNECT picks the broker, then packets flow both ways.

Packets are decoded in both directions (cheap: the codec keeps each packet's raw bytes,
which are what is forwarded) so the proxy can enforce ACLs, answer in the client's
protocol version, and count messages per topic pattern. Reading from the client waits
while the broker connection is being made; each side's backpressure pauses the other.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import replace
from typing import TYPE_CHECKING

from filters.network.api import STOP, ConnectionCallbacks, FilterStatus, NetworkFilter
from protocols.mqtt import (
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttError,
    Packet,
    Puback,
    Publish,
    Pubrec,
    ReasonCode,
    Suback,
    Subscribe,
    encode,
)
from proxy.stream_info import ResponseFlag
from proxy.upstream.cluster import Cluster, UpstreamError
from proxy.upstream.connection import UpstreamConnection

if TYPE_CHECKING:
    from filters.network.mqtt_proxy.filter import MqttShared

log = logging.getLogger("mecha.mqtt_proxy")

V311_SERVER_UNAVAILABLE = 3
V311_SUBACK_FAILURE = 0x80
FULL_READ = 64 * 1024
"""A read this large says more is waiting: the client gets no second read in the same loop
turn (the event loop would read a busy socket up to 32 times in a row), so publishers that
write as fast as they can do not crowd out deliveries on the way back from the broker."""


class MqttSession(NetworkFilter):
    __slots__ = ("_aliases", "_cancel_connect_timer", "_closed", "_connecting", "_early",
                 "_pending_subacks", "_to_broker", "_to_client", "_yielding", "callbacks",
                 "client_id", "shared", "upstream", "username", "version")  # fmt: skip

    def __init__(self, shared: MqttShared, callbacks: ConnectionCallbacks) -> None:
        self.shared = shared
        self.callbacks = callbacks
        limit = shared.config.max_packet_size
        self._to_broker = MqttDecoder(limit, "server")
        self._to_client = MqttDecoder(limit, "client")
        self.version = 4
        self.client_id = ""
        self.username: str | None = None
        self.upstream: UpstreamConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._early: list[bytes] = []
        self._aliases: dict[int, str] = {}
        self._pending_subacks: dict[int, list[int | None]] = {}
        """packet id -> the codes the proxy decided itself (None: the broker's answer)."""
        self._closed = False
        self._yielding = False
        self._cancel_connect_timer: asyncio.TimerHandle | None = None

    # -- client -> broker ---------------------------------------------------------------------

    def on_new_connection(self) -> FilterStatus:
        loop = asyncio.get_running_loop()
        timeout = self.shared.config.connect_timeout
        self._cancel_connect_timer = loop.call_later(timeout, self._no_connect)
        return STOP

    def _no_connect(self) -> None:
        if self.upstream is None and self._connecting is None:
            self.shared.stats.connection("connect_timeout")
            self.callbacks.info.fail(ResponseFlag.STREAM_IDLE_TIMEOUT, "no CONNECT in time")
            self.callbacks.close(abort=True)

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if data:
            broken: MqttError | None = None
            try:
                packets = self._to_broker.feed(data)
            except MqttError as error:
                broken, packets = error, error.packets
            forward = [raw for packet in packets if (raw := self._from_client(packet))]
            if forward:
                self._send_up(b"".join(forward))
            if broken is not None:
                self._client_broke(broken)
                return STOP
            if len(data) >= FULL_READ and not self._yielding and not self._closed:
                self._yield_turn()
        if end_stream:
            if self.upstream is not None:
                self.upstream.write_eof()
            else:
                self.callbacks.close()
        return STOP

    def _from_client(self, packet: Packet) -> bytes:
        """The bytes to forward for one packet from the client ("" when answered here)."""
        if isinstance(packet, Publish):
            return self._publish(packet)
        if isinstance(packet, Subscribe):
            return self._subscribe(packet)
        if isinstance(packet, Connect):
            self._connect(packet)
            return b""  # sent once the broker connection is up
        return packet.raw

    def _publish(self, packet: Publish) -> bytes:
        topic = packet.topic
        alias = packet.properties.topic_alias if self.version == 5 else None
        if alias is not None:
            if topic:
                self._aliases[alias] = topic
            else:
                topic = self._aliases.get(alias, "")
        if not self.shared.acl.allows("publish", topic, self.username):
            self.shared.stats.denial("publish")
            self._refuse_publish(packet)
            return b""
        self.shared.stats.message(topic, len(packet.payload), "in")
        return packet.raw

    def _refuse_publish(self, packet: Publish) -> None:
        if self.version != 5:
            # 3.1.1 has no way to refuse one message: the spec's answer is to disconnect.
            log.info("mqtt %s: publish to %r not allowed; closing (MQTT 3.1.1)",
                     self.client_id, packet.topic)  # fmt: skip
            self._close()
            return
        denied = ReasonCode.NOT_AUTHORIZED
        if packet.qos == 1:
            self.callbacks.write(encode(Puback(packet.packet_id, denied), 5))
        elif packet.qos == 2:
            self.callbacks.write(encode(Pubrec(packet.packet_id, denied), 5))

    def _subscribe(self, packet: Subscribe) -> bytes:
        decisions: list[int | None] = []
        allowed = []
        for subscription in packet.subscriptions:
            if self.shared.acl.allows("subscribe", subscription.topic_filter, self.username):
                decisions.append(None)
                allowed.append(subscription)
            else:
                self.shared.stats.denial("subscribe")
                decisions.append(
                    V311_SUBACK_FAILURE if self.version == 4 else ReasonCode.NOT_AUTHORIZED
                )
        if len(allowed) == len(decisions):
            return packet.raw
        if not allowed:
            codes = tuple(code for code in decisions if code is not None)
            self.callbacks.write(encode(Suback(packet.packet_id, codes), self.version))
            return b""
        self._pending_subacks[packet.packet_id] = decisions
        return encode(replace(packet, subscriptions=tuple(allowed)), self.version)

    def _connect(self, packet: Connect) -> None:
        self.version = packet.version
        self.client_id = packet.client_id
        self.username = packet.username
        self._to_client.version = packet.version
        if self._cancel_connect_timer is not None:
            self._cancel_connect_timer.cancel()
        if not self.shared.admit():
            self.shared.stats.connection("rate_limited")
            self._refuse_connect(ReasonCode.CONNECTION_RATE_EXCEEDED, "connection rate exceeded")
            return
        cluster = self.shared.cluster_for(packet.client_id, packet.username)
        self.callbacks.info.upstream_cluster = cluster.name
        self.callbacks.read_disable(True)
        self._connecting = asyncio.create_task(
            self._open(cluster, packet.raw), name=f"mqtt-connect:{packet.client_id}"
        )

    async def _open(self, cluster: Cluster, connect: bytes) -> None:
        try:
            endpoint = None
            if cluster.shard_ring is not None:  # keep a client id on one broker
                endpoint = cluster.shard_ring.choose_hash(zlib.crc32(self.client_id.encode()))
            if endpoint is not None:
                self.upstream = await cluster.open_connection(
                    endpoint, lambda: UpstreamConnection(cluster, endpoint, self, 1 << 20)
                )
            else:
                self.upstream = await cluster.connect(self)
        except UpstreamError as error:
            self.shared.stats.connection("broker_unavailable")
            self.callbacks.info.fail(error.flag, error.reason)
            self._refuse_connect(
                ReasonCode.SERVER_UNAVAILABLE, f"broker unavailable: {error.reason}"
            )
            return
        if self._closed:
            self.upstream.close()
            return
        self.shared.stats.connection("accepted")
        self.callbacks.info.upstream_host = str(self.upstream.endpoint.address)
        self.upstream.write(connect + b"".join(self._early))
        self._early.clear()
        self.callbacks.read_disable(False)

    def _yield_turn(self) -> None:
        """Read nothing more from this client until the loop's next turn."""
        self._yielding = True
        self.callbacks.read_disable(True)
        asyncio.get_running_loop().call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self._yielding = False
        if not self._closed:
            self.callbacks.read_disable(False)

    def _send_up(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.write(data)
        else:
            self._early.append(data)  # after CONNECT, before the broker answered the dial

    def _refuse_connect(self, reason: int, text: str) -> None:
        if self.version == 5:
            self.callbacks.write(encode(Connack(reason_code=reason), 5))
        else:
            self.callbacks.write(encode(Connack(reason_code=V311_SERVER_UNAVAILABLE), 4))
        log.info("mqtt %s: refused: %s", self.client_id or "-", text)
        self._close()

    def _client_broke(self, error: MqttError) -> None:
        self.shared.stats.connection("protocol_error")
        remote = self.callbacks.info.downstream_remote
        log.warning("mqtt %s from %s: %s (0x%02X); closing", self.client_id or "-", remote,
                    error.reason, error.reason_code)  # fmt: skip
        self.callbacks.info.fail(ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR, error.reason)
        version = self._to_broker.version
        connected = self.upstream is not None or self._connecting is not None
        if version == 5:
            packet = (
                Disconnect(error.reason_code)
                if connected
                else Connack(reason_code=error.reason_code)
            )
            self.callbacks.write(encode(packet, 5))
        elif not connected and error.v311_connack_code is not None:
            self.callbacks.write(encode(Connack(reason_code=error.v311_connack_code), 4))
        self._close()

    # -- broker -> client -------------------------------------------------------------------------

    def on_upstream_data(self, data: bytes) -> None:
        try:
            packets = self._to_client.feed(data)
        except MqttError as error:
            log.warning("mqtt %s: broker sent malformed data: %s", self.client_id, error.reason)
            packets = error.packets
            self.callbacks.write(b"".join(self._to_client_bytes(p) for p in packets))
            self._close()
            return
        self.callbacks.write(b"".join(self._to_client_bytes(p) for p in packets))

    def _to_client_bytes(self, packet: Packet) -> bytes:
        if isinstance(packet, Publish):
            self.shared.stats.message(packet.topic, len(packet.payload), "out")
        elif isinstance(packet, Suback) and packet.packet_id in self._pending_subacks:
            decisions = self._pending_subacks.pop(packet.packet_id)
            broker = iter(packet.reason_codes)
            codes = tuple(code if code is not None else next(broker, 0x80) for code in decisions)
            return encode(replace(packet, reason_codes=codes), self.version)
        return packet.raw

    def on_upstream_eof(self) -> None:
        self.callbacks.write(b"", end_stream=True)

    def on_upstream_close(self, error: Exception | None) -> None:
        if not self._closed:
            self.callbacks.close()

    def on_upstream_above_write_buffer_high_watermark(self) -> None:
        self.callbacks.read_disable(True)

    def on_upstream_below_write_buffer_low_watermark(self) -> None:
        self.callbacks.read_disable(False)

    def on_above_write_buffer_high_watermark(self) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(False)

    # -- endings ----------------------------------------------------------------------------------

    def _close(self) -> None:
        self._closed = True
        self.callbacks.close()

    def on_close(self) -> None:
        self._closed = True
        if self._cancel_connect_timer is not None:
            self._cancel_connect_timer.cancel()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.upstream is not None:
            self.upstream.close()
