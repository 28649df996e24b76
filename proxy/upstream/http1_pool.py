"""Keep-alive HTTP/1.1 connection pools, one per endpoint.

A request takes an idle connection synchronously when there is one (no task, no
await on the hot path); otherwise it waits in a bounded queue while a connection is
opened. A connection carries one exchange at a time and goes back to the pool when the
response ended cleanly and both sides allow keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from protocols.http.errors import HttpError
from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h1 import H1ClientCodec
from protocols.http.h1_forward import read_response
from protocols.http.h1_parse import DEFAULT_LIMITS
from protocols.http.headers import Headers
from proxy.stream_info import ResponseFlag
from proxy.upstream.connection import ClusterConnection
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http_api import ForwardingCallbacks, UpstreamCallbacks

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster, UpstreamError

log = logging.getLogger("mecha.http1_pool")

BUFFER_LIMIT = 1 << 20
LIMITS = DEFAULT_LIMITS
"""What an upstream may send (the codec's defaults)."""


class _Pending:
    __slots__ = ("callbacks", "pool")

    def __init__(self, pool: Http1Pool, callbacks: UpstreamCallbacks) -> None:
        self.pool = pool
        self.callbacks = callbacks

    def cancel(self) -> None:
        self.pool.cancel(self)


class Http1Pool:
    def __init__(self, cluster: Cluster, endpoint: Endpoint) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.settings = cluster.config.http_pool
        self.idle: list[Http1Connection] = []
        self.pending: deque[_Pending] = deque()
        self.connecting = 0
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        """Cached: get_running_loop() costs a getpid() system call each time."""

    # -- requests ---------------------------------------------------------------------------

    def new_stream(self, callbacks: UpstreamCallbacks) -> _Pending | None:
        """Bind at once to an idle connection (returns None) or queue (returns a handle)."""
        if self.closed:
            reason = f"cluster {self.cluster.name!r} was removed or replaced by a reload"
            callbacks.on_pool_failure(ResponseFlag.NO_HEALTHY_UPSTREAM, reason, None)
            return None
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and connection._reusable:
                connection.bind(callbacks)
                return None
            connection.close()  # the upstream closed it (or will): never hand it out
        breakers = self.cluster.config.circuit_breakers
        if len(self.pending) >= breakers.max_pending_requests:
            self.cluster.stats.rq_pending_overflow += 1
            callbacks.on_pool_failure(
                ResponseFlag.UPSTREAM_OVERFLOW, "circuit breaker: max_pending_requests", None
            )
            return None
        pending = _Pending(self, callbacks)
        self.pending.append(pending)
        if self.connecting < len(self.pending):
            self._open()
        return pending

    def cancel(self, pending: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self.pending.remove(pending)

    # -- connections --------------------------------------------------------------------------

    def _open(self) -> None:
        if self.cluster.cx_active >= self.cluster.config.circuit_breakers.max_connections:
            self.cluster.stats.cx_overflow += 1
            return  # requests wait for a connection to come free
        self.connecting += 1
        task = self._loop.create_task(
            self._connect(), name=f"http1-connect:{self.cluster.name}:{self.endpoint.address}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        from proxy.upstream.cluster import UpstreamError

        try:
            connection = await self.cluster.open_connection(
                self.endpoint, lambda: Http1Connection(self)
            )
        except UpstreamError as error:
            self.connecting -= 1
            self._connect_failed(error)
            return
        except Exception as exc:  # a bug must not strand the waiting requests
            log.exception(
                "cluster %r: connecting to %s failed", self.cluster.name, self.endpoint.address
            )
            self.connecting -= 1
            self._connect_failed(UpstreamError(ResponseFlag.UPSTREAM_CONNECTION_FAILURE, str(exc)))
            return
        self.connecting -= 1
        self.release(connection, reused=False)

    def _connect_failed(self, error: UpstreamError) -> None:
        # One connection was meant for one waiting request; fail the oldest, keep the rest.
        if self.pending:
            self.pending.popleft().callbacks.on_pool_failure(
                error.flag, error.reason, self.endpoint
            )
        if self.pending and self.connecting < len(self.pending):
            self._open()

    def release(self, connection: Http1Connection, reused: bool = True) -> None:
        """A connection is free: hand it to the next waiting request, or keep it idle."""
        connection.reused = reused
        if self.pending:
            connection.bind(self.pending.popleft().callbacks)
            return
        if self.closed:
            connection.close()
            return
        connection.idle_since = self._loop.time()
        self.idle.append(connection)
        if self._sweeper is None:
            self._schedule_sweep()

    def connection_gone(self, connection: Http1Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        if self.pending and self.connecting < len(self.pending):
            self._open()

    def _schedule_sweep(self) -> None:
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self.settings.idle_timeout / 2, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle longer than idle_timeout; one timer per pool, not per request."""
        self._sweeper = None
        deadline = self._loop.time() - self.settings.idle_timeout
        for connection in [c for c in self.idle if c.idle_since <= deadline]:
            self.idle.remove(connection)
            connection.close()
        if self.idle:
            self._schedule_sweep()

    @property
    def in_flight(self) -> int:
        """Requests waiting for a connection (bound ones count in the cluster's rq_active)."""
        return len(self.pending)

    def close(self) -> None:
        """No new requests; idle connections close now, busy ones after their exchange, and
        a connection still being made serves the requests waiting for it first."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in self.idle:
            connection.close()
        self.idle.clear()

    def abort(self) -> None:
        self.close()
        for task in self._tasks:
            task.cancel()
        pending, self.pending = self.pending, deque()
        reason = f"cluster {self.cluster.name!r} stopped"
        for waiting in pending:
            waiting.callbacks.on_pool_failure(ResponseFlag.NO_HEALTHY_UPSTREAM, reason, None)


class Http1Connection(ClusterConnection):
    """One upstream HTTP/1.1 connection; also the UpstreamStream of its current exchange."""

    __slots__ = (
        "_forward_buffer",
        "_forward_left",
        "_forward_method",
        "_forwarding",
        "_got_response",
        "_request_done",
        "_reusable",
        "_tunnel",
        "callbacks",
        "codec",
        "idle_since",
        "pool",
        "requests",
        "reused",
    )  # fmt: skip

    def __init__(self, pool: Http1Pool) -> None:
        super().__init__(pool.cluster, pool.endpoint, BUFFER_LIMIT)
        self.pool = pool
        self.codec = H1ClientCodec(LIMITS)
        self.callbacks: UpstreamCallbacks | None = None
        self.idle_since = 0.0
        self.reused = False
        self.requests = 0
        self._got_response = False
        self._request_done = False
        self._tunnel = False
        self._forwarding: ForwardingCallbacks | None = None
        """The exchange of a request forwarded as bytes: its response is read as bytes."""
        self._forward_method = b""
        self._forward_buffer = b""
        self._forward_left = 0
        self._reusable = True
        """False once the upstream said it will close (EOF, a response with close)."""

    def bind(self, callbacks: UpstreamCallbacks) -> None:
        self.callbacks = callbacks
        self.requests += 1
        self._got_response = False
        self._request_done = False
        self.endpoint.rq_active += 1
        self.cluster.rq_active += 1
        callbacks.on_pool_ready(self)

    def _unbind(self) -> UpstreamCallbacks | None:
        callbacks, self.callbacks = self.callbacks, None
        if callbacks is not None:
            self.endpoint.rq_active -= 1
            self.cluster.rq_active -= 1
        return callbacks

    # -- UpstreamStream -----------------------------------------------------------------------

    def send_headers(self, head: RequestHeaders, end_stream: bool) -> None:
        self._request_done = end_stream
        self.write(self.codec.encode_request(head))

    def forward_request(
        self, data: bytes, method: bytes, end_stream: bool, callbacks: ForwardingCallbacks
    ) -> None:
        """Send a request head (and the body bytes that came with it) built by the caller;
        the response comes back to `callbacks` as bytes."""
        self._forwarding = callbacks
        self._forward_method = method
        self._request_done = end_stream
        if not self.closed and self.transport is not None:  # self.write(data), inlined
            self.bytes_sent += len(data)
            self.transport.write(data)

    def forward_body(self, data: bytes, end_stream: bool) -> None:
        self._request_done = end_stream
        self.write(data)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        self._request_done = end_stream
        self.write(self.codec.encode_data(data, end_stream))
        if end_stream and self._tunnel and self.transport is not None and not self.closed:
            self.transport.write_eof()  # the client half-closed the tunnel

    def send_trailers(self, trailers: Headers) -> None:
        self._request_done = True
        self.write(self.codec.encode_trailers(trailers))

    def reset(self) -> None:
        self._unbind()
        self.close(abort=True)

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        callbacks = self._forwarding
        if callbacks is None:
            self._codec_data(data)
            return
        # A response read as bytes. The common case, inlined: the whole of it in one read.
        if not self._forward_left and not self._forward_buffer:
            end = data.find(b"\r\n\r\n", 0, LIMITS.max_head)
            if end > 0:
                head = read_response(data, end, LIMITS, self._forward_method)
                if head is not None and len(data) == end + 4 + head.length:
                    self._got_response = True
                    if not head.keep_alive:
                        self._reusable = False
                    callbacks.on_forwarded_response(head, data[end + 4 :], True)
                    self._forward_done()
                    return
        self._forwarded_data(callbacks, data)

    def _codec_data(self, data: bytes) -> None:
        try:
            events = self.codec.feed(data)
        except HttpError as error:
            self._protocol_error(error)
            return
        self._dispatch(events)

    def eof_received(self) -> bool:
        self._reusable = False  # (an idle connection: the pool must not hand it out)
        if self.callbacks is None or not self._response_began():
            # Closed before a byte of the answer: a reset, not a bad response. connection_lost
            # reports it, as a stale kept-alive connection when it was reused (retried).
            return False
        if self._forwarding is not None:
            self._decline_forwarding()  # the codec judges what EOF means here
        try:
            self._dispatch(self.codec.feed(b""))
        except HttpError as error:
            self._protocol_error(error)
        return False

    def _response_began(self) -> bool:
        return self._got_response or bool(self._forward_buffer) or self.codec.buffered > 0

    # -- responses read as bytes ----------------------------------------------------------------

    def _forwarded_data(self, callbacks: ForwardingCallbacks, data: bytes) -> None:
        left = self._forward_left
        if left:
            if len(data) < left:
                self._forward_left = left - len(data)
                callbacks.on_forwarded_body(data, False)
                return
            if len(data) > left:
                data = data[:left]
                self._reusable = False  # bytes after the response: not a clean stream
            self._forward_left = 0
            callbacks.on_forwarded_body(data, True)
            self._forward_done()
            return
        buffer = self._forward_buffer + data if self._forward_buffer else data
        limits = LIMITS
        end = buffer.find(b"\r\n\r\n", 0, limits.max_head)
        if end < 0:
            if len(buffer) >= limits.max_head or not buffer.startswith(b"HTTP/"[: len(buffer)]):
                self._decline_forwarding(buffer)  # the codec answers it
                return
            self._forward_buffer = buffer
            return
        self._forward_buffer = b""
        head = read_response(buffer, end, limits, self._forward_method)
        if head is None:
            self._decline_forwarding(buffer)
            return
        self._got_response = True
        if not head.keep_alive:
            self._reusable = False
        start = end + 4
        length = head.length
        if len(buffer) - start < length:
            self._forward_left = length - (len(buffer) - start)
            callbacks.on_forwarded_response(head, buffer[start:], False)
            return
        if len(buffer) - start > length:
            self._reusable = False
        callbacks.on_forwarded_response(head, buffer[start : start + length], True)
        self._forward_done()

    def _forward_done(self) -> None:
        self._forwarding = None
        if self.callbacks is not None:  # self._unbind(), inlined
            self.callbacks = None
            self.endpoint.rq_active -= 1
            self.cluster.rq_active -= 1
        limit = self.pool.settings.max_requests_per_connection
        reusable = self._reusable and self._request_done and not self.closed
        if reusable and not (limit and self.requests >= limit):
            self.pool.release(self)
        else:
            self.close()

    def _decline_forwarding(self, buffer: bytes = b"") -> None:
        """A response the forwarding path does not pass on as bytes: the codec reads it (and
        the exchange gets events); the connection is not reused after it."""
        self._forwarding = None
        self._reusable = False
        self._forward_buffer = b""
        self.codec.expect_response(self._forward_method)
        if buffer:
            try:
                events = self.codec.feed(buffer)
            except HttpError as error:
                self._protocol_error(error)
                return
            self._dispatch(events)

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            callbacks = self.callbacks
            if callbacks is None:
                self.close(abort=True)  # a response nobody asked for
                return
            if isinstance(event, Data):
                callbacks.on_upstream_data(event.data, event.end_stream)
            elif isinstance(event, ResponseHeaders):
                self._got_response = True
                self._tunnel = event.status == 101
                callbacks.on_upstream_headers(event)
                if event.status < 200:
                    continue
            elif isinstance(event, Trailers):
                callbacks.on_upstream_trailers(event.headers)
            else:
                continue
            if event.end_stream:
                self._exchange_done()

    def _exchange_done(self) -> None:
        self._unbind()
        limit = self.pool.settings.max_requests_per_connection
        reusable = self._reusable and self.codec.keep_alive and self._request_done
        reusable = reusable and not self.closed
        if reusable and not (limit and self.requests >= limit):
            self.pool.release(self)
        else:
            self.close()

    def _protocol_error(self, error: HttpError) -> None:
        callbacks = self._unbind()
        self.close(abort=True)
        if callbacks is not None:
            reason = f"upstream protocol error: {error.reason}"
            callbacks.on_upstream_reset(reason, not self._got_response, reused=False)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.pool.connection_gone(self)
        callbacks = self._unbind()
        if callbacks is not None:
            reason = f"upstream reset: {exc}" if exc else "upstream closed the connection"
            callbacks.on_upstream_reset(reason, not self._got_response, self.reused)

    def pause_writing(self) -> None:
        if self.callbacks is not None:
            self.callbacks.on_upstream_above_write_buffer_high_watermark()

    def resume_writing(self) -> None:
        if self.callbacks is not None:
            self.callbacks.on_upstream_below_write_buffer_low_watermark()
