"""The contract between the HTTP router and the upstream connection pools."""

from __future__ import annotations

from typing import Protocol

from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.h1_forward import ResponseHead
from protocols.http.headers import Headers
from proxy.stream_info import ResponseFlag
from proxy.upstream.endpoint import Endpoint


class UpstreamStream(Protocol):
    """One request/response exchange bound to an upstream connection."""

    @property
    def endpoint(self) -> Endpoint: ...

    def send_headers(self, head: RequestHeaders, end_stream: bool) -> None: ...

    def send_data(self, data: bytes, end_stream: bool) -> None: ...

    def send_trailers(self, trailers: Headers) -> None: ...

    def reset(self) -> None:
        """Abandon the exchange (HTTP/1 closes the connection, HTTP/2 resets the stream)."""

    def read_disable(self, disable: bool) -> None:
        """Stop (True) or resume (False) taking response bytes; calls nest."""


class UpstreamCallbacks(Protocol):
    """What a pool reports to the request that asked it for a stream."""

    def on_pool_ready(self, stream: UpstreamStream) -> None: ...

    def on_pool_failure(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None) -> None:
        """No stream could be had (connect failure, timeout, overflow)."""

    def on_upstream_headers(self, head: ResponseHeaders) -> None: ...

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None: ...

    def on_upstream_trailers(self, trailers: Headers) -> None: ...

    def on_upstream_reset(self, reason: str, before_response: bool, reused: bool) -> None:
        """The exchange died after it was bound; `reused` tells a stale keep-alive connection."""

    def on_upstream_above_write_buffer_high_watermark(self) -> None: ...

    def on_upstream_below_write_buffer_low_watermark(self) -> None: ...


class PendingStream(Protocol):
    def cancel(self) -> None:
        """The requester no longer wants a stream (its downstream went away)."""


class ForwardingCallbacks(UpstreamCallbacks, Protocol):
    """A request forwarded as bytes (HTTP/1.1): the response comes back as bytes too, its
    head read by `protocols.http.h1_forward`, unless the codec must re-frame it (then the
    UpstreamCallbacks events come instead)."""

    def on_forwarded_response(self, head: ResponseHead, body: bytes, end_stream: bool) -> None:
        """A final response head (hop-by-hop fields cut) and the body bytes that came with it."""

    def on_forwarded_body(self, data: bytes, end_stream: bool) -> None:
        """More body bytes, as received."""
