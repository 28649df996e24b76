"""ActiveStream: one request/response exchange running through the HTTP stream filters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from filters.http.api import STOP, StreamFilter
from filters.http.route import Route, VirtualHost
from filters.network.http.prepare import strip_hop_by_hop
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.stream_info import HttpStreamInfo, ResponseFlag
from proxy.timers import Deadline

if TYPE_CHECKING:
    from filters.network.http.manager import HttpConnectionManager

# HTTP status -> gRPC status for replies the proxy makes itself (gRPC's HTTP mapping).
GRPC_STATUS = {400: 13, 401: 16, 403: 7, 404: 12, 413: 8, 429: 14, 502: 14, 503: 14, 504: 4}
GRPC_DEADLINE_EXCEEDED = 4
PRECISE_BELOW = 1.0
"""Deadlines shorter than this (seconds) get a loop timer instead of the wheel's slot: up to a
tick late matters to them (a 300 ms gRPC deadline racing the upstream's own clock)."""


class ActiveStream:
    """Implements `StreamCallbacks` for the filters of one stream."""

    __slots__ = (
        "_decoder_index",
        "_held_bytes",
        "_held_data",
        "_held_paused",
        "_held_trailers",
        "_timers",
        "decoders",
        "done",
        "encoders",
        "filters",
        "h2_paused",
        "h2_unacked",
        "info",
        "manager",
        "request",
        "request_complete",
        "response_started",
        "route",
        "stream_id",
        "vhost",
    )

    def __init__(
        self,
        manager: HttpConnectionManager,
        request: RequestHeaders,
        info: HttpStreamInfo,
        vhost: VirtualHost | None,
        route: Route | None,
    ) -> None:
        self.manager = manager
        self.stream_id = request.stream_id
        self.request = request
        self.info = info
        self.vhost = vhost
        self.route = route
        self.response_started = False
        self.request_complete = request.end_stream
        self.h2_paused = 0
        self.h2_unacked = 0
        self.done = False
        self._timers: list[Deadline | asyncio.TimerHandle] = []
        self._decoder_index = 0
        self._held_data: list[tuple[bytes, bool]] = []
        self._held_bytes = 0
        self._held_paused = False
        self._held_trailers: Headers | None = None
        self.filters: list[StreamFilter] = []
        self.decoders: list[StreamFilter] = []
        self.encoders: list[StreamFilter] = []

    @property
    def tunnel(self) -> bool:
        """An HTTP/1 Upgrade or CONNECT: the client's EOF ends its data, not the exchange."""
        request = self.request
        return request.upgrade is not None or request.method == b"CONNECT"

    # -- set-up -------------------------------------------------------------------------------

    def start(self) -> None:
        """Make this stream's filters (for the route found), then decode."""
        request = self.request
        shared = self.manager.shared
        route = self.route
        per_filter = None
        if route is not None:
            self.info.route_name = route.name
            per_filter = route.per_filter
        filters, decoders, encoders = self.filters, self.decoders, self.encoders
        for name, factory in shared.filter_factories:
            if per_filter and per_filter.get(name) is False:
                continue
            filter_ = factory(self)
            filters.append(filter_)
            if filter_.decodes:
                decoders.append(filter_)
            if filter_.encodes:
                encoders.append(filter_)
        encoders.reverse()
        self._run_header_decoders(0, request.end_stream)

    # -- StreamCallbacks ------------------------------------------------------------------------

    @property
    def retry_buffer_limit(self) -> int:
        return self.manager.shared.config.retry_buffer_limit

    def per_route_config(self, filter_name: str) -> Any:
        if self.route is None:
            return None
        value = self.route.per_filter.get(filter_name)
        return None if value is False else value

    def set_route(self, route: Route) -> None:
        self.route = route
        self.info.route_name = route.name

    def call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        timer: Deadline | asyncio.TimerHandle
        if delay < PRECISE_BELOW:
            timer = asyncio.get_running_loop().call_later(delay, callback)
        else:
            timer = self.manager.shared.timers.call_later(delay, callback)
        self._timers.append(timer)
        return timer.cancel

    def read_disable(self, disable: bool) -> None:
        self.manager.stream_read_disable(self, disable)

    # -- decoding (towards the upstream) -------------------------------------------------------
    #
    # While a decoder filter holds the headers (returned STOP), body and trailers still go
    # through the filters that have seen the headers, the holding one included (Envoy's
    # StopIteration): a filter that answers from the body consumes it (returns STOP). What
    # no filter consumed is held, and released after the headers, to the filters after the
    # one that held them.

    def _run_header_decoders(self, start: int, end_stream: bool) -> bool:
        """True when the headers went through every decoder."""
        for index in range(start, len(self.decoders)):
            if self.done:
                return False
            if self.decoders[index].decode_headers(self.request, end_stream) is STOP:
                self._decoder_index = index + 1
                return False
        self._decoder_index = len(self.decoders)
        return True

    @property
    def _holding(self) -> bool:
        return self._decoder_index < len(self.decoders)

    def decode_data(self, data: bytes, end_stream: bool, start: int = 0) -> None:
        self.info.body_bytes_received += len(data)
        decoders = self.decoders
        seen = self._decoder_index
        for index in range(start, seen):
            if self.done or decoders[index].decode_data(data, end_stream) is STOP:
                return
        if seen < len(decoders):
            self._held_data.append((data, end_stream))
            self._held_bytes += len(data)
            if (
                not self._held_paused
                and self._held_bytes > self.manager.shared.config.retry_buffer_limit
            ):
                self._held_paused = True
                self.read_disable(True)

    def decode_trailers(self, trailers: Headers, start: int = 0) -> None:
        decoders = self.decoders
        seen = self._decoder_index
        for index in range(start, seen):
            if self.done or decoders[index].decode_trailers(trailers) is STOP:
                return
        if seen < len(decoders):
            self._held_trailers = trailers

    def continue_decoding(self) -> None:
        """A filter that held the headers lets them go on; held body and trailers follow
        (and are held again if another filter holds the headers)."""
        resume = self._decoder_index
        if self.done:
            return
        self._run_header_decoders(resume, self.request.end_stream)
        self._release_held(resume)

    def _release_held(self, resume: int) -> None:
        if self.done:
            return
        held, self._held_data = self._held_data, []
        self._held_bytes = 0
        trailers, self._held_trailers = self._held_trailers, None
        paused, self._held_paused = self._held_paused, False
        for data, end_stream in held:
            self.info.body_bytes_received -= len(data)  # counted again on the way through
            self.decode_data(data, end_stream, resume)
        if trailers is not None:
            self.decode_trailers(trailers, resume)
        if paused:
            self.read_disable(False)

    # -- encoding (towards the client) ---------------------------------------------------------

    def encode_headers(self, head: ResponseHeaders, end_stream: bool) -> None:
        if self.done:
            return
        status = head.status
        if status >= 200:
            self.response_started = True
            self.info.status = status
        strip_hop_by_hop(head.headers, keep_upgrade=status == 101)
        for filter_ in self.encoders:
            if filter_.encode_headers(head, end_stream) is STOP:
                return
        self.manager.send_headers(self, head, end_stream)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if self.done:
            return
        self.info.body_bytes_sent += len(data)
        for filter_ in self.encoders:
            if filter_.encode_data(data, end_stream) is STOP:
                return
        self.manager.send_data(self, data, end_stream)

    def encode_trailers(self, trailers: Headers) -> None:
        if self.done:
            return
        for filter_ in self.encoders:
            if filter_.encode_trailers(trailers) is STOP:
                return
        self.manager.send_trailers(self, trailers)

    def send_local_reply(
        self,
        status: int,
        body: bytes = b"",
        flag: ResponseFlag | None = None,
        headers: Headers | None = None,
        details: str = "",
    ) -> None:
        if self.done:
            return
        if flag is not None:
            self.info.fail(flag, details or body.decode("latin-1", "replace"))
        elif details:
            self.info.failure_reason = details
        if self.response_started:
            self.reset(details or f"local reply {status} after the response started")
            return
        headers = headers or Headers()
        if self.info.grpc:
            self._grpc_local_reply(status, body or details.encode(), headers)
            return
        if body:
            headers.setdefault(b"content-type", b"text/plain")
        headers.set(b"content-length", b"%d" % len(body))
        head = ResponseHeaders(status, headers, stream_id=self.stream_id, end_stream=not body,
                               content_length=len(body))  # fmt: skip
        self.encode_headers(head, not body)
        if body:
            self.encode_data(body, True)

    def _grpc_local_reply(self, status: int, message: bytes, headers: Headers) -> None:
        """gRPC clients read errors from grpc-status, always with HTTP 200 (trailers-only)."""
        code = GRPC_STATUS.get(status, 2)
        headers.set(b"content-type", b"application/grpc")
        headers.set(b"grpc-status", b"%d" % code)
        if message:
            headers.set(b"grpc-message", _percent_encode(message))
        head = ResponseHeaders(200, headers, stream_id=self.stream_id, end_stream=True)
        self.encode_headers(head, True)

    def reset(self, reason: str) -> None:
        if self.done:
            return
        if self.info.failure_reason is None:
            self.info.failure_reason = reason
        self.manager.reset_stream(self)

    # -- lifetime ------------------------------------------------------------------------------

    def on_above_write_buffer_high_watermark(self) -> None:
        for filter_ in self.filters:
            filter_.on_above_write_buffer_high_watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        for filter_ in self.filters:
            filter_.on_below_write_buffer_low_watermark()

    def finish(self, downstream_reset: bool = False) -> None:
        """The exchange is over: tell the filters, log it, count it."""
        if self.done:
            return
        self.done = True
        self.info.end(downstream_reset)
        for timer in self._timers:
            timer.cancel()
        filters = self.filters
        # Filters hold this stream as their callbacks: let go of them, so that the stream
        # is freed by reference counting instead of waiting for the cyclic GC.
        self.filters = self.decoders = self.encoders = []
        for filter_ in filters:
            filter_.on_destroy()
        self.manager.stream_finished(self)


def _percent_encode(message: bytes) -> bytes:
    """grpc-message is percent-encoded (gRPC over HTTP/2 spec)."""
    out = bytearray()
    for byte in message[:1024]:
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)
