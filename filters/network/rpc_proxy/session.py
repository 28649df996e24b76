"""One caller connection of rpc_proxy: frames in, routed calls out, responses back by id.

With `upstream_connections: per_client` the session is also the owner of its upstream
connections (proxy/upstream/rpc_pool.py): a request the server sends is given an id of the
session's own towards the caller, and the caller's response goes back under the server's id.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from filters.network.api import (
    CONTINUE,
    STOP,
    ConnectionCallbacks,
    FilterStatus,
    NetworkFilter,
)
from filters.network.rpc_proxy.call import ProxiedCall
from filters.network.rpc_proxy.upstreams import PROBATION, CallerUpstreams, Verdict
from protocols.rpc.api import Frame, FrameKind, RpcError
from proxy.upstream.cluster import UpstreamError
from proxy.upstream.rpc_pool import RpcConnection

if TYPE_CHECKING:
    from filters.network.rpc_proxy.filter import RpcShared

log = logging.getLogger("mecha.rpc_proxy")

MAX_SERVER_CALLS = 4096
"""Requests from the server a caller may have unanswered; beyond, the proxy answers them."""
MAX_CALLS = 10_000
"""A caller's calls in flight; past it, that caller is not read until half are answered."""


class RpcSession(NetworkFilter):
    __slots__ = (
        "_decoder",
        "_flush_scheduled",
        "_handling",
        "_next_server_id",
        "_out",
        "_paused",
        "_server_calls",
        "callbacks",
        "calls",
        "closed",
        "closed_for_input",
        "cut_off",
        "shared",
        "upstreams",
    )  # fmt: skip

    def __init__(self, shared: RpcShared, callbacks: ConnectionCallbacks) -> None:
        self.shared = shared
        self.callbacks = callbacks
        self._decoder = shared.codec.decoder(shared.config.max_message_size)
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._handling = False
        self._paused = False
        """Reading paused for MAX_CALLS (the write buffer's watermarks pause it apart)."""
        self.calls: set[ProxiedCall] = set()
        self.upstreams = CallerUpstreams(shared, self if shared.config.per_client else None)
        self._server_calls: dict[int, tuple[RpcConnection, int]] = {}
        """id towards the caller -> (connection, the server's id) of the server's requests"""
        self._next_server_id = 0
        self.closed = False
        self.closed_for_input = False
        """The caller sent EOF or garbage: close once every call has been answered."""
        self.cut_off = ""
        """Why the caller was cut off ('' while it was not)."""

    @property
    def may_retry(self) -> bool:
        return not self.closed and not self.cut_off and not self.shared.config.per_client

    def on_new_connection(self) -> FilterStatus:
        self.callbacks.set_idle_timeout(self.shared.config.idle_timeout)
        return CONTINUE

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if data and not self.closed_for_input:
            try:
                frames = self._decoder.feed(data)
            except RpcError as error:
                self._handle(error.frames)
                self.shared.stats.protocol_errors += 1
                log.warning("%s: malformed %s message from %s: %s; closing",
                            self.shared.listener, self.shared.codec.name,
                            self.callbacks.info.downstream_remote, error.reason)  # fmt: skip
                self.close_when_answered()
                return STOP
            self._handle(frames)
            if len(self.calls) >= MAX_CALLS and not self._paused:
                self._paused = True
                self.callbacks.read_disable(True)
            if self.shared.retired:  # a cluster went: the caller reconnects to the new one
                self.close_when_answered()
        if end_stream:
            self.close_when_answered()
        return STOP

    def _handle(self, frames: list[Frame]) -> None:
        self._handling = True  # answers made meanwhile leave together, after the batch
        try:
            for frame in frames:
                kind = frame.kind
                if kind is FrameKind.REQUEST:
                    self._call(frame)
                elif kind is FrameKind.ONEWAY:
                    self._notify(frame)
                else:
                    self._answer_server(frame)
        finally:
            self._handling = False

    def _call(self, frame: Frame) -> None:
        route = self.shared.route(frame.method)
        if route is None:
            self.shared.stats.no_route += 1
            self.shared.stats.series(frame.method).observe(0.0, True)
            self.reply(self.shared.codec.error_response(
                frame.request_id or 0, f"mecha: no route for method {frame.method!r}"))  # fmt: skip
            return
        call = ProxiedCall(self, frame, route)
        self.calls.add(call)
        call.attempt()

    def _notify(self, frame: Frame) -> None:
        route = self.shared.route(frame.method)
        if route is None:
            self.shared.stats.no_route += 1
            return
        try:
            _, connection = self.upstreams.pick(route, [])
        except UpstreamError:
            return
        if connection.send_oneway(frame, self):
            self.shared.stats.notifications += 1

    # -- the server's requests and notifications (per_client) ----------------------------------

    def on_server_request(self, frame: Frame, connection: RpcConnection) -> None:
        server_id = frame.request_id or 0
        if self.closed_for_input or len(self._server_calls) >= MAX_SERVER_CALLS:
            self.shared.stats.server_requests_refused += 1
            reason = "closing" if self.closed_for_input else "too many requests unanswered"
            connection.refuse(server_id, f"mecha: the client cannot take it: {reason}")
            return
        client_id = self._allocate_server_id()
        self._server_calls[client_id] = (connection, server_id)
        self.shared.stats.server_requests += 1
        self.reply(self.shared.codec.with_request_id(frame, client_id))

    def _allocate_server_id(self) -> int:
        limit = self.shared.codec.max_request_id
        client_id = self._next_server_id
        while client_id in self._server_calls:
            client_id = (client_id + 1) & limit
        self._next_server_id = (client_id + 1) & limit
        return client_id

    def _answer_server(self, frame: Frame) -> None:
        entry = self._server_calls.pop(frame.request_id or 0, None)
        if entry is None:
            log.debug("%s: dropped a response to no request", self.shared.listener)
            return
        connection, server_id = entry
        connection.send_response(frame, server_id)

    def on_server_notification(self, frame: Frame, connection: RpcConnection) -> None:
        self.shared.stats.server_notifications += 1
        self.reply(frame.raw)

    def on_upstream_lost(self, connection: RpcConnection, reason: str) -> None:
        """This caller's own upstream connection failed: so does the caller, as with TCP."""
        for client_id, (owner, _) in list(self._server_calls.items()):
            if owner is connection:
                del self._server_calls[client_id]
        if not self.closed and not self.closed_for_input:
            log.info("%s: closing %s: its upstream %s: %s", self.shared.listener,
                     self.callbacks.info.downstream_remote, connection.endpoint.address,
                     reason)  # fmt: skip
            self.close_when_answered()

    def on_upstream_write_paused(self, paused: bool) -> None:
        self.callbacks.read_disable(paused)

    def on_above_write_buffer_high_watermark(self) -> None:
        self.callbacks.read_disable(True)  # no new calls from a caller not taking its answers
        for connection in self.upstreams.connections():  # the server's notifications wait
            connection.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self.callbacks.read_disable(False)
        for connection in self.upstreams.connections():
            connection.read_disable(False)

    # -- blame ----------------------------------------------------------------------------------

    def suspected(self, connection: RpcConnection) -> None:
        if self.closed or self.cut_off:
            return
        verdict = self.upstreams.suspected(connection)
        remote = self.callbacks.info.downstream_remote
        if verdict is Verdict.PROBATION:
            log.info("%s: %s goes on a connection of its own for %.0fs: %s closed a shared "
                     "connection with its message unread", self.shared.listener, remote,
                     PROBATION, connection.endpoint.address)  # fmt: skip
        elif verdict is Verdict.CUT_OFF:
            self.cut_off = (f"the upstream closed connections twice with a message of this "
                            f"client unread (the last: {connection.endpoint.address})")  # fmt: skip
            self.shared.stats.cut_off += 1
            log.warning("%s: cutting off %s: %s", self.shared.listener, remote, self.cut_off)
            self.close_when_answered()

    # -- answers --------------------------------------------------------------------------------

    def call_ended(self, call: ProxiedCall) -> None:
        self.calls.discard(call)
        if self._paused and len(self.calls) <= MAX_CALLS // 2:
            self._paused = False
            self.callbacks.read_disable(False)

    def reply(self, data: bytes) -> None:
        if self.closed:
            return
        self._out.append(data)
        if not self.calls and not self._handling:
            self._flush()  # nothing else is due for this caller: write now
        elif not self._flush_scheduled:  # more answers due: gather them for one write
            self._flush_scheduled = True
            self.shared.loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and not self.closed:
            out, self._out = self._out, []
            self.callbacks.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closed_for_input and not self.calls:
            self.callbacks.close()

    def close_when_answered(self) -> None:
        self.closed_for_input = True
        if not self.calls and not self._flush_scheduled:
            self._flush()

    def close_if_idle(self) -> bool:
        """No call either way and no message partly received: close. A client with its own
        upstream connection (per_client) is a session the server keeps state for: never."""
        if (self.closed_for_input or self.calls or self._server_calls or self._out
                or self._decoder.buffered or self.shared.config.per_client):  # fmt: skip
            return False
        self.close_when_answered()
        return True

    def on_close(self) -> None:
        self.closed = True
        for call in list(self.calls):
            call.abandon()
        self._server_calls.clear()
        self.upstreams.close()
