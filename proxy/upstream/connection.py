"""Upstream connections. Only this package touches upstream sockets.

`ClusterConnection` is the bookkeeping every upstream connection shares (endpoint,
byte counters, cluster accounting, nesting read pauses). `UpstreamConnection` is the
L4 kind: it reports bytes and flow-control events to a handler (a terminal filter),
which never sees the transport. The HTTP pools subclass `ClusterConnection` too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster
    from proxy.upstream.endpoint import Endpoint


class ClusterConnection(asyncio.Protocol):
    __slots__ = (
        "_buffer_limit",
        "_read_disabled",
        "bytes_received",
        "bytes_sent",
        "closed",
        "cluster",
        "endpoint",
        "transport",
    )

    def __init__(self, cluster: Cluster, endpoint: Endpoint, buffer_limit: int) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.bytes_received = 0
        self.bytes_sent = 0
        self.closed = False
        self._read_disabled = 0
        self._buffer_limit = buffer_limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self._buffer_limit)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.cluster.connection_closed(self)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.bytes_sent += len(data)
            self.transport.write(data)

    def close(self, abort: bool = False) -> None:
        if self.transport is not None and not self.closed:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def read_disable(self, disable: bool) -> None:
        """Nesting pause/resume: reading resumes when every disabler has re-enabled it."""
        if self.transport is None or self.closed:
            return
        if disable:
            self._read_disabled += 1
            if self._read_disabled == 1:
                self.transport.pause_reading()
        elif self._read_disabled > 0:
            self._read_disabled -= 1
            if self._read_disabled == 0:
                self.transport.resume_reading()


class PipelinedConnection(ClusterConnection):
    """An upstream connection many callers share (Redis, RPC): what they queue in one loop
    turn leaves in one write, once the connection is `ready`.

    A subclass answers `outstanding` (requests awaiting an answer), fails with `fail`
    (answering every one of them with an error), and calls `close_if_idle` whenever answers
    leave, so a connection its pool closed (`close_when_idle`) goes once the last one does.
    """

    __slots__ = ("_flush_scheduled", "_loop", "_out", "closing", "failed", "failure", "ready")

    def __init__(self, cluster: Cluster, endpoint: Endpoint, buffer_limit: int) -> None:
        super().__init__(cluster, endpoint, buffer_limit)
        self.ready = False
        self.closing = False
        self.failed = False
        self.failure = "unavailable"
        """Why the connection failed: what the callers it refuses are told."""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    def outstanding(self) -> int:
        raise NotImplementedError

    def fail(self, reason: str) -> None:
        raise NotImplementedError

    def give_up(self, reason: str) -> None:
        """Never connect: every caller is told `reason`."""
        self.failed = True
        self.failure = reason

    def close_when_idle(self) -> None:
        self.closing = True
        self.close_if_idle()

    def close_if_idle(self) -> None:
        if self.closing and not self.outstanding() and self.transport is not None:
            self.flush()  # what needs no answer (an RPC notification) still leaves
            self.close()

    def queue(self, data: bytes) -> None:
        self._out.append(data)
        if self.ready and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.ready:
            out, self._out = self._out, []
            self.write(out[0] if len(out) == 1 else b"".join(out))


class UpstreamHandler(Protocol):
    def on_upstream_data(self, data: bytes) -> None: ...

    def on_upstream_eof(self) -> None: ...

    def on_upstream_close(self, error: Exception | None) -> None: ...

    def on_upstream_above_write_buffer_high_watermark(self) -> None: ...

    def on_upstream_below_write_buffer_low_watermark(self) -> None: ...


class _Detached:
    """The handler of a connection that was lost: hears nothing more."""

    def on_upstream_data(self, data: bytes) -> None:
        pass

    def on_upstream_eof(self) -> None:
        pass

    def on_upstream_close(self, error: Exception | None) -> None:
        pass

    def on_upstream_above_write_buffer_high_watermark(self) -> None:
        pass

    def on_upstream_below_write_buffer_low_watermark(self) -> None:
        pass


DETACHED = _Detached()


class UpstreamConnection(ClusterConnection):
    """A byte pipe to an endpoint for L4 proxying."""

    __slots__ = ("_deliver", "_eof_received", "_eof_sent", "handler")

    def __init__(
        self, cluster: Cluster, endpoint: Endpoint, handler: UpstreamHandler, buffer_limit: int
    ) -> None:
        super().__init__(cluster, endpoint, buffer_limit)
        self.handler = handler
        self._deliver = handler.on_upstream_data
        self._eof_sent = False
        self._eof_received = False

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._deliver(data)

    def eof_received(self) -> bool:
        self._eof_received = True
        self.handler.on_upstream_eof()
        # Keep our sending side open (half-close) unless we already sent our EOF.
        return not self._eof_sent

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        handler = self.handler
        # The handler holds this connection: let go of it, so that both are freed by
        # reference counting rather than left to the cyclic GC with their buffers.
        self.handler = DETACHED
        self._deliver = DETACHED.on_upstream_data
        handler.on_upstream_close(exc)

    def pause_writing(self) -> None:
        self.handler.on_upstream_above_write_buffer_high_watermark()

    def resume_writing(self) -> None:
        self.handler.on_upstream_below_write_buffer_low_watermark()

    def write_eof(self) -> None:
        """Half-close: no more data upstream; the upstream may go on answering."""
        if self.closed or self.transport is None or self._eof_sent:
            return
        self._eof_sent = True
        if self._eof_received or not self.transport.can_write_eof():
            self.transport.close()
        else:
            self.transport.write_eof()
