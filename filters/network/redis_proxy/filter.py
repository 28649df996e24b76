"""`redis_proxy` in a listener's filters: shared state built once, one session per client."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from filters.network.api import ConnectionCallbacks, FactoryContext, FilterFactory, NetworkFilter
from filters.network.redis_proxy.commands import BUILTIN, CommandTable, hash_tag
from filters.network.redis_proxy.config import RedisProxyConfig, parse_config
from filters.network.redis_proxy.distribution import Distribution, Ejection, Server, ketama_name
from filters.network.redis_proxy.hashkit import HASHES
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


class KeyRing(Protocol):
    def choose_hash(self, key_hash: int) -> Endpoint | None: ...


class RedisShared:
    """What every client session of one redis_proxy filter shares: pools, routing, stats."""

    def __init__(self, config: RedisProxyConfig, cluster: Cluster, stats: RedisStats) -> None:
        self.config = config
        self.cluster = cluster
        self.stats = stats
        self.slot_map = cluster.slot_map
        self.tag = tag_function(config.hash_tag)
        """Key -> what is hashed (Redis's {hash tag} by default)."""
        self.hashed_by_tag = self.slot_map is None and self.tag is hash_tag
        """Single-key commands take the session's shortest path (sharded, {hash tags})."""
        self.hash = HASHES[config.hash]
        self.ring: KeyRing = cluster.shard_ring or Ketama()
        self.commands: CommandTable = BUILTIN
        """Built-in until the upstream describes its own (learn.py)."""
        self.learner = CommandLearner(self)
        self.settings = tuple(
            RedisPoolSettings(
                username=config.upstream_username, password=config.upstream_password,
                resp3=resp3, connections=config.connections_per_endpoint,
                timeout=config.timeout, limits=config.limits,
            )
            for resp3 in (False, True)
        )  # fmt: skip
        """The shared pools' settings (RESP2, RESP3); a client's own connections take them."""
        self.pools = tuple(cluster.lease(RedisPool, settings) for settings in self.settings)
        """Index by the session's resp3 flag, call with an endpoint: its (lazily made) pool.
        Leased from the cluster, which owns them; `release` when the filter chain retires."""
        if config.distribution is not None:
            self.ring = self._distribution(config)
            hash_key = self.hash
            self.hash = lambda key: hash_key(key) if key else 0  # (twemproxy: empty keys, 0)
        self._allow = config.allow
        self._deny = config.deny
        self.filtering = bool(config.allow or config.deny)
        self._slow = config.slow_command_threshold
        self._slow_logged_at = 0.0
        self._slow_unlogged = 0

    def _distribution(self, config: RedisProxyConfig) -> Distribution:
        """twemproxy's ring over the cluster's endpoints, in their configured order."""
        assert config.distribution is not None
        by_address = {e.address: e for e in self.cluster.endpoints}
        servers = [Server(by_address[c.address], ketama_name(by_address[c.address], c.name),
                          c.weight)
                   for c in self.cluster.config.endpoints if c.address in by_address]  # fmt: skip
        ejection = None
        if config.auto_eject_hosts:
            pools = self.pools[0]

            def forgive(endpoint: Endpoint) -> None:
                pools(endpoint).consecutive_failures = 0

            ejection = Ejection(config.server_failure_limit, config.server_retry_timeout,
                                lambda e: pools(e).consecutive_failures, forgive)  # fmt: skip
        return Distribution(config.distribution, servers, ejection)

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


def tag_function(tag: bytes) -> Callable[[bytes], bytes]:
    """`{}` is Redis's hash tag (the common case, one function); other pairs as twemproxy
    reads them; none: the whole key."""
    if tag == b"{}":
        return hash_tag
    if not tag:
        return _whole_key
    opening, closing = tag[:1], tag[1:2]

    def tagged(key: bytes) -> bytes:
        start = key.find(opening)
        if start >= 0:
            end = key.find(closing, start + 1)
            if end > start + 1:
                return key[start + 1 : end]
        return key

    return tagged


def _whole_key(key: bytes) -> bytes:
    return key


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
