"""Clusters (named groups of endpoints) and the manager that owns them."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from proxy.config.model import ClusterConfig
from proxy.config.units import Address
from proxy.stream_info import ResponseFlag
from proxy.upstream.connection import ClusterConnection, UpstreamConnection, UpstreamHandler
from proxy.upstream.dns import DnsResolver
from proxy.upstream.endpoint import Endpoint, Health
from proxy.upstream.health import HealthChecker
from proxy.upstream.http_api import PendingStream, UpstreamCallbacks
from proxy.upstream.lb import (
    HASH_BALANCERS,
    LOAD_BALANCERS,
    NO_EXCLUSIONS,
    HashBalancer,
    LoadBalancer,
)
from proxy.upstream.original_dst import OriginalDstHosts
from proxy.upstream.outlier import OutlierDetector
from proxy.upstream.pool import Pool, PoolSet
from proxy.upstream.redis_cluster import SlotMap

if TYPE_CHECKING:
    from proxy.upstream.http1_pool import Http1Pool
    from proxy.upstream.http2_pool import Http2Pool

    HttpPool = Http1Pool | Http2Pool

log = logging.getLogger("mecha.upstream")

C = TypeVar("C", bound=ClusterConnection)
P = TypeVar("P", bound=Pool)
S = TypeVar("S", bound=Hashable)

DEFAULT_BUFFER_LIMIT = 1 << 20


class UpstreamError(Exception):
    """No upstream connection could be had; `flag` says why in access-log terms."""

    def __init__(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None = None):
        super().__init__(reason)
        self.flag = flag
        self.reason = reason
        self.endpoint = endpoint


@dataclass(slots=True)
class ClusterStats:
    cx_total: int = 0
    cx_connect_fail: int = 0
    cx_connect_timeout: int = 0
    cx_overflow: int = 0
    cx_ssl_handshake_error: int = 0
    bytes_sent_closed: int = 0
    bytes_received_closed: int = 0
    rq_total: int = 0
    rq_pending_overflow: int = 0
    rq_overflow: int = 0
    rq_retry: int = 0
    rq_retry_overflow: int = 0
    rq_timeout: int = 0
    rq_reset: int = 0
    hc_success: int = 0
    hc_failure: int = 0
    dns_failures: int = 0


class Cluster:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.name = config.name
        self.stats = ClusterStats()
        self.connections: set[ClusterConnection] = set()
        self.connecting = 0
        self.rq_active = 0
        self.retries_active = 0
        self.endpoints: list[Endpoint] = []
        self.original_dst = (
            OriginalDstHosts(self, config.original_dst) if config.original_dst else None
        )
        self.lb: LoadBalancer = self.original_dst or LOAD_BALANCERS[config.lb_policy]()
        ring = HASH_BALANCERS.get(config.lb_policy)
        self.shard_ring: HashBalancer | None = ring() if ring is not None else None
        """Key -> endpoint over every member, healthy or not: a shard that is down must not
        have its keys moved to another (its commands fail instead)."""
        self.health_checker = (
            HealthChecker(self, config.health_check) if config.health_check else None
        )
        self.dns = DnsResolver(self) if config.type == "strict_dns" else None
        self.slot_map = SlotMap(self) if config.type == "redis_cluster" else None
        self.outlier = (
            OutlierDetector(self, config.outlier_detection) if config.outlier_detection else None
        )
        self.http_pools: PoolSet[HttpPool] = PoolSet(self._new_pool)
        """The cluster's own: their settings are its config's."""
        self._leased: dict[Hashable, PoolSet[Any]] = {}
        """Pools made for filters (Redis, RPC), by kind and settings."""
        self.retired = False
        if self.dns is None and self.slot_map is None:
            self.set_endpoints((e.address, e.weight, None) for e in config.endpoints)

    # -- membership and health ------------------------------------------------------------

    def set_endpoints(self, members: Iterable[tuple[Address, int, str | None]]) -> None:
        """Replace membership, keeping the state of endpoints that stay."""
        known = {e.address: e for e in self.endpoints}
        initial = Health.PENDING if self.health_checker else Health.HEALTHY
        updated: list[Endpoint] = []
        for address, weight, hostname in members:
            endpoint = known.pop(address, None) or Endpoint(address, weight, hostname, initial)
            endpoint.weight = weight
            updated.append(endpoint)
        self.endpoints = updated
        if self.shard_ring is not None:
            self.shard_ring.update(updated)
        for gone in known.values():
            for pools in self.pool_sets():
                pools.drop(gone)
        if self.health_checker:
            self.health_checker.sync(updated, removed=known.values())
        self.refresh_load_balancer()

    def refresh_load_balancer(self) -> None:
        self.lb.update([e for e in self.endpoints if e.available])

    @property
    def healthy_count(self) -> int:
        """Endpoints in load balancing: passing health checks and not ejected."""
        return sum(1 for e in self.endpoints if e.available)

    @property
    def cx_active(self) -> int:
        return len(self.connections) + self.connecting

    @property
    def bytes_sent(self) -> int:
        return self.stats.bytes_sent_closed + sum(c.bytes_sent for c in self.connections)

    @property
    def bytes_received(self) -> int:
        live = sum(c.bytes_received for c in self.connections)
        return self.stats.bytes_received_closed + live

    # -- connections ----------------------------------------------------------------------

    def choose(self, exclude: Collection[Endpoint] = NO_EXCLUSIONS) -> Endpoint:
        endpoint = self.lb.choose(exclude)
        if endpoint is None:
            reason = "no original destination" if self.original_dst else "no healthy upstream"
            raise UpstreamError(ResponseFlag.NO_HEALTHY_UPSTREAM, reason)
        return endpoint

    def new_http_stream(
        self, callbacks: UpstreamCallbacks, exclude: Collection[Endpoint] = NO_EXCLUSIONS
    ) -> PendingStream | None:
        """Ask an endpoint's pool for a stream; the answer comes through `callbacks`."""
        if self.rq_active >= self.config.circuit_breakers.max_requests:
            self.stats.rq_overflow += 1
            callbacks.on_pool_failure(
                ResponseFlag.UPSTREAM_OVERFLOW, "circuit breaker: max_requests", None
            )
            return None
        endpoint = self.lb.choose(exclude)
        if endpoint is None:
            reason = "no original destination" if self.original_dst else "no healthy upstream"
            callbacks.on_pool_failure(ResponseFlag.NO_HEALTHY_UPSTREAM, reason, None)
            return None
        self.stats.rq_total += 1
        pool = self.http_pools.pools.get(endpoint) or self.http_pools(endpoint)
        return pool.new_stream(callbacks)

    def _new_pool(self, endpoint: Endpoint) -> HttpPool:
        from proxy.upstream.http1_pool import Http1Pool
        from proxy.upstream.http2_pool import Http2Pool

        kind = Http2Pool if self.config.protocol == "http2" else Http1Pool
        return kind(self, endpoint)

    # -- pools --------------------------------------------------------------------------------

    def lease(self, kind: Callable[[Cluster, Endpoint, S], P], settings: S) -> PoolSet[P]:
        """Pools of `kind` with `settings`, one per endpoint, shared by every filter that asks
        for the same; `release` gives them back (the last release closes them)."""
        key = (kind, settings)
        pools: PoolSet[P] | None = self._leased.get(key)
        if pools is None:
            pools = PoolSet(lambda endpoint: kind(self, endpoint, settings), key)
            if self.retired:
                pools.close()
            self._leased[key] = pools
        pools.users += 1
        return pools

    def release(self, pools: PoolSet[Any]) -> None:
        pools.users -= 1
        if pools.users <= 0 and self._leased.get(pools.key) is pools:
            del self._leased[pools.key]
            pools.close()

    def pool_sets(self) -> list[PoolSet[Any]]:
        return [self.http_pools, *self._leased.values()]

    @property
    def busy(self) -> bool:
        """Requests in flight or waiting, connects under way, or filter chains still holding
        its pools: a retired cluster waits for none of these before it closes them."""
        if self.rq_active or self.connecting:
            return True
        return any(pools.users or pools.in_flight for pools in self.pool_sets())

    def retry_allowed(self) -> bool:
        """The max_retries breaker, or the retry budget when one is configured."""
        breakers = self.config.circuit_breakers
        limit = breakers.max_retries
        if breakers.retry_budget_percent is not None:
            budget = int(self.rq_active * breakers.retry_budget_percent / 100)
            limit = max(budget, breakers.min_retry_concurrency)
        if self.retries_active >= limit:
            self.stats.rq_retry_overflow += 1
            return False
        return True

    async def connect(
        self,
        handler: UpstreamHandler,
        exclude: Collection[Endpoint] = NO_EXCLUSIONS,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    ) -> UpstreamConnection:
        """An L4 connection to an endpoint the load balancer picks, or UpstreamError."""
        if self.cx_active >= self.config.circuit_breakers.max_connections:
            self.stats.cx_overflow += 1
            raise UpstreamError(ResponseFlag.UPSTREAM_OVERFLOW, "circuit breaker: max_connections")
        endpoint = self.choose(exclude)
        return await self.open_connection(
            endpoint, lambda: UpstreamConnection(self, endpoint, handler, buffer_limit)
        )

    async def open_connection(self, endpoint: Endpoint, factory: Callable[[], C]) -> C:
        """Connect to `endpoint` with the cluster's timeout and counters, or UpstreamError."""
        loop = asyncio.get_running_loop()
        self.stats.cx_total += 1
        endpoint.cx_total += 1
        endpoint.cx_active += 1
        self.connecting += 1
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                _, connection = await loop.create_connection(
                    factory, endpoint.address.host, endpoint.address.port,
                    **self.tls_options(endpoint.address.host, endpoint.hostname),
                )  # fmt: skip
        except TimeoutError:
            self._connect_failed(endpoint, timed_out=True)
            raise UpstreamError(
                ResponseFlag.UPSTREAM_CONNECTION_FAILURE, "connect timeout", endpoint
            ) from None
        except OSError as exc:
            self._connect_failed(endpoint)
            reason = (exc.strerror or str(exc)).lower()
            if isinstance(exc, ssl.SSLError):
                self.stats.cx_ssl_handshake_error += 1
                reason = f"tls handshake: {exc.reason or exc}".lower()
                log.info("cluster %r: TLS handshake with %s failed: %s",
                         self.name, endpoint.name, exc)  # fmt: skip
            raise UpstreamError(
                ResponseFlag.UPSTREAM_CONNECTION_FAILURE, reason, endpoint
            ) from None
        except BaseException:
            self._connect_failed(endpoint, counted=False)
            raise
        self.connecting -= 1
        self.connections.add(connection)
        return connection

    def tls_options(self, host: str, hostname: str | None = None) -> dict[str, Any]:
        """create_connection / open_connection arguments for the cluster's `tls:`, if any."""
        tls = self.config.tls
        if tls is None:
            return {}
        return {"ssl": tls.context, "server_hostname": tls.server_hostname(host, hostname),
                "ssl_handshake_timeout": tls.handshake_timeout}  # fmt: skip

    def _connect_failed(
        self, endpoint: Endpoint, timed_out: bool = False, counted: bool = True
    ) -> None:
        self.connecting -= 1
        endpoint.cx_active -= 1
        if counted:
            self.stats.cx_connect_fail += 1
            endpoint.cx_connect_fail += 1
            self.stats.cx_connect_timeout += timed_out

    def connection_closed(self, connection: ClusterConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            connection.endpoint.cx_active -= 1
            self.stats.bytes_sent_closed += connection.bytes_sent
            self.stats.bytes_received_closed += connection.bytes_received

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve and health-check once, so the cluster is warm before traffic arrives."""
        if self.dns:
            await self.dns.start()
        if self.slot_map:
            await self.slot_map.start()
        if self.health_checker:
            await self.health_checker.start()

    async def stop(self) -> None:
        """Discovery and health checks stop; every pool closes now."""
        self.retired = True
        if self.dns:
            await self.dns.stop()
        if self.slot_map:
            await self.slot_map.stop()
        if self.health_checker:
            await self.health_checker.stop()
        if self.outlier:
            self.outlier.stop()
        if self.original_dst:
            self.original_dst.stop()
        for pools in self.pool_sets():
            pools.abort()


class ClusterManager:
    def __init__(self, configs: Iterable[ClusterConfig]) -> None:
        self.clusters = {c.name: Cluster(c) for c in configs}

    def __getitem__(self, name: str) -> Cluster:
        return self.clusters[name]

    def add(self, config: ClusterConfig) -> Cluster:
        """A cluster made at run time (e.g. the runtime's app channel)."""
        cluster = self.clusters[config.name] = Cluster(config)
        return cluster

    def __iter__(self) -> Iterator[Cluster]:
        return iter(self.clusters.values())

    async def start(self, warming_limit: float) -> None:
        """Warm every cluster; one that is slow to warm starts anyway, with a warning."""
        pending = [c for c in self if c.dns or c.slot_map or c.health_checker]
        if not pending:
            return
        try:
            async with asyncio.timeout(warming_limit):
                await asyncio.gather(*(c.start() for c in pending))
        except TimeoutError:
            log.warning("clusters still warming after %.1fs; starting anyway", warming_limit)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self))
        for cluster in self:
            for connection in list(cluster.connections):
                connection.close(abort=True)
