"""`rpc_proxy` in a listener's filters: routes, pools and stats shared by every caller."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from filters.network.api import ConnectionCallbacks, FactoryContext, FilterFactory, NetworkFilter
from filters.network.registry import NetworkFilterSpec
from filters.network.rpc_proxy.config import RpcProxyConfig, RpcRoute, parse_config
from filters.network.rpc_proxy.session import RpcSession
from filters.network.rpc_proxy.stats import RpcStats, RpcStatsCollector
from protocols.rpc import lookup
from proxy.timers import TimerWheel
from proxy.upstream.cluster import Cluster, ClusterManager
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.rpc_pool import Owner, RpcPool, RpcPoolSettings

if TYPE_CHECKING:
    from filters.network.rpc_proxy.call import ProxiedCall

log = logging.getLogger("mecha.rpc_proxy")

ROUTE_CACHE_SIZE = 10_000


class RpcShared:
    def __init__(self, config: RpcProxyConfig, clusters: ClusterManager, listener: str,
                 stats: RpcStats, access_log: Callable[[str], None] | None) -> None:  # fmt: skip
        self.config = config
        self.listener = listener
        self.codec = lookup(config.codec)
        self.stats = stats
        self.timers = TimerWheel()
        self._clusters = {route.name: clusters[route.cluster] for route in config.routes}
        settings = RpcPoolSettings(self.codec, config.max_message_size,
                                   config.connections_per_endpoint)  # fmt: skip
        self._private_settings = replace(settings, connections=1)
        owners = {route.cluster: clusters[route.cluster] for route in config.routes}
        self._leases = [(cluster, cluster.lease(RpcPool, settings)) for cluster in owners.values()]
        """Shared pools leased from each cluster, which owns them, until `release`."""
        self._pools = {cluster.name: pools for cluster, pools in self._leases}
        self.on_probation = 0
        """Callers set apart on connections of their own (filters/network/rpc_proxy/upstreams)."""
        self._routes: dict[str, RpcRoute | None] = {}
        self._access_log = access_log

    def route(self, method: str) -> RpcRoute | None:
        """The first route that matches, in configuration order (remembered per method)."""
        try:
            return self._routes[method]
        except KeyError:
            pass
        found = next((route for route in self.config.routes if route.matches(method)), None)
        if len(self._routes) < ROUTE_CACHE_SIZE:  # callers choose method names: stay bounded
            self._routes[method] = found
        return found

    def cluster(self, route: RpcRoute) -> Cluster:
        return self._clusters[route.name]

    def pool(self, route: RpcRoute, endpoint: Endpoint) -> RpcPool:
        return self._pools[route.cluster](endpoint)

    def release(self) -> None:
        for cluster, pools in self._leases:
            cluster.release(pools)

    @property
    def retired(self) -> bool:
        """A cluster went (a reload replaced it): callers should reconnect to its successor."""
        return any(pools.closed for pools in self._pools.values())

    def private_pool(self, route: RpcRoute, endpoint: Endpoint, owner: Owner | None) -> RpcPool:
        """A pool of one connection for one caller (its owner, if it hears the server)."""
        return RpcPool(self.cluster(route), endpoint, self._private_settings, owner)

    @staticmethod
    def loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def record(self, call: ProxiedCall, failed: bool, timed_out: bool) -> None:
        elapsed = time.monotonic() - call.started
        series = self.stats.series(call.frame.method)
        series.observe(elapsed, failed)
        series.timeouts += timed_out
        if self._access_log is not None:
            upstream = str(call.tried[-1].address) if call.tried else "-"
            outcome = "timeout" if timed_out else "error" if failed else "ok"
            self._access_log(
                f"rpc listener={self.listener} method={call.frame.method} route={call.route.name} "
                f"upstream={upstream} attempts={call.attempts} result={outcome} "
                f"duration_ms={elapsed * 1000:.1f}"
            )


def create_factory(config: RpcProxyConfig, context: FactoryContext) -> FilterFactory:
    stats = RpcStats(context.listener_name)

    def new_collector() -> RpcStatsCollector:
        collector = RpcStatsCollector()
        context.add_collector(collector)
        return collector

    context.singleton("rpc_stats", new_collector).stats.append(stats)
    access_log = context.access_log(config.access_log) if config.access_log else None
    shared = RpcShared(config, context.cluster_manager, context.listener_name, stats, access_log)
    context.on_retire(shared.release)

    def factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        return RpcSession(shared, callbacks)

    return factory


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
