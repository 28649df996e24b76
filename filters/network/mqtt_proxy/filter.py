"""`mqtt_proxy` in a listener's filters: routing, ACLs, rate limit and stats, built once."""

from __future__ import annotations

import time

from filters.network.api import ConnectionCallbacks, FactoryContext, FilterFactory, NetworkFilter
from filters.network.mqtt_proxy.acl import Acl
from filters.network.mqtt_proxy.config import MqttProxyConfig, parse_config
from filters.network.mqtt_proxy.session import MqttSession
from filters.network.mqtt_proxy.stats import MqttStats, MqttStatsCollector
from filters.network.registry import NetworkFilterSpec
from proxy.upstream.cluster import Cluster, ClusterManager


class MqttShared:
    def __init__(self, config: MqttProxyConfig, clusters: ClusterManager, stats: MqttStats):
        self.config = config
        self.stats = stats
        self.acl = Acl(config.acl, config.acl_default_allow)
        self._default = clusters[config.cluster]
        self._routes = [(rule, clusters[rule.cluster]) for rule in config.routes]
        self._tokens = float(config.connection_burst)
        self._refilled = time.monotonic()

    def cluster_for(self, client_id: str, username: str | None) -> Cluster:
        for rule, cluster in self._routes:
            if rule.matches(client_id, username):
                return cluster
        return self._default

    def admit(self) -> bool:
        """The connection rate limit: a token bucket refilled lazily."""
        rate = self.config.max_connections_per_second
        if rate is None:
            return True
        now = time.monotonic()
        burst = self.config.connection_burst
        self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def create_factory(config: MqttProxyConfig, context: FactoryContext) -> FilterFactory:
    stats = MqttStats(context.listener_name, config.topic_stats)

    def new_collector() -> MqttStatsCollector:
        collector = MqttStatsCollector()
        context.add_collector(collector)
        return collector

    context.singleton("mqtt_stats", new_collector).stats.append(stats)
    shared = MqttShared(config, context.cluster_manager, stats)

    def factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        return MqttSession(shared, callbacks)

    return factory


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
