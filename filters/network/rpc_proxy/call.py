"""One caller's request on its way: tries endpoints, times out, answers with the caller's id."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from filters.network.rpc_proxy.config import RpcRoute
from protocols.rpc.api import Frame
from proxy.timers import Deadline
from proxy.upstream.cluster import UpstreamError
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.rpc_pool import RpcConnection

if TYPE_CHECKING:
    from filters.network.rpc_proxy.session import RpcSession


class ProxiedCall:
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
        self.attempts += 1
        try:
            endpoint, connection = self.session.upstreams.pick(self.route, self.tried)
        except UpstreamError as error:
            self._answer_error(error.reason, timed_out=False)
            return
        self.tried.append(endpoint)
        self.connection = connection
        self.upstream_id = connection.send_request(self.frame, self)
        if self.upstream_id is not None and self.route.timeout is not None:
            self._deadline = self.session.shared.timers.call_later(
                self.route.timeout, self._timed_out
            )

    # -- Call (the pool's view) -------------------------------------------------------------

    @property
    def caller(self) -> RpcSession:
        return self.session

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
        self._answer_error(reason + self._why_not_retried(), timed_out=False)

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
        if self.route.idempotent and self.attempts <= self.route.retries and self.session.may_retry:
            self.attempt()
            return True
        return False

    def _why_not_retried(self) -> str:
        session = self.session
        if session.cut_off:
            return f"; not retried: {session.cut_off}"
        if session.shared.config.per_client:
            return ""  # the caller's own connection is gone: so is the caller, next
        if not self.route.idempotent:
            return f"; not retried: route {self.route.name!r} is not idempotent"
        return f"; after {self.attempts} attempts"

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
        session.call_ended(self)
        session.reply(answer)
        if session.closed_for_input and not session.calls:
            session.close_when_answered()

    def abandon(self) -> None:
        """The caller left: forget the upstream side."""
        self._stop_timer()
        if self.connection is not None and self.upstream_id is not None:
            self.connection.forget(self.upstream_id)
        self.session.call_ended(self)
