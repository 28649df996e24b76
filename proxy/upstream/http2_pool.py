"""Multiplexed HTTP/2 upstream pools (prior knowledge, e.g. gRPC backends), one per endpoint.

Streams share a connection up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS; more
demand opens another connection. Received DATA is acknowledged (flow-control window
credited) only while the stream's consumer is reading, so a slow downstream throttles
the upstream instead of growing buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from protocols.http.errors import HttpError
from protocols.http.events import (
    ConnectionTerminated,
    Data,
    Event,
    RequestHeaders,
    ResponseHeaders,
    StreamReset,
    Trailers,
)
from protocols.http.h2 import H2Codec
from protocols.http.headers import Headers
from proxy.stream_info import ResponseFlag
from proxy.upstream.connection import ClusterConnection
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http_api import UpstreamCallbacks
from proxy.upstream.pool import PoolBase

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster, UpstreamError

log = logging.getLogger("mecha.http2_pool")

BUFFER_LIMIT = 1 << 20


class _Pending:
    __slots__ = ("callbacks", "pool")

    def __init__(self, pool: Http2Pool, callbacks: UpstreamCallbacks) -> None:
        self.pool = pool
        self.callbacks = callbacks

    def cancel(self) -> None:
        with contextlib.suppress(ValueError):
            self.pool.pending.remove(self)


class Http2Pool(PoolBase):
    kind = "http2"

    def __init__(self, cluster: Cluster, endpoint: Endpoint) -> None:
        super().__init__(cluster, endpoint)
        self.connections: list[Http2Connection] = []
        self.pending: deque[_Pending] = deque()
        self.connecting = 0

    def new_stream(self, callbacks: UpstreamCallbacks) -> _Pending | None:
        if self.closed:
            callbacks.on_pool_failure(ResponseFlag.NO_HEALTHY_UPSTREAM, self.refusal(), None)
            return None
        for connection in self.connections:
            if connection.has_capacity():
                connection.new_stream(callbacks)
                return None
        if len(self.pending) >= self.cluster.config.circuit_breakers.max_pending_requests:
            self.cluster.stats.rq_pending_overflow += 1
            callbacks.on_pool_failure(
                ResponseFlag.UPSTREAM_OVERFLOW, "circuit breaker: max_pending_requests", None
            )
            return None
        pending = _Pending(self, callbacks)
        self.pending.append(pending)
        if not self.connecting:
            self._open()
        return pending

    def _open(self) -> None:
        if self.cluster.cx_active >= self.cluster.config.circuit_breakers.max_connections:
            self.cluster.stats.cx_overflow += 1
            return
        self.connecting += 1
        self.connect(lambda: Http2Connection(self), self._connected, self._connect_failed)

    def _connected(self, connection: Http2Connection) -> None:
        self.connecting -= 1
        self.connections.append(connection)
        self.drain_pending()
        if self.closed:
            connection.drain()  # it served the requests that waited for it: no more

    def _connect_failed(self, error: UpstreamError) -> None:
        self.connecting -= 1
        self._fail_pending(error.flag, error.reason)

    def _fail_pending(self, flag: ResponseFlag, reason: str) -> None:
        while self.pending:
            self.pending.popleft().callbacks.on_pool_failure(flag, reason, self.endpoint)

    def drain_pending(self) -> None:
        """Give waiting requests to connections with room; open another if they are full."""
        for connection in self.connections:
            while self.pending and connection.has_capacity():
                connection.new_stream(self.pending.popleft().callbacks)
        if self.pending and not self.connecting:
            self._open()

    def connection_gone(self, connection: Http2Connection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        if self.pending and not self.connecting:
            self._open()

    @property
    def in_flight(self) -> int:
        """Requests waiting for a connection (bound ones count in the cluster's rq_active)."""
        return len(self.pending)

    def close(self) -> None:
        """No new streams; each connection closes after its last stream (now, if idle)."""
        self.closed = True
        for connection in list(self.connections):
            connection.drain()

    def abort(self) -> None:
        self.close()
        self.stop_connecting()
        self._fail_pending(ResponseFlag.NO_HEALTHY_UPSTREAM, self.refusal())


class _H2Stream:
    """One exchange on a shared HTTP/2 connection."""

    __slots__ = ("_paused", "_unacked", "callbacks", "connection", "got_response", "stream_id")

    def __init__(self, connection: Http2Connection, callbacks: UpstreamCallbacks):
        self.connection = connection
        self.stream_id = 0
        self.callbacks = callbacks
        self.got_response = False
        self._paused = 0
        self._unacked = 0

    @property
    def endpoint(self) -> Endpoint:
        return self.connection.endpoint

    def send_headers(self, head: RequestHeaders, end_stream: bool) -> None:
        # The id is taken only now: HTTP/2 needs ids to be opened in increasing order.
        self.stream_id = self.connection.open(self)
        head.stream_id = self.stream_id
        self.connection.codec.send_headers(head, end_stream)
        self.connection.flush_soon()

    def send_data(self, data: bytes, end_stream: bool) -> None:
        self.connection.codec.send_data(self.stream_id, data, end_stream)
        self.connection.flush_soon()

    def send_trailers(self, trailers: Headers) -> None:
        self.connection.codec.send_trailers(self.stream_id, trailers)
        self.connection.flush_soon()

    def reset(self) -> None:
        if self.connection.forget(self) and self.stream_id:
            self.connection.codec.reset(self.stream_id)
            self.connection.flush_soon()

    def read_disable(self, disable: bool) -> None:
        if disable:
            self._paused += 1
        elif self._paused:
            self._paused -= 1
            if not self._paused and self._unacked:
                self.acknowledge(0)

    def acknowledge(self, size: int) -> None:
        """Credit the window for consumed bytes, unless the consumer is paused."""
        self._unacked += size
        if not self._paused and self._unacked:
            self.connection.codec.acknowledge(self.stream_id, self._unacked)
            self._unacked = 0
            self.connection.flush_soon()


class Http2Connection(ClusterConnection):
    __slots__ = ("_flush_scheduled", "bound", "codec", "draining", "pool", "streams")

    def __init__(self, pool: Http2Pool) -> None:
        super().__init__(pool.cluster, pool.endpoint, BUFFER_LIMIT)
        self.pool = pool
        self.codec = H2Codec(client_side=True)
        self.streams: dict[int, _H2Stream] = {}
        """Streams that have sent their headers, by id."""
        self.bound: set[_H2Stream] = set()
        """Every stream handed out, with or without an id yet."""
        self.draining = False
        """No new streams (the peer's GOAWAY, or the pool closed): closes after the last."""
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.codec.initiate()
        self.flush()

    def has_capacity(self) -> bool:
        return (
            not self.draining
            and not self.closed
            and (len(self.bound) < self.codec.max_outbound_streams)
        )

    def drain(self) -> None:
        """Take no new streams; close once the last one ends (now, if there is none)."""
        self.draining = True
        if not self.bound:
            self.close()

    def new_stream(self, callbacks: UpstreamCallbacks) -> None:
        stream = _H2Stream(self, callbacks)
        self.bound.add(stream)
        self.endpoint.rq_active += 1
        self.cluster.rq_active += 1
        callbacks.on_pool_ready(stream)

    def open(self, stream: _H2Stream) -> int:
        stream_id = self.codec.next_stream_id()
        self.streams[stream_id] = stream
        return stream_id

    def forget(self, stream: _H2Stream) -> bool:
        """Drop a finished or reset stream; False if it was already gone."""
        if stream not in self.bound:
            return False
        self.bound.discard(stream)
        self.streams.pop(stream.stream_id, None)
        self.endpoint.rq_active -= 1
        self.cluster.rq_active -= 1
        if not self.bound and self.draining:
            self.close()
        elif self.pool.pending:
            self.pool.drain_pending()
        return True

    # -- output ---------------------------------------------------------------------------------

    def flush_soon(self) -> None:
        """Coalesce frames from every stream into one write per loop iteration."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        data = self.codec.data_to_send()
        if data:
            self.write(data)

    # -- input ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            events = self.codec.feed(data)
        except HttpError as error:
            self.flush()
            self._fail_all(f"upstream protocol error: {error.reason}")
            self.close()
            return
        for event in events:
            self._dispatch(event)
        self.flush()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, ConnectionTerminated):
            self.draining = True
            for stream_id in [s for s in self.streams if s > event.last_stream_id]:
                self._reset_stream(stream_id, "upstream refused the stream (GOAWAY)")
            return
        if isinstance(event, StreamReset):
            self._reset_stream(
                event.stream_id, f"upstream reset the stream (code {event.error_code})"
            )
            return
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        callbacks = stream.callbacks
        if isinstance(event, Data):
            stream.acknowledge(len(event.data))
            callbacks.on_upstream_data(event.data, event.end_stream)
        elif isinstance(event, ResponseHeaders):
            stream.got_response = True
            callbacks.on_upstream_headers(event)
            if event.informational:
                return
        elif isinstance(event, Trailers):
            callbacks.on_upstream_trailers(event.headers)
        if event.end_stream:
            self.forget(stream)

    def _reset_stream(self, stream_id: int, reason: str) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and self.forget(stream):
            stream.callbacks.on_upstream_reset(reason, before_response=not stream.got_response,
                                               reused=False)  # fmt: skip

    def _fail_all(self, reason: str) -> None:
        for stream in list(self.bound):
            if self.forget(stream):
                stream.callbacks.on_upstream_reset(reason, not stream.got_response, reused=False)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.pool.connection_gone(self)
        self._fail_all(f"upstream reset: {exc}" if exc else "upstream closed the connection")

    def pause_writing(self) -> None:
        for stream in list(self.bound):
            stream.callbacks.on_upstream_above_write_buffer_high_watermark()

    def resume_writing(self) -> None:
        for stream in list(self.bound):
            stream.callbacks.on_upstream_below_write_buffer_low_watermark()
