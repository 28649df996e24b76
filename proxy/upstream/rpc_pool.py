"""Multiplexed RPC upstream connections: many callers share a few connections per endpoint.

Each request gets an id unique on its connection (the codec rewrites only the id's bytes)
and waits in `pending` under it; the response is matched by that id, whatever order
responses come in, and given back its caller's id. A connection that fails answers every
call waiting on it (the caller decides: retry or error).

Blame: when the upstream closes a connection, the message that made it do so is one it had
not finished reading. A server reads its stream in order, so a response to the n-th message
sent proves that everything sent before it was read: the *suspects* are the callers of the
messages sent after the last message answered (requests still pending, notifications in a
short bounded log). They hear `suspected` before their calls fail, so a caller can be moved
aside before its retries go out (filters/network/rpc_proxy isolates and cuts off).

A pool may have an `owner` (a connection private to one caller, for peers that call back,
such as Neovim): requests and notifications the server sends go to it, and it answers the
server's requests through `send_response`. Without an owner a server's request is answered
with an error at once (there is no one caller to ask) and its notifications are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocols.rpc.api import Frame, FrameKind, RpcCodec, RpcError
from proxy.upstream.connection import PipelinedConnection
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.pool import SharedPool

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.rpc_pool")

BUFFER_LIMIT = 4 << 20
ONEWAY_LOG = 256
"""Notifications remembered per connection for blame (beyond: the oldest are forgotten)."""
SHARED_REFUSAL = (
    "mecha: the proxy's upstream connection is shared by many callers, so a request from the "
    "server has no one to go to (rpc_proxy upstream_connections: per_client delivers them)"
)


class Caller(Protocol):
    """Whoever sends messages on a connection: told when it may have caused a close."""

    def suspected(self, connection: RpcConnection) -> None:
        """The upstream closed `connection` while a message of this caller was unread."""


class Call(Protocol):
    """A request in flight, as the pool sees it."""

    @property
    def caller(self) -> Caller: ...

    def on_response(self, frame: Frame, connection: RpcConnection) -> None: ...

    def on_failure(self, reason: str) -> None:
        """The connection carrying the call failed (or never connected)."""


class Owner(Protocol):
    """The one caller a private connection serves."""

    def on_server_request(self, frame: Frame, connection: RpcConnection) -> None: ...

    def on_server_notification(self, frame: Frame, connection: RpcConnection) -> None: ...

    def on_upstream_lost(self, connection: RpcConnection, reason: str) -> None:
        """The connection failed; called before its calls hear `on_failure`."""

    def on_upstream_write_paused(self, paused: bool) -> None:
        """The connection's write buffer went above (True) or below (False) its limits."""


@dataclass(frozen=True, slots=True)
class RpcPoolSettings:
    codec: RpcCodec
    max_message_size: int = 4 << 20
    connections: int = 1
    max_in_flight: int = 65536


class RpcPool(SharedPool["RpcConnection"]):
    """Shared connections to one endpoint (leased from the cluster), or, with an `owner`, the
    one connection of one caller (made and closed by that caller)."""

    kind = "rpc"

    def __init__(self, cluster: Cluster, endpoint: Endpoint, settings: RpcPoolSettings,
                 owner: Owner | None = None) -> None:  # fmt: skip
        super().__init__(cluster, endpoint, settings.connections)
        self.settings = settings
        self.owner = owner

    def connection(self) -> RpcConnection:
        return self.pick()

    def new_connection(self) -> RpcConnection:
        return RpcConnection(self)


