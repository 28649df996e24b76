"""The forwarding path: a request whose listener has no HTTP filter but the router, and whose
route only forwards, goes straight from the codec (or as bytes) to an upstream stream.

Most proxied requests need nothing the stream filters offer: no filter looks at them and
their route names a cluster and a timeout. For those, one `ForwardedExchange` does what an
`ActiveStream` with a `Router` and its attempt would (request preparation, route and vhost
header mutations, the pool, the route timeout, outlier reports, a retry on a stale keep-alive
connection, local replies, stats and access log), without building a filter chain per
request (`Route.forwards_only` and `HcmShared.forwarding` decide). Anything else (other
HTTP filters, redirects, direct responses, rewrites, retry policies, upgrades and CONNECT,
gRPC) takes the general path, which does all of it.

An HTTP/1.1 request whose head `protocols.http.h1_forward` can read is forwarded as bytes
(a ForwardedExchange given `head`): its head goes upstream as received with the proxy's lines
cut in and appended, the body as it comes, and the response head and body come back the
same way; the codecs are not involved unless the response needs re-framing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from filters.http.route import Route, VirtualHost
from filters.http.router import IDEMPOTENT
from filters.network.http.prepare import strip_hop_by_hop
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.h1_forward import ResponseHead
from protocols.http.headers import Headers
from proxy.stream_info import HttpStreamInfo, ResponseFlag
from proxy.upstream.cluster import Cluster
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http1_pool import Http1Connection
from proxy.upstream.http_api import PendingStream, UpstreamStream

if TYPE_CHECKING:
    from filters.network.http.manager import HttpConnectionManager

STALE_RETRIES = 2
"""Tries on fresh connections after the upstream closed a kept-alive one under the request."""
_FAILURE_STATUS = {
    ResponseFlag.UPSTREAM_PROTOCOL_ERROR: 502,
    ResponseFlag.UPSTREAM_REQUEST_TIMEOUT: 504,
}


class ForwardedExchange:
    """One request forwarded to a cluster: the manager's stream and the pool's callbacks."""

    __slots__ = (
        "_cluster",
        "_head",
        "_manager",
        "_method",
        "_pending",
        "_request",
        "_route",
        "_stale_retries",
        "_stream",
        "_timeout",
        "_unsent",
        "_unsent_size",
        "_unsent_trailers",
        "deadline",
        "done",
        "h2_paused",
        "h2_unacked",
        "info",
        "request_complete",
        "response_started",
        "stream_id",
        "vhost",
    )

    def __init__(
        self,
        manager: HttpConnectionManager,
        request: RequestHeaders | None,
        info: HttpStreamInfo,
        vhost: VirtualHost,
        route: Route,
        cluster: Cluster,
        head: bytes | None = None,
        complete: bool = False,
    ) -> None:
        """Forward `request` (parsed), or `head` (bytes ready to send, with the body bytes
        that came with it; `complete`: the whole request)."""
        self._manager = manager
        self._request = request
        """The parsed head (None when forwarded as bytes)."""
        self._head = head
        self._method = info.method
        self._route = route
        self._cluster = cluster
        self.vhost = vhost
        self.stream_id = 1 if request is None else request.stream_id
        self.info = info
        info.route_name = route.name
        info.upstream_cluster = cluster.name
        self.request_complete = complete if request is None else request.end_stream
        self.response_started = False
        self.done = False
        self.h2_paused = 0
        self.h2_unacked = 0
        self._pending: PendingStream | None = None
        self._stream: UpstreamStream | None = None
        self.deadline = 0.0
        """When the route timeout ends (monotonic; 0: not running). The manager keeps one
        timer per connection for the earliest deadline, not one per request."""
        assert route.action is not None
        self._timeout = route.action.timeout
        self._stale_retries = 0
        self._unsent: list[tuple[bytes, bool]] = []
        """Body that arrived while the request waited for a connection."""
        self._unsent_size = 0
        self._unsent_trailers: Headers | None = None

    tunnel = False
    """(Upgrades and CONNECT never take the forwarding path.)"""

    # -- towards the upstream --------------------------------------------------------------

    def start(self) -> None:
        request = self._request
        if request is not None:
            vhost, route = self.vhost, self._route
            if vhost.request_headers.active:
                vhost.request_headers.apply(request.headers)
            if route.request_headers.active:
                route.request_headers.apply(request.headers)
        timeout = self._timeout
        if self.request_complete and timeout is not None:  # self._arm_timeout(), inlined
            self.deadline = deadline = time.monotonic() + timeout
            self._manager.watch_deadline(deadline)
        self.info.upstream_attempts += 1  # self._connect(), inlined
        self._pending = self._cluster.new_http_stream(self)

    def _connect(self) -> None:
        self.info.upstream_attempts += 1
        self._pending = self._cluster.new_http_stream(self)

    def decode_data(self, data: bytes, end_stream: bool) -> None:
        self.info.body_bytes_received += len(data)
        if end_stream:
            self._arm_timeout()
        stream = self._stream
        if stream is not None:
            if self._head is None:
                stream.send_data(data, end_stream)
            else:
                assert isinstance(stream, Http1Connection)
                stream.forward_body(data, end_stream)
            return
        self._unsent.append((data, end_stream))  # waiting for a connection
        self._unsent_size += len(data)
        limit = self._manager.shared.config.retry_buffer_limit
        if self._unsent_size > limit and self._unsent_size - len(data) <= limit:
            self._manager.stream_read_disable(self, True)

    def decode_trailers(self, trailers: Headers) -> None:
        self._arm_timeout()
        if self._stream is not None:
            self._stream.send_trailers(trailers)
        else:
            self._unsent_trailers = trailers

    def _arm_timeout(self) -> None:
        timeout = self._timeout
        if timeout is not None and not self.deadline and not self.done:
            self.deadline = deadline = time.monotonic() + timeout
            self._manager.watch_deadline(deadline)

    # -- UpstreamCallbacks ------------------------------------------------------------------

    def on_pool_ready(self, stream: UpstreamStream) -> None:
        self._pending = None
        if self.done:
            stream.reset()
            return
        self._stream = stream
        self.info.upstream_host = stream.endpoint.name
        unsent, trailers = self._unsent, self._unsent_trailers
        head = self._head
        if head is not None:
            assert isinstance(stream, Http1Connection)
            if unsent:
                head = b"".join([head, *(data for data, _ in unsent)])
                self._release_unsent()
            stream.forward_request(head, self._method, self.request_complete, self)
            return
        request = self._request
        assert request is not None
        if not unsent and trailers is None:
            stream.send_headers(request, self.request_complete)
            return
        stream.send_headers(request, False)
        for data, end_stream in unsent:
            stream.send_data(data, end_stream)
        if trailers is not None:
            stream.send_trailers(trailers)
        self._release_unsent()

    def _release_unsent(self) -> None:
        paused = self._unsent_size > self._manager.shared.config.retry_buffer_limit
        self._unsent, self._unsent_size, self._unsent_trailers = [], 0, None
        if paused:
            self._manager.stream_read_disable(self, False)

    def on_pool_failure(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None) -> None:
        self._pending = None
        if endpoint is not None:
            self._record_failure(endpoint, flag is ResponseFlag.UPSTREAM_CONNECTION_FAILURE)
        self._fail(flag, reason)

    def on_forwarded_response(self, head: ResponseHead, body: bytes, end_stream: bool) -> None:
        if self.done:
            return
        # self._response_began(head.status), inlined (once per request)
        stream = self._stream
        outlier = self._cluster.outlier
        if outlier is not None and stream is not None:
            outlier.record_status(stream.endpoint, head.status)
        info = self.info
        info.status = head.status
        info.upstream_service_time = time.monotonic() - info.start_monotonic
        self.response_started = True
        if end_stream:
            self._stream = None  # the pool takes the connection back after this call
        info.body_bytes_sent += len(body)
        self._manager.forward_response(self, head.head, body, end_stream)

    def on_forwarded_body(self, data: bytes, end_stream: bool) -> None:
        if not self.done:
            if end_stream:
                self._stream = None
            self.info.body_bytes_sent += len(data)
            self._manager.forward_body(self, data, end_stream)

    def _response_began(self, status: int) -> None:
        outlier = self._cluster.outlier
        stream = self._stream
        if outlier is not None and stream is not None:
            outlier.record_status(stream.endpoint, status)
        info = self.info
        info.status = status
        info.upstream_service_time = time.monotonic() - info.start_monotonic
        self.response_started = True

    def on_upstream_headers(self, head: ResponseHeaders) -> None:
        status = head.status
        if status < 200 or self.done:
            return  # 1xx: the manager answered 100 Continue itself; nothing upgrades here
        if self._request is None:
            self._manager.forwarded_response_reframed(self._method)
        self._response_began(status)
        headers = head.headers
        route, vhost = self._route, self.vhost
        if route.response_headers.active:
            route.response_headers.apply(headers)
        if vhost.response_headers.active:
            vhost.response_headers.apply(headers)
        strip_hop_by_hop(headers, keep_upgrade=False)
        if head.end_stream:
            self._stream = None  # the pool takes the connection back after this call
        self._manager.send_headers(self, head, head.end_stream)

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None:
        if not self.done:
            self.info.body_bytes_sent += len(data)
            if end_stream:
                self._stream = None
            self._manager.send_data(self, data, end_stream)

    def on_upstream_trailers(self, trailers: Headers) -> None:
        if not self.done:
            self._stream = None
            self._manager.send_trailers(self, trailers)

    def on_upstream_reset(self, reason: str, before_response: bool, reused: bool) -> None:
        stream, self._stream = self._stream, None
        if self.done:
            return
        endpoint = stream.endpoint if stream is not None else None
        if self.response_started:
            self.info.fail(ResponseFlag.UPSTREAM_CONNECTION_TERMINATION, reason)
            self._manager.reset_stream(self)
            return
        if (
            reused
            and self._stale_retries < STALE_RETRIES
            and self._method in IDEMPOTENT
            and self.request_complete
            and self.info.body_bytes_received == 0
        ):
            # A kept-alive connection the upstream had closed: not the upstream's fault.
            self._stale_retries += 1
            self._connect()
            return
        if endpoint is not None:
            self._record_failure(endpoint, connect=False)
        protocol = reason.startswith("upstream protocol error")
        flag = (
            ResponseFlag.UPSTREAM_PROTOCOL_ERROR
            if protocol
            else ResponseFlag.UPSTREAM_CONNECTION_TERMINATION
        )
        self._fail(flag, reason)

    def on_upstream_above_write_buffer_high_watermark(self) -> None:
        self._manager.stream_read_disable(self, True)

    def on_upstream_below_write_buffer_low_watermark(self) -> None:
        self._manager.stream_read_disable(self, False)

    # -- downstream flow control -------------------------------------------------------------

    def on_above_write_buffer_high_watermark(self) -> None:
        if self._stream is not None:
            self._stream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self._stream is not None:
            self._stream.read_disable(False)

    # -- endings -----------------------------------------------------------------------------

    def deadline_passed(self) -> None:
        """The route timeout ran out (the manager checks the deadlines it watches)."""
        if self.done:
            return
        cluster = self._cluster
        cluster.stats.rq_timeout += 1
        stream, self._stream = self._stream, None
        if stream is not None:
            self._record_failure(stream.endpoint, connect=False)
            stream.reset()
        reason = "upstream request timeout"
        if self.response_started:
            self.info.fail(ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, reason)
            self._manager.reset_stream(self)
            return
        self._fail(ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, reason)

    def _record_failure(self, endpoint: Endpoint, connect: bool) -> None:
        outlier = self._cluster.outlier
        if outlier is not None:
            outlier.record_failure(endpoint, connect)

    def _fail(self, flag: ResponseFlag, reason: str) -> None:
        """A local reply in place of the upstream's (503, or 502 / 504 by cause)."""
        self.info.fail(flag, reason)
        status = _FAILURE_STATUS.get(flag, 503)
        self._manager.local_reply(self, status, f"{reason}\n".encode())

    def finish(self, downstream_reset: bool = False) -> None:
        """The exchange is over (answered, reset, or the client went away): let go of the
        upstream side, then report to the manager."""
        if self.done:
            return
        self.done = True
        info = self.info
        info.end_monotonic = time.monotonic()  # info.end(downstream_reset), inlined
        if downstream_reset and not info.status:
            info.fail(ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION, "client went away")
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.reset()  # ended before the response did: the upstream must not work on
        self._manager.stream_finished(self)
