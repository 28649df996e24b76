"""The router: the terminal HTTP filter that forwards a request to a cluster and relays the answer.

One `_Attempt` per try. Retries follow the route's policy (conditions, count, per-try
timeout, exponential backoff with full jitter, other hosts first) within the cluster's
retry breaker or budget, and only when the request body is still fully buffered. The
route timeout runs from the end of the request to the end of the response; a gRPC
deadline (grpc-timeout) shortens it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from filters.http.api import (
    STOP,
    FilterStatus,
    HttpFactoryContext,
    StreamCallbacks,
    StreamFilter,
    StreamFilterFactory,
)
from filters.http.registry import HttpFilterSpec
from filters.http.route import Redirect, RetryPolicy, Route, RouteAction
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import ResponseFlag
from proxy.upstream.cluster import Cluster, ClusterManager
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http_api import PendingStream, UpstreamStream

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_GRPC_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])")
_GRPC_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """The router has no settings of its own; routes carry timeouts and retry policies."""


def parse_config(node: Node, context: ParseContext) -> RouterConfig:
    node.only()
    return RouterConfig()


def create_factory(config: RouterConfig, context: HttpFactoryContext) -> StreamFilterFactory:
    clusters = context.cluster_manager

    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        return Router(clusters, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory, terminal=True)


def grpc_timeout(value: bytes | None) -> float | None:
    if value is None:
        return None
    match = _GRPC_TIMEOUT.fullmatch(value.strip())
    return int(match.group(1)) * _GRPC_UNITS[match.group(2)] if match else None


def _shorter(timeout: float | None, grpc_deadline: bytes) -> float | None:
    """The route timeout, shortened by a gRPC deadline (grpc-timeout) when there is one."""
    deadline = grpc_timeout(grpc_deadline)
    if deadline is None:
        return timeout
    return deadline if timeout is None else min(deadline, timeout)


class Router(StreamFilter):
    __slots__ = (
        "_attempt", "_attempts", "_cancel_retry", "_cancel_timeout", "_cluster", "_clusters",
        "_done", "_downstream_paused", "_policy", "_replay", "_replay_size", "_request",
        "_request_end", "_response_started", "_retries_used", "_route", "_start", "_timeout",
        "_trailers", "_tried", "_unsent", "_unsent_size", "callbacks",
    )  # fmt: skip

    def __init__(self, clusters: ClusterManager, callbacks: StreamCallbacks) -> None:
        self._clusters = clusters
        self.callbacks = callbacks
        self._route: Route | None = None
        self._policy: RetryPolicy | None = None
        """The route's retry policy (None: no retries)."""
        self._cluster: Cluster | None = None
        self._request: RequestHeaders | None = None
        self._request_end = False
        self._replay: list[bytes] | None = []
        """Every body chunk so far while it fits the retry buffer; None once it did not."""
        self._replay_size = 0
        self._unsent: list[bytes] = []
        """Body that arrived before an attempt was bound, once it is too big to replay."""
        self._unsent_size = 0
        self._trailers: Headers | None = None
        self._attempt: _Attempt | None = None
        self._attempts = 0
        self._retries_used = 0
        self._tried: set[Endpoint] = set()
        """Endpoints already tried: retries go to others first."""
        self._response_started = False
        self._done = False
        self._timeout: float | None = None
        self._cancel_timeout: Callable[[], None] | None = None
        self._cancel_retry: Callable[[], None] | None = None
        self._downstream_paused = False
        self._start = 0.0

    # -- decoding ------------------------------------------------------------------------------

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        callbacks = self.callbacks
        route = callbacks.route
        if route is None:
            callbacks.send_local_reply(404, b"", ResponseFlag.NO_ROUTE_FOUND, details="no route")
            return STOP
        if route.direct_response is not None:
            direct = route.direct_response
            headers = Headers([(b"content-type", direct.content_type)])
            callbacks.send_local_reply(direct.status, direct.body, headers=headers)
            return STOP
        if route.redirect is not None:
            self._redirect(request, route.redirect)
            return STOP
        action = route.action
        assert action is not None
        self._route = route
        self._policy = action.retry_policy
        self._cluster = cluster = self._clusters.clusters[action.pick_cluster()]
        callbacks.info.upstream_cluster = cluster.name
        if action.rewrites:
            self._rewrite(request, action)
        vhost = callbacks.vhost
        if vhost is not None and vhost.request_headers.active:
            vhost.request_headers.apply(request.headers)
        if route.request_headers.active:
            route.request_headers.apply(request.headers)
        self._request = request
        self._request_end = end_stream
        # (only gRPC requests carry a deadline: others skip the search through the headers)
        deadline = request.headers.get(b"grpc-timeout") if callbacks.info.grpc else None
        self._timeout = action.timeout if deadline is None else _shorter(action.timeout, deadline)
        self._start = time.monotonic()
        if end_stream:
            self._arm_timeout()
        self._start_attempt()
        return STOP

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if self._done:
            return STOP
        self._request_end = end_stream
        attempt = self._attempt
        bound = attempt is not None and attempt.stream is not None
        if self._replay is not None:
            self._replay_size += len(data)
            if self._replay_size <= self.callbacks.retry_buffer_limit:
                self._replay.append(data)
            else:  # too big to replay: no retries from here on
                if not bound:
                    self._unsent = [*self._replay, data]
                self._replay = None
        elif not bound:
            self._unsent.append(data)
            self._unsent_size += len(data)
            if self._unsent_size > self.callbacks.retry_buffer_limit:
                self.upstream_write_blocked(True)  # no upstream yet: stop reading the client
        if bound:
            assert attempt is not None
            attempt.send_data(data, end_stream)
        if end_stream:
            self._arm_timeout()
        return STOP

    def decode_trailers(self, trailers: Headers) -> FilterStatus:
        if self._done:
            return STOP
        self._request_end = True
        self._trailers = trailers
        if self._attempt is not None:
            self._attempt.send_trailers(trailers)
        self._arm_timeout()
        return STOP

    def _rewrite(self, request: RequestHeaders, action: RouteAction) -> None:
        route = self._route
        assert route is not None
        if action.prefix_rewrite is not None and route.match.prefix is not None:
            request.path = action.prefix_rewrite + request.path[len(route.match.prefix) :]
        elif action.regex_rewrite is not None:
            pattern, substitution = action.regex_rewrite
            path, sep, query = request.path.partition(b"?")
            request.path = pattern.sub(substitution, path) + sep + query
        if action.host_rewrite is not None:
            request.authority = action.host_rewrite
            if b"host" in request.headers:
                request.headers.set(b"host", action.host_rewrite)

    def _redirect(self, request: RequestHeaders, redirect: Redirect) -> None:
        route = self.callbacks.route
        path, sep, query = request.path.partition(b"?")
        if redirect.path is not None:
            path = redirect.path
        elif redirect.prefix_rewrite is not None and route and route.match.prefix is not None:
            path = redirect.prefix_rewrite + path[len(route.match.prefix) :]
        if redirect.strip_query:
            sep = query = b""
        host = redirect.host or request.authority.rsplit(b":", 1)[0]
        port = b":%d" % redirect.port if redirect.port else b""
        scheme = redirect.scheme or request.scheme
        location = scheme + b"://" + host + port + path + sep + query
        self.callbacks.send_local_reply(redirect.status, headers=Headers([(b"location", location)]))

    # -- attempts ------------------------------------------------------------------------------

    def _start_attempt(self) -> None:
        assert self._cluster is not None
        self._cancel_retry = None
        self._attempts += 1
        self.callbacks.info.upstream_attempts = self._attempts
        attempt = _Attempt(self)
        self._attempt = attempt
        attempt.pending = self._cluster.new_http_stream(attempt, self._tried)

    def body_so_far(self) -> list[bytes]:
        """What a newly bound attempt must send first."""
        if self._replay is not None:
            return self._replay
        unsent, self._unsent, self._unsent_size = self._unsent, [], 0
        self.upstream_write_blocked(False)
        return unsent

    def on_pool_ready(self, attempt: _Attempt, stream: UpstreamStream) -> None:
        request = self._request
        assert request is not None
        endpoint = stream.endpoint
        self._tried.add(endpoint)
        self.callbacks.info.upstream_host = endpoint.name
        body = self.body_so_far()
        if not body and self._trailers is None:
            stream.send_headers(request, self._request_end)
        else:
            stream.send_headers(request, False)
            for index, chunk in enumerate(body):
                last = index == len(body) - 1
                stream.send_data(chunk, self._request_end and last and self._trailers is None)
            if self._trailers is not None:
                stream.send_trailers(self._trailers)
        if self._request_end and self._policy is not None:
            attempt.arm_per_try_timeout()

    def on_response_headers(self, attempt: _Attempt, head: ResponseHeaders) -> None:
        if attempt is not self._attempt or self._done:
            return
        status = head.status
        if status < 200:
            if status != 101:
                return  # we answered 100 Continue ourselves
            if self._request is None or not self._request.upgrade:
                attempt.abandon()
                self._attempt = None
                reason = "101 to a request without upgrade"
                self._fail(502, ResponseFlag.UPSTREAM_PROTOCOL_ERROR, reason)
                return
        attempt.cancel_per_try_timeout()
        cluster = self._cluster
        assert cluster is not None
        if cluster.outlier is not None and attempt.endpoint is not None:
            cluster.outlier.record_status(attempt.endpoint, status)
        if self._policy is not None and self._should_retry_status(status):
            attempt.abandon()
            self._retry()
            return
        self._response_started = True
        callbacks = self.callbacks
        callbacks.info.upstream_service_time = time.monotonic() - self._start
        route = self._route
        assert route is not None
        if route.response_headers.active:
            route.response_headers.apply(head.headers)
        vhost = callbacks.vhost
        if vhost is not None and vhost.response_headers.active:
            vhost.response_headers.apply(head.headers)
        callbacks.encode_headers(head, head.end_stream)
        if head.end_stream:
            self._finish()

    def on_response_data(self, attempt: _Attempt, data: bytes, end_stream: bool) -> None:
        if attempt is not self._attempt or self._done or not self._response_started:
            return
        if end_stream:
            self._finish()
        self.callbacks.encode_data(data, end_stream)

    def on_response_trailers(self, attempt: _Attempt, trailers: Headers) -> None:
        if attempt is not self._attempt or self._done or not self._response_started:
            return
        self._finish()
        self.callbacks.encode_trailers(trailers)

    def on_attempt_failed(
        self, attempt: _Attempt, flag: ResponseFlag, reason: str, endpoint: Endpoint | None,
        connect: bool, free_retry: bool = False,
    ) -> None:  # fmt: skip
        if attempt is not self._attempt or self._done:
            return
        self._attempt = None
        if endpoint is not None:
            self._tried.add(endpoint)
            cluster = self._cluster
            if cluster is not None and cluster.outlier is not None:
                cluster.outlier.record_failure(endpoint, connect)
        if self._response_started:
            self.callbacks.info.fail(ResponseFlag.UPSTREAM_CONNECTION_TERMINATION, reason)
            self._finish()
            self.callbacks.reset(reason)
            return
        if free_retry and self._replay is not None and self._attempts < 3:
            self._start_attempt()  # a stale keep-alive connection: not the upstream's fault
            return
        if self._should_retry_failure(flag, connect):
            self._retry()
            return
        status = 503
        if flag is ResponseFlag.UPSTREAM_PROTOCOL_ERROR:
            status = 502
        if flag is ResponseFlag.UPSTREAM_REQUEST_TIMEOUT:
            status = 504
        self._fail(status, flag, reason)

    def on_per_try_timeout(self, attempt: _Attempt) -> None:
        if attempt is not self._attempt or self._done:
            return
        assert self._cluster is not None
        self._cluster.stats.rq_timeout += 1
        endpoint = attempt.endpoint
        attempt.abandon()
        self._attempt = None
        if endpoint is not None and self._cluster.outlier is not None:
            self._cluster.outlier.record_failure(endpoint, connect=False)
        if self._should_retry_failure(ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, connect=False):
            self._retry()
            return
        self._fail(504, ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, "upstream per-try timeout")

    # -- retries -------------------------------------------------------------------------------

    def _can_retry(self) -> bool:
        policy = self._policy
        if policy is None or self._retries_used >= policy.num_retries or self._replay is None:
            return False
        assert self._cluster is not None
        return self._cluster.retry_allowed()

    def _should_retry_status(self, status: int) -> bool:
        policy = self._policy
        return policy is not None and policy.retries_status(status) and self._can_retry()

    def _should_retry_failure(self, flag: ResponseFlag, connect: bool) -> bool:
        policy = self._policy
        if policy is None or flag in (
            ResponseFlag.NO_HEALTHY_UPSTREAM,
            ResponseFlag.UPSTREAM_OVERFLOW,
        ):
            return False
        on = policy.retry_on
        wanted = bool(on & {"5xx", "gateway-error", "reset"}) or (
            connect and "connect-failure" in on
        )
        return wanted and self._can_retry()

    def _retry(self) -> None:
        policy = self._policy
        assert policy is not None and self._cluster is not None
        self._retries_used += 1
        self._cluster.stats.rq_retry += 1
        self._cluster.retries_active += 1
        ceiling = min(policy.max_interval, policy.base_interval * (2 ** (self._retries_used - 1)))
        delay = random.uniform(0, ceiling)  # full jitter
        self._cancel_retry = self.callbacks.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        assert self._cluster is not None
        self._cluster.retries_active -= 1
        if not self._done:
            self._start_attempt()

    # -- endings -------------------------------------------------------------------------------

    def _arm_timeout(self) -> None:
        if self._timeout is not None and self._cancel_timeout is None and not self._done:
            self._cancel_timeout = self.callbacks.call_later(self._timeout, self._on_timeout)

    def _on_timeout(self) -> None:
        if self._done:
            return
        assert self._cluster is not None
        self._cluster.stats.rq_timeout += 1
        attempt = self._attempt
        if attempt is not None:
            if attempt.endpoint is not None and self._cluster.outlier is not None:
                self._cluster.outlier.record_failure(attempt.endpoint, connect=False)
            attempt.abandon()
        self._attempt = None
        if self._response_started:
            self.callbacks.info.fail(
                ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, "upstream request timeout"
            )
            self._finish()
            self.callbacks.reset("upstream request timeout")
            return
        self._fail(504, ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, "upstream request timeout")

    def _fail(self, status: int, flag: ResponseFlag, reason: str) -> None:
        self._finish()
        self.callbacks.send_local_reply(status, f"{reason}\n".encode(), flag, details=reason)

    def _finish(self) -> None:
        self._done = True
        if self._cancel_timeout is not None:
            self._cancel_timeout()
        if self._cancel_retry is not None:
            self._cancel_retry()
            assert self._cluster is not None
            self._cluster.retries_active -= 1
            self._cancel_retry = None

    def on_destroy(self) -> None:
        """The stream ended (or the client left): drop whatever is still upstream."""
        if self._attempt is not None and not self._done:
            self._attempt.abandon()
        self._attempt = None
        if not self._done:
            self._finish()

    # -- flow control --------------------------------------------------------------------------

    def on_above_write_buffer_high_watermark(self) -> None:
        if self._attempt is not None and self._attempt.stream is not None:
            self._attempt.stream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self._attempt is not None and self._attempt.stream is not None:
            self._attempt.stream.read_disable(False)

    def upstream_write_blocked(self, blocked: bool) -> None:
        if blocked != self._downstream_paused:
            self._downstream_paused = blocked
            self.callbacks.read_disable(blocked)