class RpcConnection(PipelinedConnection):
    __slots__ = ("_closing", "_decoder", "_next_id", "_oneway", "_read_mark", "_sent", "codec",
                 "pending", "pool", "stray_frames")  # fmt: skip

    def __init__(self, pool: RpcPool) -> None:
        super().__init__(pool.cluster, pool.endpoint, BUFFER_LIMIT)
        self.pool = pool
        self.codec = pool.settings.codec
        self._decoder = self.codec.decoder(pool.settings.max_message_size)
        self.pending: dict[int, tuple[Call, int]] = {}
        """upstream id -> (call, the number of the message that sent it)"""
        self.stray_frames = 0
        self._next_id = 0
        self._sent = 0
        """Messages sent (requests and notifications): each one's number, for blame."""
        self._read_mark = 0
        """The number of the last message known to be read: the latest answered request's."""
        self._oneway: deque[tuple[int, Caller]] = deque(maxlen=ONEWAY_LOG)
        self._closing = False

    # -- sending ------------------------------------------------------------------------------

    def send_request(self, frame: Frame, call: Call) -> int | None:
        """Send under a fresh id; None when the call was refused (failed or full)."""
        if self.failed:
            call.on_failure(f"upstream {self.endpoint.address}: {self.failure}")
            return None
        if len(self.pending) >= self.pool.settings.max_in_flight:
            call.on_failure("too many calls in flight to the upstream")
            return None
        new_id = self._allocate()
        self._sent += 1
        self.pending[new_id] = (call, self._sent)
        self.queue(self.codec.with_request_id(frame, new_id))
        return new_id

    def send_oneway(self, frame: Frame, caller: Caller) -> bool:
        if self.failed:
            return False
        self._sent += 1
        self._oneway.append((self._sent, caller))
        self.queue(frame.raw)
        return True

    def send_response(self, frame: Frame, request_id: int) -> None:
        """Answer the server's request `request_id` with a caller's RESPONSE frame."""
        if not self.failed:
            self.queue(self.codec.with_request_id(frame, request_id))

    def refuse(self, request_id: int, message: str) -> None:
        """Answer the server's request `request_id` with an error of the proxy's own."""
        if not self.failed:
            self.queue(self.codec.error_response(request_id, message))

    def forget(self, request_id: int) -> None:
        """The caller gave up (timeout): a late response will be dropped."""
        self.pending.pop(request_id, None)
        if self.closing:
            self.close_if_idle()

    def _allocate(self) -> int:
        limit = self.codec.max_request_id
        request_id = self._next_id
        while request_id in self.pending:
            request_id = (request_id + 1) & limit
        self._next_id = (request_id + 1) & limit
        return request_id

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ready = True
        self.flush()
        self.close_if_idle()

    def outstanding(self) -> int:
        return len(self.pending)

    def pause_writing(self) -> None:
        if self.pool.owner is not None:
            self.pool.owner.on_upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.pool.owner is not None:
            self.pool.owner.on_upstream_write_paused(False)

    # -- receiving --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            frames = self._decoder.feed(data)
        except RpcError as error:
            self._deliver(error.frames)
            self.fail(f"malformed message from upstream: {error.reason}")
            return
        self._deliver(frames)

    def _deliver(self, frames: list[Frame]) -> None:
        pending = self.pending
        for frame in frames:
            if frame.kind is not FrameKind.RESPONSE:
                self._from_server(frame)
                continue
            entry = pending.pop(frame.request_id or 0, None)  # a RESPONSE has an id
            if entry is None:
                self.stray_frames += 1  # late (timed out) or unknown
                continue
            call, number = entry
            if number > self._read_mark:
                self._read_mark = number
            call.on_response(frame, self)
        if self.closing:
            self.close_if_idle()

    def _from_server(self, frame: Frame) -> None:
        owner = self.pool.owner
        if owner is not None:
            if frame.kind is FrameKind.REQUEST:
                owner.on_server_request(frame, self)
            else:
                owner.on_server_notification(frame, self)
            return
        self.stray_frames += 1
        if frame.kind is FrameKind.REQUEST:
            self.refuse(frame.request_id or 0, SHARED_REFUSAL)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._closing:
            self.fail("connection closed by mecha")
            return
        self._blame()
        how = f"reset ({exc})" if exc else "closed by the server"
        self.fail(f"connection {how} with {len(self.pending)} calls in flight")

    def _blame(self) -> None:
        """Tell every caller with a message the upstream had not read when it closed."""
        mark = self._read_mark
        suspects = {id(call.caller): call.caller for call, n in self.pending.values() if n > mark}
        suspects.update((id(caller), caller) for n, caller in self._oneway if n > mark)
        for caller in suspects.values():
            caller.suspected(self)

    def close(self, abort: bool = False) -> None:
        self._closing = True
        if self.transport is None:  # not connected (yet): nothing will call connection_lost
            self.fail("connection closed by mecha")
        super().close(abort)

    def fail(self, reason: str) -> None:
        if self.failed:
            return
        self.failed = True
        self.failure = reason
        self.ready = False
        self.pool.connection_failed(self, reason)
        if self.pending and not (self._closing or self.closing):
            log.warning("rpc %s: %s", self.endpoint.address, reason)
        if self.pool.owner is not None:
            self.pool.owner.on_upstream_lost(self, reason)
        pending, self.pending = self.pending, {}
        for call, _ in pending.values():
            call.on_failure(f"upstream {self.endpoint.address}: {reason}")
        self._out.clear()
        self._oneway.clear()
        self.close(abort=True)
