"""A subscribed client's own upstream connection: everything the server sends goes to it.

In subscribed mode Redis sends messages nobody asked for, in order with the replies to
(UN)SUBSCRIBE and PING, so the connection matches no reply to a command: past its own
handshake (AUTH / HELLO) every reply span goes to the client, as it came.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocols.redis.errors import RespError
from proxy.upstream.redis_pool import RedisConnection, RedisPool, RedisPoolSettings

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster
    from proxy.upstream.endpoint import Endpoint


class SubscriberConnection(RedisConnection):
    __slots__ = ("lost", "sink")

    def __init__(self, pool: SubscriberPool) -> None:
        super().__init__(pool)
        self.sink = pool.sink
        self.lost = pool.lost

    def subscribe(self, command: bytes) -> None:
        """A command whose replies are not counted: they go to the sink like messages."""
        if self.failed:
            self.lost(self.failure or "connection failed")
            return
        self.queue(command)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            spans = self._parser.feed(data)
        except RespError as error:
            self.fail(f"protocol error from upstream: {error.reason}")
            return
        in_flight = self.in_flight
        for span in spans:
            if in_flight:  # the handshake's own replies
                in_flight.popleft()[0].complete(span)
            else:
                self.sink(span)

    def fail(self, reason: str) -> None:
        if not self.failed:
            super().fail(reason)
            self.lost(reason)


class SubscriberPool(RedisPool):
    """One connection, owned by the subscribed session (closed with it)."""

    kind = "redis-subscriber"

    def __init__(self, cluster: Cluster, endpoint: Endpoint, settings: RedisPoolSettings,
                 sink: Callable[[bytes], None], lost: Callable[[str], None]) -> None:  # fmt: skip
        super().__init__(cluster, endpoint, settings)
        self.sink = sink
        self.lost = lost

    def new_connection(self) -> SubscriberConnection:
        return SubscriberConnection(self)

    def connection(self) -> SubscriberConnection:
        connection = self.pick()
        assert isinstance(connection, SubscriberConnection)
        return connection
