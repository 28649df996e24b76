"""`redis_proxy` in a listener's filters: shared state built once, one session per client."""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable

from filters.network.api import ConnectionCallbacks, FactoryContext, FilterFactory, NetworkFilter
from filters.network.redis_proxy.commands import BUILTIN, CommandTable
from filters.network.redis_proxy.config import RedisProxyConfig, parse_config
from filters.network.redis_proxy.learn import CommandLearner
from filters.network.redis_proxy.replies import Reply
from filters.network.redis_proxy.session import RedisSession
from filters.network.redis_proxy.stats import RedisStats, RedisStatsCollector
from filters.network.registry import NetworkFilterSpec
from proxy.config.units import Address
from proxy.upstream.cluster import Cluster
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.lb import Ketama
from proxy.upstream.redis_pool import Completion, RedisPool, RedisPoolSettings

log = logging.getLogger("mecha.redis_proxy")


def _md5(key: bytes) -> int:
    return int.from_bytes(hashlib.md5(key, usedforsecurity=False).digest()[:4], "little")


HASH_FUNCTIONS: dict[str, Callable[[bytes], int]] = {"crc32": zlib.crc32, "md5": _md5}


class RedisShared:
    """What every client session of one redis_proxy filter shares: pools, routing, stats."""

    def __init__(self, config: RedisProxyConfig, cluster: Cluster, stats: RedisStats) -> None:
        self.config = config
        self.cluster = cluster
        self.stats = stats
        self.slot_map = cluster.slot_map
        self.ring = cluster.shard_ring or Ketama()
        self.hash = HASH_FUNCTIONS[config.hash]
        self.commands: CommandTable = BUILTIN
        """Built-in until the upstream describes its own (learn.py)."""
        self.learner = CommandLearner(self)
        self.pools = tuple(
            cluster.lease(RedisPool, RedisPoolSettings(
                username=config.upstream_username, password=config.upstream_password,
                resp3=resp3, connections=config.connections_per_endpoint,
                timeout=config.timeout, limits=config.limits,
            ))
            for resp3 in (False, True)
        )  # fmt: skip
        """Index by the session's resp3 flag, call with an endpoint: its (lazily made) pool.
        Leased from the cluster, which owns them; `release` when the filter chain retires."""
        self._allow = config.allow
        self._deny = config.deny
        self.filtering = bool(config.allow or config.deny)
        self._slow = config.slow_command_threshold
        self._slow_logged_at = 0.0
        self._slow_unlogged = 0

    def allows(self, name: bytes) -> bool:
        if name in self._deny:
            return False
        return self._allow is None or name in self._allow

    def release(self) -> None:
        for pools in self.pools:
            self.cluster.release(pools)

    @property
    def retired(self) -> bool:
        """The cluster went (a reload replaced it): clients should reconnect to its successor."""
        return self.pools[0].closed

    def any_endpoint(self) -> Endpoint | None:
        endpoints = self.cluster.endpoints
        return endpoints[0] if endpoints else None

    # -- Redis Cluster --------------------------------------------------------------------------

    def send_to_slot(self, slot: int, command: bytes, reply: Completion, resp3: bool) -> None:
        assert self.slot_map is not None
        endpoint = self.slot_map.owners[slot]
        if endpoint is None:
            self.slot_map.request_refresh()
            reply.complete(b"-CLUSTERDOWN Hash slot not served\r\n")
            return
        self.pools[resp3](endpoint).send(command, reply)

    def moved(self, slot: int, address: Address) -> Endpoint:
        assert self.slot_map is not None
        return self.slot_map.moved(slot, address)

    def endpoint_at(self, address: Address) -> Endpoint:
        assert self.slot_map is not None
        return self.slot_map.endpoint(address)

    def refresh_cluster(self) -> None:
        if self.slot_map is not None:
            self.slot_map.request_refresh()

    # -- accounting -------------------------------------------------------------------------------

    def record(self, reply: Reply, data: bytes, now: float) -> None:
        elapsed = now - reply.started
        self.stats.series(reply.name).observe(elapsed, data[:1] == b"-")
        if self._slow is not None and elapsed >= self._slow:
            self._slow_command(reply.name, elapsed, now)

    def _slow_command(self, name: bytes, elapsed: float, now: float) -> None:
        """Count every slow command; log at most one line a second (an overload is noisy)."""
        self.stats.slow_commands += 1
        if now - self._slow_logged_at < 1.0:
            self._slow_unlogged += 1
            return
        more = (
            f" (and {self._slow_unlogged} more since the last report)"
            if self._slow_unlogged
            else ""
        )
        log.warning(
            "slow redis command %s: %.1f ms%s", name.decode("latin-1"), elapsed * 1000, more
        )
        self._slow_logged_at = now
        self._slow_unlogged = 0


def create_factory(config: RedisProxyConfig, context: FactoryContext) -> FilterFactory:
    cluster = context.cluster_manager[config.cluster]
    stats = RedisStats(context.listener_name)

    def new_collector() -> RedisStatsCollector:
        collector = RedisStatsCollector()
        context.add_collector(collector)
        return collector

    context.singleton("redis_stats", new_collector).stats.append(stats)
    shared = RedisShared(config, cluster, stats)
    context.on_retire(shared.release)

    def factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        if not shared.learner.learned:
            shared.learner.start()
        return RedisSession(shared, callbacks)

    return factory


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
