"""A scripted stand-in for the connection manager's stream: drives HTTP stream filters directly.

`FakeStream` implements `StreamCallbacks` the way `ActiveStream` does where filters can
tell the difference: decoders run in order and `continue_decoding()` resumes after the
filter that stopped; a local reply (and any response) goes through every encoder in
reverse order before it is recorded; timers run on a manual clock (`advance`), never on
a real loop; `finish()` cancels timers and tells the filters, like the end of a stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from filters.http.api import STOP, FilterStatus, StreamFilter, StreamFilterFactory
from filters.http.route import Route, VirtualHost
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import HttpStreamInfo, ResponseFlag
from proxy.upstream.cluster import ClusterManager

CONFIG_PATH = "listeners[0].filters[0].config.http_filters[0].config"


def parse(
    parser: Callable[[Node, ParseContext], Any], value: object, path: str = CONFIG_PATH
) -> tuple[Any, list[str]]:
    """A filter's typed config and every problem its parser reported, as `path: message`."""
    node = Node(value, path)
    config = parser(node, ParseContext(frozenset()))
    return config, [str(problem) for problem in node.problems]


def parse_ok(parser: Callable[[Node, ParseContext], Any], value: object) -> Any:
    config, problems = parse(parser, value)
    assert problems == []
    return config


class FakeFactoryContext:
    """HttpFactoryContext for filters that need no upstreams."""

    listener_name = "test"
    runtime = None

    @property
    def cluster_manager(self) -> ClusterManager:
        raise AssertionError("this filter must not need the cluster manager")


def make_request(
    method: bytes = b"GET",
    path: bytes = b"/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    authority: bytes = b"example.com",
) -> RequestHeaders:
    return RequestHeaders(
        method, path, authority, Headers([(b"host", authority), *headers]), end_stream=True
    )


@dataclass(slots=True)
class LocalReply:
    status: int
    body: bytes
    flag: ResponseFlag | None
    headers: Headers
    details: str


@dataclass(slots=True)
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(slots=True)
class ManualClock:
    """A stand-in for time.monotonic that moves only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(eq=False)
class FakeStream:
    """One request through a list of stream filters; records everything they ask for."""

    request: RequestHeaders = field(default_factory=make_request)
    per_route: Mapping[str, Any] = field(default_factory=dict)
    route: Route | None = None
    vhost: VirtualHost | None = None
    retry_buffer_limit: int = 64 * 1024
    info: HttpStreamInfo = field(
        default_factory=lambda: HttpStreamInfo("test", "127.0.0.1:40000", b"HTTP/1.1")
    )
    filters: list[StreamFilter] = field(default_factory=list)
    local_replies: list[LocalReply] = field(default_factory=list)
    responses: list[ResponseHeaders] = field(default_factory=list)
    """Response heads as they left the encoders (towards the client)."""
    continued: int = 0
    """How many times a filter called continue_decoding()."""
    forwarded: bool = False
    """The request headers went through every decoder (the router would have them now)."""
    timers: list[FakeTimer] = field(default_factory=list)
    clock: float = 0.0
    resets: list[str] = field(default_factory=list)
    read_disables: list[bool] = field(default_factory=list)
    done: bool = False
    _next_decoder: int = 0

    # -- driving ----------------------------------------------------------------------------

    def start(self, *factories: StreamFilterFactory) -> FilterStatus | None:
        """Make the filters in decoder order, then decode the head through them.

        Returns STOP when a filter held or answered the request, None when all went on.
        """
        for factory in factories:
            self.filters.append(factory(self))
        return self._decode_from(0)

    def _decode_from(self, start: int) -> FilterStatus | None:
        decoders = [f for f in self.filters if f.decodes]
        for index in range(start, len(decoders)):
            if self.done:
                return STOP
            status = decoders[index].decode_headers(self.request, self.request.end_stream)
            if status is STOP:
                self._next_decoder = index + 1
                return status
        self._next_decoder = len(decoders)
        self.forwarded = True
        return None

    def respond(self, status: int = 200, headers: Iterable[tuple[bytes, bytes]] = ()) -> Headers:
        """An upstream response head going back through the encoders; returns what left."""
        head = ResponseHeaders(status, Headers(list(headers)), end_stream=True)
        self.encode_headers(head, True)
        return head.headers

    def advance(self, seconds: float) -> None:
        """Move the timer clock on and fire every due, uncancelled timer in due order."""
        self.clock += seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.due <= self.clock]
            if not due:
                return
            timer = min(due, key=lambda t: t.due)
            timer.cancelled = True
            timer.callback()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        for timer in self.timers:
            timer.cancel()
        for filter_ in self.filters:
            filter_.on_destroy()

    @property
    def pending_timers(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    @property
    def reply(self) -> LocalReply:
        """The only local reply (fails the test if there were none or several)."""
        assert len(self.local_replies) == 1, self.local_replies
        return self.local_replies[0]

    @property
    def response(self) -> ResponseHeaders:
        assert len(self.responses) == 1, self.responses
        return self.responses[0]

    # -- StreamCallbacks --------------------------------------------------------------------

    def per_route_config(self, filter_name: str) -> Any:
        value = self.per_route.get(filter_name)
        return None if value is False else value

    def set_route(self, route: Route) -> None:
        self.route = route

    def continue_decoding(self) -> None:
        self.continued += 1
        if not self.done:
            self._decode_from(self._next_decoder)

    def send_local_reply(
        self,
        status: int,
        body: bytes = b"",
        flag: ResponseFlag | None = None,
        headers: Headers | None = None,
        details: str = "",
    ) -> None:
        assert not self.done, "local reply after the stream ended"
        headers = headers or Headers()
        self.local_replies.append(LocalReply(status, body, flag, headers, details))
        if flag is not None:
            self.info.fail(flag, details)
        elif details:
            self.info.failure_reason = details
        self.encode_headers(ResponseHeaders(status, headers, end_stream=not body), not body)
        self.done = True

    def encode_headers(self, head: ResponseHeaders, end_stream: bool) -> None:
        for filter_ in reversed(self.filters):
            if filter_.encodes and filter_.encode_headers(head, end_stream) is STOP:
                return
        self.info.status = head.status
        self.responses.append(head)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        raise AssertionError("stream filters under test do not send bodies")

    def encode_trailers(self, trailers: Headers) -> None:
        raise AssertionError("stream filters under test do not send trailers")

    def call_later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        timer = FakeTimer(self.clock + delay, callback)
        self.timers.append(timer)
        return timer.cancel

    def read_disable(self, disable: bool) -> None:
        self.read_disables.append(disable)

    def reset(self, reason: str) -> None:
        self.resets.append(reason)
        self.done = True
