"""Upstream connection pools: what every kind shares, and who closes them.

Every pool belongs to one cluster, as in Envoy, whose cluster manager owns the connection
pools and drains them when a cluster goes. A cluster keeps its pools in `PoolSet`s, one
per kind and settings: the HTTP pools are its own (the settings are the cluster's), Redis
and RPC pools are made for the filters that lease a set (`Cluster.lease`) with the settings
their config gives. A pool is closed by its cluster only:

- when its endpoint leaves the cluster (DNS, Redis Cluster topology, original_dst);
- when the last filter chain that leased its set retires (a reload replaced the chain, or
  removed its listener, and the chain's last connection closed);
- when the cluster itself retires (a reload changed or removed it: once idle, at most
  `drain_timeout` later) or the process stops.

Closing is graceful: a closed pool takes no new work (a late caller hears the protocol's
error), idle connections close at once and busy ones once what they carry is answered.
`abort` is the end: connects stop and every connection closes now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from proxy.stream_info import ResponseFlag
from proxy.upstream.connection import ClusterConnection, PipelinedConnection
from proxy.upstream.endpoint import Endpoint

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster, UpstreamError

log = logging.getLogger("mecha.upstream")

C = TypeVar("C", bound=ClusterConnection)
PC = TypeVar("PC", bound=PipelinedConnection)


class Pool(Protocol):
    """What a cluster needs of a pool of any kind."""

    @property
    def in_flight(self) -> int:
        """Requests waiting for, or carried by, this pool's connections (not counted in the
        cluster's rq_active)."""

    def close(self) -> None:
        """Take no new work; close idle connections now, busy ones once they are idle."""

    def abort(self) -> None:
        """Stop connecting and close every connection now."""


P = TypeVar("P", bound=Pool)


class PoolSet(Generic[P]):
    """The pools of one kind and settings in a cluster: one per endpoint, made on first use.

    Called with an endpoint, it gives that endpoint's pool (the hot path: one dict lookup).
    `users` counts the filter chains that leased it; the cluster closes it when that falls
    to zero, and any time it retires.
    """

    __slots__ = ("_make", "closed", "key", "pools", "users")

    def __init__(self, make: Callable[[Endpoint], P], key: Hashable = None) -> None:
        self._make = make
        self.key = key
        self.pools: dict[Endpoint, P] = {}
        self.users = 0
        self.closed = False

    def __call__(self, endpoint: Endpoint) -> P:
        pool = self.pools.get(endpoint)
        if pool is None:
            pool = self.pools[endpoint] = self._make(endpoint)
            if self.closed:  # a late caller of a retired cluster: refused, never connected
                pool.close()
        return pool

    @property
    def in_flight(self) -> int:
        return sum(pool.in_flight for pool in self.pools.values())

    def drop(self, endpoint: Endpoint) -> None:
        """The endpoint left the cluster: close its pool."""
        pool = self.pools.pop(endpoint, None)
        if pool is not None:
            pool.close()

    def close(self) -> None:
        self.closed = True
        for pool in self.pools.values():
            pool.close()

    def abort(self) -> None:
        self.closed = True
        for pool in self.pools.values():
            pool.abort()


class PoolBase:
    """Connections to one endpoint of a cluster: the connect task every kind shares."""

    kind = "pool"
    """Names connect tasks (`<kind>-connect:<cluster>:<address>`)."""

    def __init__(self, cluster: Cluster, endpoint: Endpoint) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.closed = False
        self._connects: set[asyncio.Task[None]] = set()

    def connect(
        self,
        factory: Callable[[], C],
        connected: Callable[[C], None],
        failed: Callable[[UpstreamError], None],
    ) -> None:
        """Open a connection in a task; exactly one of `connected` / `failed` is called."""
        name = f"{self.kind}-connect:{self.cluster.name}:{self.endpoint.address}"
        task = asyncio.get_running_loop().create_task(
            self._connect_task(factory, connected, failed), name=name
        )
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)

    async def _connect_task(
        self,
        factory: Callable[[], C],
        connected: Callable[[C], None],
        failed: Callable[[UpstreamError], None],
    ) -> None:
        from proxy.upstream.cluster import UpstreamError

        try:
            connection = await self.cluster.open_connection(self.endpoint, factory)
        except UpstreamError as error:
            failed(error)
            return
        except Exception as exc:  # a bug must not strand the callers waiting on this pool
            log.exception("cluster %r: connecting to %s failed",
                          self.cluster.name, self.endpoint.address)  # fmt: skip
            failed(UpstreamError(ResponseFlag.UPSTREAM_CONNECTION_FAILURE, str(exc)))
            return
        connected(connection)

    def stop_connecting(self) -> None:
        for task in self._connects:
            task.cancel()

    def refusal(self) -> str:
        """Why a closed pool takes no new work."""
        return f"cluster {self.cluster.name!r} was removed or replaced by a reload"


class SharedPool(PoolBase, Generic[PC]):
    """Up to `size` connections that every caller shares, picked round robin (Redis, RPC).

    A connection is made and queued on at once, before it is connected (its queue leaves
    when it is); one that fails leaves the pool, and the next caller makes another.
    """

    def __init__(self, cluster: Cluster, endpoint: Endpoint, size: int) -> None:
        super().__init__(cluster, endpoint)
        self.size = size
        self.connections: list[PC] = []
        self._next = 0

    def new_connection(self) -> PC:
        raise NotImplementedError

    def pick(self) -> PC:
        connections = self.connections
        if len(connections) < self.size:
            return self._add()
        if len(connections) == 1:
            return connections[0]
        self._next = (self._next + 1) % len(connections)
        return connections[self._next]

    def _add(self) -> PC:
        connection = self.new_connection()
        if self.closed:
            connection.give_up(self.refusal())
            return connection
        self.connections.append(connection)
        self.connect(lambda: connection, _connected, lambda e: connection.fail(e.reason))
        return connection

    def connection_failed(self, connection: PC, reason: str) -> None:
        if connection in self.connections:
            self.connections.remove(connection)

    @property
    def in_flight(self) -> int:
        return sum(connection.outstanding() for connection in self.connections)

    def close(self) -> None:
        self.closed = True
        for connection in list(self.connections):
            connection.close_when_idle()

    def abort(self) -> None:
        self.closed = True
        self.stop_connecting()
        for connection in list(self.connections):
            connection.closing = True  # expected to go: not worth a warning
            connection.fail(self.refusal())


def _connected(connection: PipelinedConnection) -> None:
    """Nothing to do: the connection flushes its queue itself once connected."""
