"""Multiplexed RPC upstream connections: many callers share a few connections per endpoint.

Each request gets an id unique on its connection (the codec rewrites only the id's bytes)
and waits in `pending` under it; the response is matched by that id, whatever order
responses come in, and given back its caller's id. A connection that fails answers every
call waiting on it (the caller decides: retry or error).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocols.rpc.api import Frame, FrameKind, RpcCodec, RpcError
from proxy.upstream.connection import PipelinedConnection
from proxy.upstream.endpoint import Endpoint

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.rpc_pool")

BUFFER_LIMIT = 4 << 20


class Call(Protocol):
    """A request in flight, as the pool sees it."""

    def on_response(self, frame: Frame, connection: RpcConnection) -> None: ...

    def on_failure(self, reason: str) -> None:
        """The connection carrying the call failed (or never connected)."""


@dataclass(frozen=True, slots=True)
class RpcPoolSettings:
    codec: RpcCodec
    max_message_size: int = 4 << 20
    connections: int = 1
    max_in_flight: int = 65536


class RpcPool:
    def __init__(self, cluster: Cluster, endpoint: Endpoint, settings: RpcPoolSettings):
        self.cluster = cluster
        self.endpoint = endpoint
        self.settings = settings
        self.connections: list[RpcConnection] = []
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def connection(self) -> RpcConnection:
        connections = self.connections
        if len(connections) < self.settings.connections:
            connection = RpcConnection(self)
            connections.append(connection)
            task = asyncio.get_running_loop().create_task(
                self._connect(connection), name=f"rpc-connect:{self.endpoint.address}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return connection
        if len(connections) == 1:
            return connections[0]
        self._next = (self._next + 1) % len(connections)
        return connections[self._next]

    async def _connect(self, connection: RpcConnection) -> None:
        from proxy.upstream.cluster import UpstreamError

        try:
            await self.cluster.open_connection(self.endpoint, lambda: connection)
        except UpstreamError as error:
            connection.fail(error.reason)
        except Exception as exc:  # a bug must not strand the callers waiting here
            log.exception("rpc %s: connecting failed", self.endpoint.address)
            connection.fail(str(exc))

    def gone(self, connection: RpcConnection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for connection in list(self.connections):
            connection.close()


class RpcConnection(PipelinedConnection):
    __slots__ = ("_decoder", "_next_id", "codec", "failed", "pending", "pool", "stray_frames")

    def __init__(self, pool: RpcPool) -> None:
        super().__init__(pool.cluster, pool.endpoint, BUFFER_LIMIT)
        self.pool = pool
        self.codec = pool.settings.codec
        self._decoder = self.codec.decoder(pool.settings.max_message_size)
        self.pending: dict[int, Call] = {}
        self.failed = False
        self.stray_frames = 0
        self._next_id = 0

    # -- sending ------------------------------------------------------------------------------

    def send_request(self, frame: Frame, call: Call) -> int | None:
        """Send under a fresh id; None when the call was refused (failed or full)."""
        if self.failed:
            call.on_failure(f"upstream {self.endpoint.address} unavailable")
            return None
        if len(self.pending) >= self.pool.settings.max_in_flight:
            call.on_failure("too many calls in flight to the upstream")
            return None
        new_id = self._allocate()
        self.pending[new_id] = call
        self.queue(self.codec.with_request_id(frame, new_id))
        return new_id

    def send_oneway(self, frame: Frame) -> bool:
        if self.failed:
            return False
        self.queue(frame.raw)
        return True

    def forget(self, request_id: int) -> None:
        """The caller gave up (timeout): a late response will be dropped."""
        self.pending.pop(request_id, None)

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
            call = pending.pop(frame.request_id, None) if frame.request_id is not None else None
            if call is None or frame.kind is not FrameKind.RESPONSE:
                self.stray_frames += 1  # late (timed out), unknown, or server-initiated
                continue
            call.on_response(frame, self)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.fail(f"connection lost ({exc})" if exc else "connection closed")

    def fail(self, reason: str) -> None:
        if self.failed:
            return
        self.failed = True
        self.ready = False
        self.pool.gone(self)
        if self.pending:
            log.warning("rpc %s: %s (%d calls in flight)", self.endpoint.address, reason,
                        len(self.pending))  # fmt: skip
        pending, self.pending = self.pending, {}
        for call in pending.values():
            call.on_failure(f"upstream {self.endpoint.address}: {reason}")
        self._out.clear()
        self.close(abort=True)
