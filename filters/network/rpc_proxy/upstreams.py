"""Where one caller's messages go: the listener's shared connections, or connections of its own.

- `upstream_connections: shared` (the default): every caller's calls are multiplexed on a few
  connections per endpoint. When the upstream closes one with a caller's message unread (see
  proxy/upstream/rpc_pool.py: blame), that caller is a suspect and goes on *probation*: for
  PROBATION seconds its messages travel on a connection of its own, so if it does it again
  only its own calls are lost, and then it is cut off. Innocent suspects lose nothing but a
  shared connection for a while. At most MAX_ON_PROBATION callers per listener are set apart
  at once (beyond that, suspects stay on the shared connections; counted).
- `per_client`: each caller has its own connection per endpoint, pinned to the endpoint first
  chosen in each cluster (a stateful peer such as Neovim keeps one channel per client), and
  the server's own requests and notifications reach it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from filters.network.rpc_proxy.config import RpcRoute
from proxy.timers import Deadline
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.rpc_pool import Owner, RpcConnection, RpcPool

if TYPE_CHECKING:
    from filters.network.rpc_proxy.filter import RpcShared

PROBATION = 30.0
"""Seconds a suspect's messages keep to a connection of their own."""
MAX_ON_PROBATION = 64
"""Callers per listener on probation at once: each holds one more upstream connection."""


class Verdict(enum.Enum):
    """What becomes of a suspect (see `CallerUpstreams.suspected`)."""

    NONE = "none"
    PROBATION = "probation"
    CUT_OFF = "cut off"


class CallerUpstreams:
    __slots__ = ("_own", "_owner", "_pinned", "_probation", "_retiring", "shared")

    def __init__(self, shared: RpcShared, owner: Owner | None) -> None:
        self.shared = shared
        self._owner = owner
        """Who hears the server on this caller's own connections (per_client); dropped on
        close, which breaks the cycle session -> upstreams -> session."""
        self._own: dict[Endpoint, RpcPool] | None = {} if shared.config.per_client else None
        """Pools of this caller alone (per_client, or on probation); None: shared ones."""
        self._pinned: dict[str, Endpoint] = {}
        self._probation: Deadline | None = None
        """While on probation: when it ends."""
        self._retiring: list[RpcPool] = []
        """Pools of a probation that ended, closed once nothing is in flight on them."""

    @property
    def on_probation(self) -> bool:
        return self._probation is not None

    def pick(self, route: RpcRoute, exclude: list[Endpoint]) -> tuple[Endpoint, RpcConnection]:
        """An endpoint for the route and the connection to send on; UpstreamError if none."""
        cluster = self.shared.cluster(route)
        if self.shared.config.per_client:
            endpoint = self._pinned.get(route.cluster)
            if endpoint is None:
                endpoint = self._pinned[route.cluster] = cluster.choose()
        else:
            endpoint = cluster.choose(exclude)
        return endpoint, self._pool(route, endpoint).connection()

    def _pool(self, route: RpcRoute, endpoint: Endpoint) -> RpcPool:
        if self._retiring:
            self._close_idle(self._retiring)
        own = self._own
        if own is None:
            return self.shared.pool(route, endpoint)
        pool = own.get(endpoint)
        if pool is None:
            pool = own[endpoint] = self.shared.private_pool(route, endpoint, self._owner)
        return pool

    def connections(self) -> list[RpcConnection]:
        """The connections of this caller alone."""
        return [c for pool in (self._own or {}).values() for c in pool.connections]

    # -- blame --------------------------------------------------------------------------------

    def suspected(self, connection: RpcConnection) -> Verdict:
        """The upstream closed `connection` with a message of this caller unread: cut off
        when the caller was alone on it (on probation), else set apart (or kept apart)."""
        if self.shared.config.per_client:
            return Verdict.NONE  # its connection is its own: losing it ends the caller anyway
        if self.on_probation:
            if any(connection.pool is pool for pool in (self._own or {}).values()):
                return Verdict.CUT_OFF
            self._set_probation()  # suspected again, on a shared connection: longer apart
            return Verdict.NONE
        if self.shared.on_probation >= MAX_ON_PROBATION:
            self.shared.stats.probation_overflow += 1
            return Verdict.NONE
        self.shared.on_probation += 1
        self.shared.stats.probations += 1
        self._own = {}
        self._set_probation()
        return Verdict.PROBATION

    def _set_probation(self) -> None:
        if self._probation is not None:
            self._probation.cancel()
        self._probation = self.shared.timers.call_later(PROBATION, self._end_probation)

    def _end_probation(self) -> None:
        self.shared.on_probation -= 1
        self._probation = None
        self._retiring += (self._own or {}).values()
        self._own = None
        self._close_idle(self._retiring)

    @staticmethod
    def _close_idle(pools: list[RpcPool]) -> None:
        for pool in [p for p in pools if not p.in_flight]:
            pools.remove(pool)
            pool.close()

    def close(self) -> None:
        if self._probation is not None:
            self._probation.cancel()
            self._probation = None
            self.shared.on_probation -= 1
        for pool in [*(self._own or {}).values(), *self._retiring]:
            pool.abort()  # the caller is gone: nothing on them is awaited any more
        self._own = None
        self._retiring = []
        self._owner = None
