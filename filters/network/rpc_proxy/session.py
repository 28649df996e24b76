"""One caller connection of rpc_proxy: frames in, routed calls out, responses back by id."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from filters.network.api import STOP, ConnectionCallbacks, FilterStatus, NetworkFilter
from filters.network.rpc_proxy.config import RpcRoute
from protocols.rpc.api import Frame, FrameKind, RpcError
from proxy.timers import Deadline
from proxy.upstream.cluster import UpstreamError
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.rpc_pool import RpcConnection

if TYPE_CHECKING:
    from filters.network.rpc_proxy.filter import RpcShared

log = logging.getLogger("mecha.rpc_proxy")


class RpcSession(NetworkFilter):
    __slots__ = (
        "_decoder",
        "_flush_scheduled",
        "_handling",
        "_out",
        "callbacks",
        "calls",
        "closed",
        "closed_for_input",
        "shared",
    )  # fmt: skip

    def __init__(self, shared: RpcShared, callbacks: ConnectionCallbacks) -> None:
        self.shared = shared
        self.callbacks = callbacks
        self._decoder = shared.codec.decoder(shared.config.max_message_size)
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._handling = False
        self.calls: set[ProxiedCall] = set()
        self.closed = False
        self.closed_for_input = False
        """The caller sent EOF or garbage: close once every call has been answered."""

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if data:
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
                    log.debug("%s: dropped a response sent by a caller", self.shared.listener)
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
            endpoint = self.shared.cluster(route).choose()
        except UpstreamError:
            return
        if self.shared.pool(route, endpoint).connection().send_oneway(frame):
            self.shared.stats.notifications += 1

    # -- answers --------------------------------------------------------------------------------

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

    def on_close(self) -> None:
        self.closed = True
        for call in list(self.calls):
            call.abandon()


class ProxiedCall:
    """One caller's request: tries endpoints, times out, answers with the caller's id."""

    __slots__ = ("_deadline", "attempts", "connection", "frame", "route", "session", "started",
                 "tried", "upstream_id")  # fmt: skip

    def __init__(self, session: RpcSession, frame: Frame, route: RpcRoute) -> None:
        self.session = session
        self.frame = frame
        self.route = route
        self.started = time.monotonic()
        self.attempts = 0
        self.tried: list[Endpoint] = []
        self.connection: RpcConnection | None = None
        self.upstream_id: int | None = None
        self._deadline: Deadline | None = None

    def attempt(self) -> None:
        shared = self.session.shared
        self.attempts += 1
        try:
            endpoint = shared.cluster(self.route).choose(self.tried)
        except UpstreamError as error:
            self._answer_error(error.reason, timed_out=False)
            return
        self.tried.append(endpoint)
        connection = shared.pool(self.route, endpoint).connection()
        self.connection = connection
        self.upstream_id = connection.send_request(self.frame, self)
        if self.upstream_id is not None and self.route.timeout is not None:
            self._deadline = shared.timers.call_later(self.route.timeout, self._timed_out)

    # -- Call (the pool's view) -------------------------------------------------------------

    def on_response(self, frame: Frame, connection: RpcConnection) -> None:
        self._stop_timer()
        shared = self.session.shared
        codec = shared.codec
        request_id = self.frame.request_id or 0
        failed = codec.response_failed(frame)
        shared.record(self, failed, timed_out=False)
        self._finish(codec.with_request_id(frame, request_id))

    def on_failure(self, reason: str) -> None:
        self._stop_timer()
        self.connection = None
        if self._retry():
            return
        self._answer_error(reason, timed_out=False)

    # -- endings ---------------------------------------------------------------------------------

    def _timed_out(self) -> None:
        self._deadline = None
        if self.connection is not None and self.upstream_id is not None:
            self.connection.forget(self.upstream_id)
        self.connection = None
        if self._retry():
            return
        host = str(self.tried[-1].address) if self.tried else "-"
        reason = f"timeout after {self.route.timeout}s calling {self.frame.method} on {host}"
        self._answer_error(reason, timed_out=True)

    def _retry(self) -> bool:
        if (
            self.route.idempotent
            and self.attempts <= self.route.retries
            and not self.session.closed
        ):
            self.attempt()
            return True
        return False

    def _answer_error(self, reason: str, timed_out: bool) -> None:
        shared = self.session.shared
        shared.record(self, True, timed_out=timed_out)
        message = f"mecha: {reason}"
        self._finish(shared.codec.error_response(self.frame.request_id or 0, message))

    def _stop_timer(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _finish(self, answer: bytes) -> None:
        """Answer the caller; the last answer a closing caller waited for closes it."""
        session = self.session
        session.calls.discard(self)
        session.reply(answer)
        if session.closed_for_input and not session.calls:
            session.close_when_answered()

    def abandon(self) -> None:
        """The caller left: forget the upstream side."""
        self._stop_timer()
        if self.connection is not None and self.upstream_id is not None:
            self.connection.forget(self.upstream_id)
        self.session.calls.discard(self)
