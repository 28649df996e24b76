"""The HTTP stream filter contract (Envoy's `Http::StreamDecoderFilter`/`EncoderFilter`).

A filter instance lives for one request/response exchange (a *stream*). Decoder hooks
run in configuration order on the way to the upstream; encoder hooks run in reverse
order on the way back. A decoder hook answers `CONTINUE` (pass the event on) or `STOP`
(the filter holds the request: it will call `continue_decoding()` later, or it answered
locally with `send_local_reply()`). An encoder hook may change what it is given; `STOP`
there drops the event, so only a filter that replaces the response uses it. The router
is the last decoder filter and the only one that talks to upstreams.

Stream filters are the same for HTTP/1.1 and HTTP/2: they see `RequestHeaders`,
`ResponseHeaders`, body chunks and trailers, never codec details.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.stream_info import HttpStreamInfo, ResponseFlag

if TYPE_CHECKING:
    from filters.http.route import Route, VirtualHost
    from protocols.http.h1_forward import RequestHead
    from proxy.upstream.cluster import ClusterManager
    from runtime.runtime import Runtime


class FilterStatus(enum.Enum):
    CONTINUE = 0
    STOP = 1


CONTINUE = FilterStatus.CONTINUE
STOP = FilterStatus.STOP


class StreamCallbacks(Protocol):
    """What a stream filter may do to its stream."""

    @property
    def info(self) -> HttpStreamInfo: ...

    @property
    def request(self) -> RequestHeaders:
        """The request head (as modified by the filters before this one)."""

    @property
    def route(self) -> Route | None:
        """The route the request matched, or None (404 unless a filter answers)."""

    @property
    def vhost(self) -> VirtualHost | None:
        """The virtual host the request's authority selected."""

    @property
    def retry_buffer_limit(self) -> int:
        """How much request body may be kept for replaying on a retry."""

    def per_route_config(self, filter_name: str) -> Any:
        """This filter's per-route override (`routes[].filters.<name>`), or None."""

    def continue_decoding(self) -> None:
        """Resume the decoder chain after this filter returned STOP."""

    def set_route(self, route: Route) -> None:
        """Send the request where `route` says instead of where it matched (Envoy's
        setRoute); for filters that pick the upstream themselves, e.g. service invocation."""

    def send_local_reply(
        self,
        status: int,
        body: bytes = b"",
        flag: ResponseFlag | None = None,
        headers: Headers | None = None,
        details: str = "",
    ) -> None:
        """Answer the request here (mapped to a gRPC status for gRPC requests)."""

    def encode_headers(self, head: ResponseHeaders, end_stream: bool) -> None:
        """Send a response head through the encoder filters (used by terminal filters)."""

    def encode_data(self, data: bytes, end_stream: bool) -> None: ...

    def encode_trailers(self, trailers: Headers) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Run callback after delay seconds unless the stream ends first; returns a cancel."""

    def read_disable(self, disable: bool) -> None:
        """Stop (True) or resume (False) taking request body from the client; calls nest."""

    def reset(self, reason: str) -> None:
        """Abort the stream downstream (HTTP/2 RST_STREAM; HTTP/1 closes the connection)."""


class StreamFilter:
    """Base for decoder and/or encoder filters; override only the hooks you need."""

    __slots__ = ()
    decodes: bool = True
    encodes: bool = False

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def decode_trailers(self, trailers: Headers) -> FilterStatus:
        return CONTINUE

    def encode_headers(self, response: ResponseHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_trailers(self, trailers: Headers) -> FilterStatus:
        return CONTINUE

    def on_above_write_buffer_high_watermark(self) -> None:
        """The client is not taking the response fast enough: stop producing it."""

    def on_below_write_buffer_low_watermark(self) -> None:
        """The client caught up: producing may resume."""

    def on_destroy(self) -> None:
        """The stream is over (completed, reset or the connection closed)."""


StreamFilterFactory = Callable[[StreamCallbacks], StreamFilter]

LocalAnswer = tuple[int, bytes, bytes]
"""(status, the response's `Name: value\\r\\n` lines, body): an answer made without a stream."""


@runtime_checkable
class AnswersAtOnce(Protocol):
    """A filter factory whose filter answers some requests itself, and can answer the
    simplest of them from the request head alone, without a stream or a filter instance:
    an HTTP/1.1 connection manager whose only other filter is the router asks it first."""

    def answer_at_once(self, head: RequestHead) -> LocalAnswer | None:
        """The answer to a body-less request, or None: the stream path takes the request
        (and nothing was done for it that the stream path does not do again)."""


class HttpFactoryContext(Protocol):
    """Server-wide services an HTTP filter factory may use when it is built."""

    @property
    def cluster_manager(self) -> ClusterManager: ...

    @property
    def listener_name(self) -> str: ...

    @property
    def runtime(self) -> Runtime | None:
        """The application runtime, when the config has a `runtime:` section."""
