"""A listening socket: binds, accepts within limits, and hands each connection a filter chain."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from filters.listener.api import ListenerFilterFactory
from proxy.acceptor import Acceptor
from proxy.config.model import ListenerConfig
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import ChainGeneration, FilterChain

log = logging.getLogger("mecha.listener")

RESCAN_AFTER = 0.1
"""Seconds a full listener with no idle connection refuses before it looks again."""


class BindError(Exception):
    """A listener could not take its address; the message is one line for the operator."""


def bind_socket(
    address: Address, owner: str, backlog: int = 128, reuse_port: bool = False
) -> socket.socket:
    """A listening, non-blocking socket, or BindError with a one-line reason."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = (
            "address already in use"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        raise BindError(f"cannot listen on {address} for {owner}: {reason.lower()}") from None
    return sock


@dataclass(slots=True)
class ListenerStats:
    cx_total: int = 0
    cx_overflow: int = 0
    filter_errors: int = 0
    no_filter_chain: int = 0
    listener_filter_timeouts: int = 0
    ssl_handshake_errors: int = 0
    filter_events: dict[str, int] = field(default_factory=dict)
    """Counted by listener filters (e.g. original_dst_missing), by event name."""
    bytes_received_closed: int = 0
    bytes_sent_closed: int = 0
    accept_exhausted: int = 0
    """accept() failures for want of descriptors or kernel memory (EMFILE, ENFILE, ...)."""
    idle_timeouts: int = 0
    """Connections closed by their idle timeout (no bytes either way for that long)."""
    idle_reclaimed: int = 0
    """Idle connections closed to make room for a new one at max_connections."""
    idle_shed: int = 0
    """Idle connections closed by the overload manager."""


class Listener:
    def __init__(
        self,
        config: ListenerConfig,
        chains: Sequence[FilterChain],
        listener_filters: Sequence[ListenerFilterFactory] = (),
        generation: ChainGeneration | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.chains = list(chains)
        self.generation = generation or ChainGeneration()
        """What `chains` were built with; a connection attaches to it when it picks one."""
        self.listener_filters = list(listener_filters)
        self.connections: dict[DownstreamConnection, None] = {}
        """Open connections, oldest first."""
        self._none_idle_until = 0.0
        """At max_connections and none was idle: until then, refuse without looking again."""
        self.stats = ListenerStats()
        self.bound: Address | None = None
        self.socket: socket.socket | None = None
        self._acceptor: Acceptor | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        self.draining = False

    async def start(self, inherited: socket.socket | None = None) -> None:
        """Bind the configured address, or serve on `inherited` (a hot restart's socket)."""
        config = self.config
        sock = inherited or bind_socket(
            config.address, f"listener {self.name!r}", config.backlog, config.reuse_port
        )
        self.socket = sock
        sock.setblocking(False)
        self._acceptor = Acceptor(sock, lambda: DownstreamConnection(self), self._exhausted,
                                  self.name)  # fmt: skip
        self._acceptor.start()
        host, port = sock.getsockname()[:2]
        self.bound = Address(host, port)
        log.info("listener %r listening on %s", self.name, self.bound)

    def reconfigure(
        self,
        config: ListenerConfig,
        chains: Sequence[FilterChain],
        listener_filters: Sequence[ListenerFilterFactory],
        generation: ChainGeneration,
    ) -> None:
        """A reload: new connections get these chains; open ones keep the filters they have
        (the old chains' generation is released when the last of them closes)."""
        self.config = config
        self.chains = list(chains)
        self.listener_filters = list(listener_filters)
        self.generation.retire()
        self.generation = generation

    def stop_accepting(self) -> None:
        """For good: the listening socket is closed."""
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None

    def pause_accepting(self, reason: str) -> None:
        """Leave new connections in the backlog until `resume_accepting(reason)`."""
        if self._acceptor is not None:
            self._acceptor.pause(reason)

    def resume_accepting(self, reason: str) -> None:
        if self._acceptor is not None:
            self._acceptor.resume(reason)

    def _exhausted(self, error: OSError) -> None:
        self.stats.accept_exhausted += 1

    def drain(self) -> None:
        """Stop accepting and ask open connections to wind down (GOAWAY, Connection: close)."""
        self.stop_accepting()
        self.draining = True
        self.generation.retire()
        for connection in list(self.connections):
            connection.drain()

    async def wait_empty(self) -> None:
        await self._empty.wait()

    def close_connections(self) -> None:
        for connection in list(self.connections):
            connection.close(abort=True)

    # -- called by connections ------------------------------------------------------------

    def connection_opened(self, connection: DownstreamConnection) -> bool:
        """Admit a new connection, or refuse it when the listener is full and no open
        connection is idle."""
        limit = self.config.max_connections
        if limit is not None and len(self.connections) >= limit and not self._make_room():
            self.stats.cx_overflow += 1
            return False
        self.stats.cx_total += 1
        self.connections[connection] = None
        self._empty.clear()
        return True

    def _make_room(self) -> bool:
        """Close the oldest idle connection (nginx reuses keep-alive connections the same
        way), so that idle clients cannot keep new ones out. Finding none, the listener
        does not look again for RESCAN_AFTER: a flood at the limit costs no scan each."""
        now = time.monotonic()
        if now < self._none_idle_until:
            return False
        for connection in self.connections:  # oldest first
            if connection.close_if_idle():
                self.stats.idle_reclaimed += 1
                return True
        self._none_idle_until = now + RESCAN_AFTER
        return False

    def close_idle(self) -> int:
        """Close every idle connection (the overload manager sheds them); how many."""
        closed = sum(connection.close_if_idle() for connection in list(self.connections))
        self.stats.idle_shed += closed
        return closed

    def connection_closed(self, connection: DownstreamConnection) -> None:
        if connection in self.connections:
            del self.connections[connection]
            self.stats.bytes_received_closed += connection.info.bytes_received
            self.stats.bytes_sent_closed += connection.info.bytes_sent
            if not self.connections:
                self._empty.set()

    @property
    def bytes_received(self) -> int:
        live = sum(c.info.bytes_received for c in self.connections)
        return self.stats.bytes_received_closed + live

    @property
    def bytes_sent(self) -> int:
        return self.stats.bytes_sent_closed + sum(c.info.bytes_sent for c in self.connections)
