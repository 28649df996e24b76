"""The `original_dst` cluster type (Envoy's ORIGINAL_DST): forward to where a connection was going.

The endpoint is the original destination the `original_dst` listener filter read from the
downstream socket. It reaches the balancer through `DESTINATION`, a context variable the
downstream connection sets while its filters run: tasks, timers and upstream connections
made there inherit it, so the tcp_proxy connect, the HTTP router and its retries all see
the destination of the connection they serve without the filters passing it along.

Endpoints are made on first use and kept in the cluster's membership (so /clusters, stats
and per-endpoint HTTP pools work as for any cluster); every `cleanup_interval` those not
chosen since the last sweep and without requests in flight are removed, closing their
idle pooled connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

from proxy.config.model import OriginalDstSettings
from proxy.config.units import Address
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.lb import NO_EXCLUSIONS

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

DESTINATION: ContextVar[Address | None] = ContextVar("mecha_original_destination", default=None)


class OriginalDstHosts:
    """The cluster's balancer and the owner of its membership."""

    __slots__ = ("_by_address", "_cleanup", "_cluster", "_settings", "_used")

    def __init__(self, cluster: Cluster, settings: OriginalDstSettings) -> None:
        self._cluster = cluster
        self._settings = settings
        self._by_address: dict[Address, Endpoint] = {}
        self._used: set[Endpoint] = set()
        self._cleanup: asyncio.TimerHandle | None = None

    # -- LoadBalancer -----------------------------------------------------------------------

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Membership is ours; nothing to rebuild."""

    def choose(self, exclude: Collection[Endpoint] = NO_EXCLUSIONS) -> Endpoint | None:
        destination = DESTINATION.get()
        if destination is None:
            return None
        endpoint = self._by_address.get(destination)
        if endpoint is None:
            endpoint = self._add(destination)
        self._used.add(endpoint)
        return endpoint

    # -- membership ---------------------------------------------------------------------------

    def _add(self, address: Address) -> Endpoint:
        cluster = self._cluster
        cluster.set_endpoints([*((e.address, e.weight, None) for e in cluster.endpoints),
                               (address, 1, None)])  # fmt: skip
        endpoint = next(e for e in cluster.endpoints if e.address == address)
        self._by_address[address] = endpoint
        if self._cleanup is None:
            self._schedule()
        return endpoint

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._cleanup = loop.call_later(self._settings.cleanup_interval, self.sweep)

    def sweep(self) -> None:
        """Drop endpoints nobody chose since the last sweep and with no request in flight."""
        self._cleanup = None
        keep = [e for e in self._cluster.endpoints if e in self._used or e.rq_active > 0]
        if len(keep) != len(self._cluster.endpoints):
            self._cluster.set_endpoints((e.address, e.weight, None) for e in keep)
            self._by_address = {e.address: e for e in keep}
        self._used.clear()
        if keep:
            self._schedule()

    def stop(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            self._cleanup = None
