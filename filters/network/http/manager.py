"""The HTTP connection manager: codec in, streams through filters, codec out.

HTTP/1.1 runs one exchange at a time (pipelined requests wait in the codec's buffer);
HTTP/2 runs many streams. Output is gathered and written once per loop iteration.
With `codec: auto` the first bytes decide: the HTTP/2 preface means h2c prior
knowledge, anything else is HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from filters.http.api import AnswersAtOnce, StreamFilterFactory
from filters.network.api import STOP, ConnectionCallbacks, FilterStatus, NetworkFilter
from filters.network.http.config import HcmConfig
from filters.network.http.forward import ForwardedExchange
from filters.network.http.h1_bytes import H1BytesPaths
from filters.network.http.observe import HttpStats, format_access_log
from filters.network.http.prepare import prepare_request
from filters.network.http.stream import ActiveStream
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
from protocols.http.h1 import H1Limits, H1ServerCodec
from protocols.http.h2 import REFUSED_STREAM, H2Codec, H2Settings
from protocols.http.h2_frames import ErrorCode
from protocols.http.headers import Headers
from proxy.overload import OverloadState
from proxy.stream_info import HttpStreamInfo, ResponseFlag
from proxy.timers import Deadline, TimerWheel
from proxy.upstream.cluster import ClusterManager

log = logging.getLogger("mecha.http")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAM_ID = 2**31 - 1
H2_STREAM_BUFFER = 1 << 20
"""Response bytes one HTTP/2 stream may hold past the client's window before its upstream
is paused (the client bounds what it takes in flight; this bounds what waits for it)."""
FINAL_GOAWAY_DELAY = 1.0
"""Draining HTTP/2: seconds between the first GOAWAY (every stream id still welcome) and the
final one naming the last stream served, so requests already in flight are not refused."""
IDLE_DRAIN_GRACE = 0.2
"""Draining HTTP/1: an idle connection closes after this long without a request, so a client
sending its next request right at the drain gets an answer (with Connection: close)."""


Stream = ActiveStream | ForwardedExchange
"""An exchange on this connection: through the stream filters, or on the forwarding path."""


@dataclass(slots=True)
class HcmShared:
    """Built once per listener: what every connection of this manager shares."""

    listener: str
    config: HcmConfig
    filter_factories: list[tuple[str, StreamFilterFactory]]
    stats: HttpStats
    access_log: Callable[[str], None] | None
    h1_limits: H1Limits
    h2_settings: H2Settings
    clusters: ClusterManager
    overload: OverloadState = field(default_factory=OverloadState)
    timers: TimerWheel = field(default_factory=TimerWheel)
    forwarding: bool = field(init=False)
    """The router is the only HTTP filter: plain routes may take the forwarding path."""
    answering: AnswersAtOnce | None = field(init=False)
    """The one HTTP filter before the router, when it can answer requests from their heads
    and nothing decorates requests here (ids, traceparent): `_answer_at_once`."""

    def __post_init__(self) -> None:
        names = [name for name, _ in self.filter_factories]
        self.forwarding = names == ["router"]
        first = self.filter_factories[0][1] if len(names) == 2 and names[1] == "router" else None
        plain = not (self.config.generate_request_id or self.config.generate_traceparent)
        self.answering = first if plain and isinstance(first, AnswersAtOnce) else None


class HttpConnectionManager(H1BytesPaths, NetworkFilter):
    __slots__ = (
        "_drain_seen",
        "_drain_timer",
        "_draining",
        "_flush_handle",
        "_h1",
        "_h2",
        "_h2_held",
        "_head_timer",
        "_loop",
        "_next_pending",
        "_out",
        "_paused_by_streams",
        "_sniffed",
        "callbacks",
        "client_ip",
        "shared",
        "streams",
    )  # fmt: skip

    def __init__(self, shared: HcmShared, callbacks: ConnectionCallbacks) -> None:
        super().__init__()
        self.shared = shared
        self.callbacks = callbacks
        self.client_ip = callbacks.info.downstream_remote.rsplit(":", 1)[0].strip("[]").encode()
        self.streams: dict[int, Stream] = {}
        self._h1: H1ServerCodec | None = None
        self._h2: H2Codec | None = None
        self._sniffed = b""
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._draining = False
        self._drain_seen = 0
        """Bytes received when the drain timer was set (HTTP/1: closing waits for quiet)."""
        self._drain_timer: asyncio.TimerHandle | None = None
        self._paused_by_streams = 0
        self._h2_held: set[int] = set()
        """HTTP/2 streams whose response waits for the client's window past H2_STREAM_BUFFER:
        their upstream is not read until the client has taken half of it."""
        self._next_pending: bool | None = None
        """While _next_h1_exchange runs: whether an exchange ended meanwhile (None: idle)."""
        self._head_timer: Deadline | None = None
        """Armed while a request head is partly received (request_headers_timeout)."""
        self._loop = asyncio.get_running_loop()
        """Cached: get_running_loop() costs a getpid() system call each time."""

    # -- network filter ------------------------------------------------------------------------

    def on_new_connection(self) -> FilterStatus:
        self.callbacks.set_idle_timeout(self.shared.config.idle_timeout)
        return STOP

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if self._h1 is None and self._h2 is None:
            data = self._choose_codec(data, end_stream)
            if not data and not end_stream:
                self._watch_head()  # part of what may be the HTTP/2 preface
                return STOP
        try:
            if data:
                if self._h1 is not None:
                    self._h1_data(data)
                else:
                    self._h2_data(data)
            if end_stream:
                self._peer_eof()
        except HttpError as error:
            self._protocol_error(error)
        return STOP

    def _peer_eof(self) -> None:
        try:
            self._dispatch(self._feed(b""))
        except HttpError:
            if self._h1 is None or not self.streams:
                raise
            # An HTTP/1 request cut short by its client's FIN: the client went away (DC
            # below), it did not send a malformed request.
        self._on_peer_eof()

    def _choose_codec(self, data: bytes, end_stream: bool) -> bytes:
        codec = self.shared.config.codec
        if codec == "auto":
            data = self._sniffed + data
            if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data) and not end_stream:
                self._sniffed = data  # could still be the HTTP/2 preface: wait for more
                return b""
            self._sniffed = b""
            codec = "http2" if data.startswith(H2_PREFACE) else "http1"
        if codec == "http2":
            self._h2 = H2Codec(client_side=False, settings=self.shared.h2_settings)
            self._h2.initiate()
            self._schedule_flush()
            if self._draining:
                self._first_goaway()  # replaces the idle timer
        else:
            self._h1 = H1ServerCodec(self.shared.h1_limits)
            self._closing = self._draining  # the request arriving gets Connection: close
        return data

    def _h2_data(self, data: bytes) -> None:
        h2 = self._h2
        assert h2 is not None
        self._dispatch(h2.feed(data))
        if h2.receiving_head:
            if self._head_timer is None:
                self._watch_head()
        elif self._head_timer is not None:
            self._head_received()

    def _feed(self, data: bytes) -> list[Event]:
        if self._h1 is not None:
            return self._h1.feed(data)
        assert self._h2 is not None
        return self._h2.feed(data)

    def on_above_write_buffer_high_watermark(self) -> None:
        for stream in list(self.streams.values()):
            stream.on_above_write_buffer_high_watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        for stream in list(self.streams.values()):
            stream.on_below_write_buffer_low_watermark()

    def on_close(self) -> None:
        """The client connection is gone: every open stream is reset from downstream."""
        self._closing = True
        self._cancel_drain_timer()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self._head_timer is not None:
            self._head_received()
        for stream in list(self.streams.values()):
            stream.finish(downstream_reset=True)

    def on_drain(self) -> None:
        """Wind down: HTTP/2 sends GOAWAY, HTTP/1 answers with Connection: close; both close
        once their streams end. An HTTP/1 connection with no request closes after a grace."""
        self._draining = True
        if self._h2 is not None:
            self._first_goaway()
            return
        if self._h1 is not None:
            self._closing = True  # before a codec, _choose_codec sets it for HTTP/1 only
        self._drain_seen = self.callbacks.info.bytes_received
        self._set_drain_timer(IDLE_DRAIN_GRACE, self._close_if_idle)

    def close_if_idle(self) -> bool:
        """Between requests with nothing received since: close (HTTP/2 with GOAWAY naming
        the last stream served, so a request crossing it is retried elsewhere)."""
        if self.streams or self._closing or self._sniffed or self._held:
            return False
        if self._h1 is not None and not self._h1.idle:
            return False
        if self._h2 is not None:
            self._h2.goaway(0)
        self._close()
        return True

    def _close_if_idle(self) -> None:
        """Closed only after a grace in which the client sent nothing: one still using the
        connection gets its next answer with Connection: close instead (closing under a
        request already on its way would reset it)."""
        self._drain_timer = None
        received = self.callbacks.info.bytes_received
        if received != self._drain_seen:
            self._drain_seen = received
            self._set_drain_timer(IDLE_DRAIN_GRACE, self._close_if_idle)
            return
        pending = self._sniffed or (self._h1 is not None and self._h1.buffered)
        if self._h2 is None and not self.streams and not pending:
            self._close()

    def _first_goaway(self) -> None:
        assert self._h2 is not None
        self._h2.goaway(0, MAX_STREAM_ID)
        self._schedule_flush()
        self._set_drain_timer(FINAL_GOAWAY_DELAY, self._final_goaway)

    def _final_goaway(self) -> None:
        """Name the last stream served; later ones are refused, and the end of the last
        open stream closes the connection."""
        self._drain_timer = None
        assert self._h2 is not None
        self._h2.goaway(0)
        self._closing = True
        if self.streams:
            self._schedule_flush()
        else:
            self._close()

    def _set_drain_timer(self, delay: float, then: Callable[[], None]) -> None:
        self._cancel_drain_timer()
        self._drain_timer = self._loop.call_later(delay, then)

    def _cancel_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    # -- request-header timeout ----------------------------------------------------------------

    def _watch_head(self) -> None:
        """A request head has begun and not ended: it has request_headers_timeout to end."""
        timeout = self.shared.config.request_headers_timeout
        if self._head_timer is None and timeout and not self._closing and self._head_pending():
            self._head_timer = self.shared.timers.call_later(timeout, self._head_late)

    def _head_pending(self) -> bool:
        if self._h2 is not None:
            return self._h2.receiving_head
        return bool(self._sniffed) or (self._h1 is not None and self._h1.buffered > 0)

    def _head_received(self) -> None:
        assert self._head_timer is not None
        self._head_timer.cancel()
        self._head_timer = None

    def _head_late(self) -> None:
        """The head did not end in time (a slowloris, or a client that stalled): 408 and
        close, as nginx (client_header_timeout) and Envoy (request_headers_timeout) do."""
        self._head_timer = None
        if (self.streams and self._h2 is None) or self._closing or not self._head_pending():
            return
        self.shared.stats.request_headers_timeouts += 1
        log.debug("%s: %s did not send its request head in time", self.shared.listener,
                  self.callbacks.info.downstream_remote)  # fmt: skip
        if self._h2 is not None:  # a header block stalled: the connection is stuck behind it
            self._h2.goaway(ErrorCode.ENHANCE_YOUR_CALM)  # (as for a flood: a slowloris)
            self._close()
            return
        if self._h1 is None:  # not even the first line: no HTTP to answer in yet
            self._close()
            return
        self._answer_and_close(408, "request headers timeout", None)

    # -- events from the client ----------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestHeaders):
                self._new_stream(event)
                continue
            if isinstance(event, ConnectionTerminated):
                self._closing = True
                if not self.streams:
                    self._close()
                continue
            stream = self.streams.get(event.stream_id)
            if isinstance(event, Data):
                if self._h2 is not None:
                    self._credit(stream, event.stream_id, len(event.data))
                if stream is not None:
                    stream.request_complete = event.end_stream
                    stream.decode_data(event.data, event.end_stream)
            elif isinstance(event, Trailers):
                if stream is not None:
                    stream.request_complete = True
                    stream.decode_trailers(event.headers)
            elif isinstance(event, StreamReset) and stream is not None:
                stream.finish(downstream_reset=True)
        if self._h2_held:
            self._release_h2_held()

    def _release_h2_held(self) -> None:
        """Resume the upstreams of streams whose client took half of what waited for it."""
        assert self._h2 is not None
        for sid in list(self._h2_held):
            if self._h2.pending(sid) <= H2_STREAM_BUFFER // 2:
                self._h2_held.discard(sid)
                stream = self.streams.get(sid)
                if stream is not None:
                    stream.on_below_write_buffer_low_watermark()

    def _new_stream(self, request: RequestHeaders) -> None:
        """Prepare the head (as Envoy does before routing), route it, and run it on the
        forwarding path when nothing else is asked of it, else through the filters."""
        shared = self.shared
        shared.stats.downstream_rq += 1
        if shared.overload.refuse_requests:
            self._refuse(request)
            return
        info = self._stream_info(request)
        prepare_request(request, info, shared.config, self.client_ip,
                        self.callbacks.info.downstream_tls)  # fmt: skip
        vhost, route = shared.config.route_table.find(request)
        stream: Stream
        if (
            shared.forwarding
            and route is not None
            and route.forwards_only
            and request.upgrade is None
            and request.method != b"CONNECT"
            and not info.grpc
        ):
            assert vhost is not None and route.action is not None
            cluster = shared.clusters.clusters[route.action.pick_cluster()]
            stream = ForwardedExchange(self, request, info, vhost, route, cluster)
        else:
            stream = ActiveStream(self, request, info, vhost, route)
        self.streams[request.stream_id] = stream
        if request.expect_continue and self._h1 is not None:
            self._write(self._h1.encode_response(ResponseHeaders(100, Headers())))
        stream.start()

    def _refuse(self, request: RequestHeaders) -> None:
        """Overloaded: the new request is refused before any work is done for it (Envoy's
        stop_accepting_requests). HTTP/2 resets the stream with REFUSED_STREAM, which a
        client may retry; HTTP/1.1 answers 503 and closes, shedding the connection too."""
        self.shared.stats.overload_refused += 1
        if self._h2 is not None:
            self._h2.reset(request.stream_id, REFUSED_STREAM)
            self._schedule_flush()
            return
        stream = ActiveStream(self, request, self._stream_info(request), None, None)
        self.streams[request.stream_id] = stream
        self._closing = True
        stream.send_local_reply(503, b"overloaded\n", ResponseFlag.OVERLOAD_MANAGER,
                                Headers([(b"connection", b"close")]), "overloaded")  # fmt: skip

    def _stream_info(self, request: RequestHeaders) -> HttpStreamInfo:
        return HttpStreamInfo(
            self.shared.listener, self.callbacks.info.downstream_remote, request.version,
            request.method, request.path, request.authority,
        )  # fmt: skip

    def _on_peer_eof(self) -> None:
        """The client sent FIN: nothing more can arrive. HTTP/2: streams that were answered,
        or whose request is complete, finish; then the connection closes. HTTP/1: an exchange
        in flight that is not a tunnel (where EOF only ends the data) lost its client: its
        upstream request is cancelled (flag DC), as Envoy and nginx do, and the connection
        closes."""
        if self._h2 is not None:
            self._closing = True
            for stream in [s for s in self.streams.values() if not s.request_complete]:
                stream.finish(downstream_reset=True)  # its request can never end
        elif self._h1 is not None:
            self._closing = True  # (a cancelled exchange leaves nothing to go on with)
            for stream in [s for s in self.streams.values() if not s.tunnel]:
                stream.finish(downstream_reset=True)
        if not self.streams and (self._h2 is not None or self._h1 is not None):
            self._close()

    def _protocol_error(self, error: HttpError) -> None:
        self.shared.stats.protocol_errors += 1
        log.debug("%s: bad HTTP from %s: %s", self.shared.listener,
                  self.callbacks.info.downstream_remote, error.reason)  # fmt: skip
        if self._h2 is not None:
            if self._h2.flood is not None:
                self.shared.stats.h2_floods += 1
            self._flush()  # the codec queued a GOAWAY
            self._close()
            return
        self._answer_and_close(error.status, error.reason, ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR)

    def _answer_and_close(self, status: int, reason: str, flag: ResponseFlag | None) -> None:
        """HTTP/1: answer the exchange in progress (or one made up for the purpose) with
        `status` and close; only close when its response has begun."""
        stream = self.streams.get(1)
        if stream is not None and stream.response_started:
            self._close()
            return
        if stream is None:
            request = RequestHeaders(b"-", b"-", b"", Headers())
            stream = ActiveStream(self, request, self._stream_info(request), None, None)
            self.streams[1] = stream
        self._closing = True
        if flag is not None:
            stream.info.fail(flag, reason)
        else:
            stream.info.failure_reason = reason
        body = f"{reason}\n".encode()
        if isinstance(stream, ForwardedExchange):
            self.local_reply(stream, status, body)  # (_closing adds Connection: close)
            return
        stream.send_local_reply(status, body, flag, Headers([(b"connection", b"close")]),
                                reason)  # fmt: skip

    # -- output from streams -------------------------------------------------------------------

    def send_headers(self, stream: Stream, head: ResponseHeaders, end_stream: bool) -> None:
        head.stream_id = stream.stream_id
        head.end_stream = end_stream
        if self._h1 is not None:
            # keep_alive on an upstream's answer describes the upstream hop, not this one.
            head.keep_alive = not self._closing
            self._write(self._h1.encode_response(head))
        else:
            assert self._h2 is not None
            self._h2.send_headers(head, end_stream)
            if end_stream and head.status >= 200:
                self._h2_response_ended(stream)
            self._schedule_flush()
        if end_stream and head.status >= 200:
            stream.finish()

    def send_data(self, stream: Stream, data: bytes, end_stream: bool) -> None:
        if self._h1 is not None:
            data = self._h1.encode_data(data, end_stream)
            if not end_stream:
                self._write(data)
            else:  # a whole response is ready: no reason to wait for the loop
                if data:
                    self._out.append(data)
                self._flush()
        else:
            assert self._h2 is not None
            sid = stream.stream_id
            self._h2.send_data(sid, data, end_stream)
            if end_stream:
                self._h2_response_ended(stream)
            elif self._h2.pending(sid) > H2_STREAM_BUFFER and sid not in self._h2_held:
                self._h2_held.add(sid)  # the client does not read: stop reading upstream
                stream.on_above_write_buffer_high_watermark()
            self._schedule_flush()
        if end_stream:
            stream.finish()

    def send_trailers(self, stream: Stream, trailers: Headers) -> None:
        if self._h1 is not None:
            self._write(self._h1.encode_trailers(trailers))
        else:
            assert self._h2 is not None
            self._h2.send_trailers(stream.stream_id, trailers)
            self._h2_response_ended(stream)
            self._schedule_flush()
        stream.finish()

    def local_reply(self, stream: Stream, status: int, body: bytes) -> None:
        """A plain-text answer made here (the forwarding path's 502 / 503 / 504)."""
        if stream.response_started:
            self.reset_stream(stream)
            return
        length = b"%d" % len(body)
        headers = Headers([(b"content-type", b"text/plain"), (b"content-length", length)])
        head = ResponseHeaders(status, headers, content_length=len(body))
        stream.info.status = status
        stream.info.body_bytes_sent += len(body)
        self.send_headers(stream, head, False)
        self.send_data(stream, body, True)

    def _h2_response_ended(self, stream: Stream) -> None:
        """Answered before the request ended (an early error, a deadline): the client is
        told to stop sending the rest (RST_STREAM NO_ERROR), as grpc-go and nghttp2 do."""
        if not stream.request_complete:
            assert self._h2 is not None
            self._h2.stop_receiving(stream.stream_id)

    def reset_stream(self, stream: Stream) -> None:
        """Abort one stream: RST_STREAM on HTTP/2; on HTTP/1 only closing the connection can."""
        if self._h2 is not None:
            self._h2.reset(stream.stream_id)
            self._schedule_flush()
            stream.finish(downstream_reset=False)
        else:
            self._closing = True  # no next exchange after a response cut short
            stream.finish(downstream_reset=False)
            self._flush()
            self.callbacks.close(abort=True)

    def stream_read_disable(self, stream: Stream, disable: bool) -> None:
        """Request-body backpressure: pause the socket (HTTP/1) or the stream's window (HTTP/2)."""
        if self._h1 is not None:
            self.callbacks.read_disable(disable)
            return
        if disable:
            stream.h2_paused += 1
        elif stream.h2_paused:
            stream.h2_paused -= 1
            self._credit(stream, stream.stream_id, 0)

    def _credit(self, stream: Stream | None, stream_id: int, size: int) -> None:
        """HTTP/2: give the client its window back, unless this stream's consumer is paused."""
        assert self._h2 is not None
        if stream is None:
            self._h2.acknowledge(stream_id, size)
        else:
            stream.h2_unacked += size
            if stream.h2_paused or not stream.h2_unacked:
                return
            self._h2.acknowledge(stream_id, stream.h2_unacked)
            stream.h2_unacked = 0
        self._schedule_flush()

    def stream_finished(self, stream: Stream) -> None:
        info = stream.info
        self.streams.pop(stream.stream_id, None)
        self._h2_held.discard(stream.stream_id)
        shared = self.shared
        shared.stats.record(info)
        if shared.access_log is not None:
            shared.access_log(format_access_log(info))
        if self._h1 is not None:
            if not stream.request_complete:
                self._closing = True  # answered before the request ended: cannot resync
            if stream is self._forwarded:
                self._forwarded = None
                if self._h1.idle and not (self._closing or self._held or self._held_paused):
                    return  # _forwarded_finished() with nothing to do, inlined
                self._forwarded_finished()
            else:
                self._next_h1_exchange()
        elif self._closing and not self.streams:
            self._close()

    def _next_h1_exchange(self) -> None:
        """Start the next pipelined request. One answered at once (a local reply) ends
        inside this call: the loop takes its successor, instead of a recursion as deep as
        the pipeline."""
        if self._next_pending is not None:
            self._next_pending = True  # (the loop below, further up the stack, goes on)
            return
        h1 = self._h1
        assert h1 is not None
        self._next_pending = True
        try:
            while self._next_pending:
                self._next_pending = False
                if self._closing or not h1.keep_alive:
                    self._close()
                    return
                try:
                    events = h1.next_message()
                    if events:
                        self._dispatch(events)
                except HttpError as error:
                    self._protocol_error(error)
                    return
                if not self.streams and h1.closed:
                    self._close()
                    return
            if not self.streams and self._head_timer is None and h1.buffered:
                self._watch_head()  # a pipelined head, in part
        finally:
            self._next_pending = None

    # -- writing -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        handle = self._flush_handle
        if handle is not None:  # flushing early (a whole HTTP/1 response is ready)
            handle.cancel()
            self._flush_handle = None
        if self._h2 is not None:
            data = self._h2.data_to_send()
            if data:
                self._out.append(data)
        if self._out:
            out, self._out = self._out, []
            self.callbacks.write(out[0] if len(out) == 1 else b"".join(out))

    def _close(self) -> None:
        self._closing = True
        self._flush()
        self.callbacks.close()
