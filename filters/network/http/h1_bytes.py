"""The HTTP/1.1 connection manager's paths that take requests as bytes: a request forwarded
to its upstream as received (filters/network/http/forward.py), an answer made from the head
alone (filters/http/api.py `AnswersAtOnce`), the pipelined bytes that wait for either, and the
route timeouts of forwarded exchanges. A mixin of HttpConnectionManager: these run once or
more per request, so they read the manager's state directly rather than through an object
of their own.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from filters.http.api import AnswersAtOnce
from filters.network.http.forward import ForwardedExchange
from filters.network.http.observe import format_access_log
from filters.network.http.prepare import prepare_forwarded
from filters.network.http.stream import PRECISE_BELOW
from protocols.http.h1 import status_line
from protocols.http.h1_forward import RequestHead, read_request
from protocols.http.h1_parse import HTTP11
from proxy.stream_info import HttpStreamInfo

if TYPE_CHECKING:
    from filters.network.api import ConnectionCallbacks
    from filters.network.http.manager import HcmShared, HttpConnectionManager, Stream
    from protocols.http.events import Event
    from protocols.http.h1 import H1ServerCodec
    from proxy.timers import Deadline


class H1BytesPaths:
    """These paths, the state they keep (`_forwarded` and what goes with it, the deadline
    timer) and that they share with the rest of the manager (`_closing`), and, for the type
    checker, what else of the manager they use."""

    __slots__ = ("_body_left", "_closing", "_deadline_at", "_deadline_timer", "_forwarded",
                 "_held", "_held_paused")  # fmt: skip

    def __init__(self) -> None:
        self._closing = False
        """No next exchange: close once the one in progress (if any) ends."""
        self._forwarded: ForwardedExchange | None = None
        """The HTTP/1 exchange forwarded as bytes: the socket's bytes are its body."""
        self._body_left = 0
        """Request body bytes the forwarded exchange is still owed."""
        self._held = b""
        """Bytes after a forwarded request (pipelined), read once its exchange ends."""
        self._held_paused = False
        self._deadline_timer: Deadline | asyncio.TimerHandle | None = None
        self._deadline_at = 0.0

    if TYPE_CHECKING:
        shared: HcmShared
        callbacks: ConnectionCallbacks
        streams: dict[int, Stream]
        _h1: H1ServerCodec | None
        _out: list[bytes]
        _flush_handle: asyncio.Handle | None
        _head_timer: Deadline | None
        _loop: asyncio.AbstractEventLoop
        client_ip: bytes

        def _dispatch(self, events: list[Event]) -> None: ...
        def _flush(self) -> None: ...
        def _close(self) -> None: ...
        def _watch_head(self) -> None: ...
        def _head_received(self) -> None: ...

    # -- HTTP/1 requests forwarded as bytes ----------------------------------------------------

    def _h1_data(self, data: bytes) -> None:
        h1 = self._h1
        assert h1 is not None
        forwarded = self._forwarded
        if forwarded is not None:
            self._forwarded_data(forwarded, data)
        elif self.shared.forwarding and not self.streams and h1.idle and not self._closing:
            if self._held:
                data, self._held = self._held + data, b""
            if not self._forward(data):
                self._dispatch(h1.feed(data))
        elif (
            self.shared.answering is not None and not self.streams and h1.idle and not self._closing
        ):
            data = self._answer_at_once(self.shared.answering, data)
            if data:
                self._dispatch(h1.feed(data))
        else:
            self._dispatch(h1.feed(data))
        # A request that arrives whole is in self.streams, or was answered at once and
        # left nothing buffered: no timer, and no call here but `buffered`.
        if not self.streams:
            if self._head_timer is None and h1.buffered:
                self._watch_head()
        elif self._head_timer is not None:
            self._head_received()

    def _forward(self, data: bytes) -> bool:
        """Start forwarding the request at the start of `data` as bytes; False when its head
        (or route) asks for more than forwarding (the codec and the stream filters take it)."""
        shared = self.shared
        if shared.overload.refuse_requests:
            return False  # (refused by _new_stream)
        limits = shared.h1_limits
        end = data.find(b"\r\n\r\n", 0, limits.max_head)
        head = None if end < 0 else read_request(data, end, limits)
        if head is None:
            return False
        found = shared.config.route_table.find_by_path(head.authority, head.target)
        if found is None:
            return False
        vhost, route = found
        if not (route.forwards_only and route.as_bytes and vhost.as_bytes):
            return False
        action = route.action
        assert action is not None
        cluster = shared.clusters.clusters[action.cluster or action.pick_cluster()]
        if cluster.config.protocol != "http1":
            return False  # (a request forwarded as bytes needs an HTTP/1.1 upstream)
        content_type = head.fields.get(b"content-type")
        if content_type is not None and content_type.startswith(b"application/grpc"):
            return False
        shared.stats.downstream_rq += 1
        info = HttpStreamInfo(shared.listener, self.callbacks.info.downstream_remote, HTTP11,
                              head.method, head.target, head.authority)  # fmt: skip
        upstream_head = prepare_forwarded(head, info, shared.config, self.client_ip,
                                          self.callbacks.info.downstream_tls)  # fmt: skip
        if not head.keep_alive:
            self._closing = True
        rest = data[end + 4 :]
        body = rest[: head.length]
        self._body_left = head.length - len(body)
        held = rest[len(body) :]
        manager: HttpConnectionManager = self  # type: ignore[assignment]  # (the only user)
        exchange = ForwardedExchange(manager, None, info, vhost, route, cluster,
                                     upstream_head + body, not self._body_left)  # fmt: skip
        info.body_bytes_received = len(body)
        self._forwarded = exchange
        self.streams[1] = exchange
        exchange.start()
        if held:
            self._hold(held)
        return True

    def _answer_at_once(self, answering: AnswersAtOnce, data: bytes) -> bytes:
        """Answer the body-less requests at the start of `data` that `answering` can answer
        from their heads alone (no stream, no codec), one after another; returns the rest
        (from the first request it cannot answer), for the codec."""
        shared = self.shared
        limits = shared.h1_limits
        while data and not shared.overload.refuse_requests:
            end = data.find(b"\r\n\r\n", 0, limits.max_head)
            head = None if end < 0 else read_request(data, end, limits)
            if head is None or head.length:
                break
            answer = answering.answer_at_once(head)
            if answer is None:
                break
            self._send_answer(head, *answer)
            if self._closing:  # it asked for Connection: close
                self._close()
                return b""
            data = data[end + 4 :]
        return data

    def _send_answer(self, head: RequestHead, status: int, block: bytes, body: bytes) -> None:
        shared = self.shared
        shared.stats.downstream_rq += 1
        info = HttpStreamInfo(shared.listener, self.callbacks.info.downstream_remote, HTTP11,
                              head.method, head.target, head.authority)  # fmt: skip
        info.user_agent = head.fields.get(b"user-agent")
        info.request_id = head.fields.get(b"x-request-id")
        info.status = status
        info.body_bytes_sent = len(body)
        if not head.keep_alive:
            self._closing = True
        end = b"connection: close\r\n\r\n" if self._closing else b"\r\n"
        self._out.append(status_line(status) + block + end + body)
        self._flush()
        info.end_monotonic = time.monotonic()
        shared.stats.record(info)
        if shared.access_log is not None:
            shared.access_log(format_access_log(info))

    def _forwarded_data(self, exchange: ForwardedExchange, data: bytes) -> None:
        left = self._body_left
        if not left:
            self._hold(data)
            return
        if len(data) > left:
            self._hold(data[left:])
            data = data[:left]
        self._body_left = left - len(data)
        exchange.request_complete = not self._body_left
        exchange.decode_data(data, exchange.request_complete)

    def _hold(self, data: bytes) -> None:
        """Pipelined bytes wait for the exchange in progress; past a head's worth, reading
        pauses until it ends."""
        self._held += data
        if not self._held_paused and len(self._held) > self.shared.h1_limits.max_head:
            self._held_paused = True
            self.callbacks.read_disable(True)

    def forward_response(
        self, exchange: ForwardedExchange, head: bytes, body: bytes, end_stream: bool
    ) -> None:
        """A response head from upstream as bytes (hop-by-hop fields cut), then its body."""
        close = b"connection: close\r\n\r\n" if self._closing else b"\r\n"
        self.forward_body(exchange, head + close + body, end_stream)

    def forward_body(self, exchange: ForwardedExchange, data: bytes, end_stream: bool) -> None:
        if self._out or self._flush_handle is not None:
            self._out.append(data)  # (after what is queued: 100 Continue)
            self._flush()
        else:
            self.callbacks.write(data)
        if end_stream:
            exchange.finish()

    def forwarded_response_reframed(self, method: bytes) -> None:
        """The upstream's answer to a forwarded request needs the codec to frame it."""
        assert self._h1 is not None
        self._h1.forwarded(method)

    def _forwarded_finished(self) -> None:
        """After an exchange forwarded as bytes: the codec is idle again (unless it framed the
        response); go on with what the client sent meanwhile."""
        h1 = self._h1
        assert h1 is not None
        self._forwarded = None
        # The codec is untouched unless it framed the response or saw EOF; when closing it
        # may be mid-exchange (a response cut short), with no next message to go to.
        if not h1.idle and not self._closing:
            h1.next_message()
            if not h1.keep_alive or h1.closed:
                self._closing = True
        if self._closing:
            self._close()
            return
        held, self._held = self._held, b""
        if self._held_paused:
            self._held_paused = False
            self.callbacks.read_disable(False)
        if held:
            self._h1_data(held)

    # -- route timeouts of forwarded exchanges ---------------------------------------------------

    def watch_deadline(self, at: float) -> None:
        """A forwarded exchange's route timeout ends at `at` (monotonic). One timer per
        connection, for the earliest deadline: back-to-back requests on a kept-alive
        connection arm it once per timeout period, not once per request."""
        timer = self._deadline_timer
        if timer is not None:
            if self._deadline_at <= at:
                return
            timer.cancel()
        self._deadline_at = at
        delay = max(0.0, at - time.monotonic())
        if delay < PRECISE_BELOW:
            self._deadline_timer = self._loop.call_later(delay, self._deadlines_due)
        else:
            self._deadline_timer = self.shared.timers.call_later(delay, self._deadlines_due)

    def _deadlines_due(self) -> None:
        self._deadline_timer = None
        now = time.monotonic()
        upcoming = 0.0
        for stream in list(self.streams.values()):
            if isinstance(stream, ForwardedExchange) and stream.deadline and not stream.done:
                if stream.deadline <= now:
                    stream.deadline_passed()
                elif not upcoming or stream.deadline < upcoming:
                    upcoming = stream.deadline
        if upcoming:
            self.watch_deadline(upcoming)