class _Attempt:
    """One try of the request against one endpoint (`UpstreamCallbacks` for the pool)."""

    __slots__ = ("_cancel_per_try", "endpoint", "pending", "router", "stream")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.pending: PendingStream | None = None
        self.stream: UpstreamStream | None = None
        self.endpoint: Endpoint | None = None
        self._cancel_per_try: Callable[[], None] | None = None

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.stream is not None:
            self.stream.send_data(data, end_stream)
            if end_stream:
                self.arm_per_try_timeout()

    def send_trailers(self, trailers: Headers) -> None:
        if self.stream is not None:
            self.stream.send_trailers(trailers)
            self.arm_per_try_timeout()

    def arm_per_try_timeout(self) -> None:
        policy = self.router._policy
        if policy is not None and policy.per_try_timeout and self._cancel_per_try is None:
            self._cancel_per_try = self.router.callbacks.call_later(
                policy.per_try_timeout, lambda: self.router.on_per_try_timeout(self)
            )

    def cancel_per_try_timeout(self) -> None:
        if self._cancel_per_try is not None:
            self._cancel_per_try()
            self._cancel_per_try = None

    def abandon(self) -> None:
        self.cancel_per_try_timeout()
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.reset()

    # -- UpstreamCallbacks ------------------------------------------------------------------------

    def on_pool_ready(self, stream: UpstreamStream) -> None:
        self.pending = None
        self.stream = stream
        self.endpoint = stream.endpoint
        self.router.on_pool_ready(self, stream)

    def on_pool_failure(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None) -> None:
        self.pending = None
        self.endpoint = endpoint
        connect = flag is ResponseFlag.UPSTREAM_CONNECTION_FAILURE
        self.router.on_attempt_failed(self, flag, reason, endpoint, connect)

    def on_upstream_headers(self, head: ResponseHeaders) -> None:
        self.router.on_response_headers(self, head)

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None:
        self.router.on_response_data(self, data, end_stream)

    def on_upstream_trailers(self, trailers: Headers) -> None:
        self.router.on_response_trailers(self, trailers)

    def on_upstream_reset(self, reason: str, before_response: bool, reused: bool) -> None:
        self.stream = None
        self.cancel_per_try_timeout()
        flag = (
            ResponseFlag.UPSTREAM_PROTOCOL_ERROR
            if reason.startswith("upstream protocol error")
            else ResponseFlag.UPSTREAM_CONNECTION_TERMINATION
        )
        request = self.router._request
        free = reused and before_response and request is not None and request.method in IDEMPOTENT
        self.router.on_attempt_failed(self, flag, reason, self.endpoint, False, free_retry=free)

    def on_upstream_above_write_buffer_high_watermark(self) -> None:
        self.router.upstream_write_blocked(True)

    def on_upstream_below_write_buffer_low_watermark(self) -> None:
        self.router.upstream_write_blocked(False)
