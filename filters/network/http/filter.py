"""`http` in a listener's filters: builds the connection manager's shared state once."""

from __future__ import annotations

from filters.http import registry as http_registry
from filters.http.api import StreamFilterFactory
from filters.network.api import ConnectionCallbacks, FactoryContext, FilterFactory, NetworkFilter
from filters.network.http.config import HcmConfig, parse_config
from filters.network.http.manager import HcmShared, HttpConnectionManager
from filters.network.http.observe import HttpStats, HttpStatsCollector
from filters.network.registry import NetworkFilterSpec
from protocols.http.h1 import H1Limits
from protocols.http.h2 import H2Settings
from proxy.upstream.cluster import ClusterManager
from runtime.runtime import Runtime


class _HttpContext:
    """The HttpFactoryContext of one connection manager."""

    def __init__(self, context: FactoryContext) -> None:
        self._context = context

    @property
    def cluster_manager(self) -> ClusterManager:
        return self._context.cluster_manager

    @property
    def listener_name(self) -> str:
        return self._context.listener_name

    @property
    def runtime(self) -> Runtime | None:
        return self._context.runtime


def create_factory(config: HcmConfig, context: FactoryContext) -> FilterFactory:
    http_context = _HttpContext(context)
    factories: list[tuple[str, StreamFilterFactory]] = []
    for entry in config.http_filters:
        spec = http_registry.lookup(entry.name)
        assert spec is not None, "validated at parse time"
        factories.append((entry.name, spec.create_factory(entry.config, http_context)))
    stats = HttpStats(context.listener_name)

    def new_collector() -> HttpStatsCollector:
        collector = HttpStatsCollector([])
        context.add_collector(collector)
        return collector

    context.singleton("http_stats", new_collector).stats.append(stats)
    shared = HcmShared(
        listener=context.listener_name,
        config=config,
        filter_factories=factories,
        stats=stats,
        access_log=context.access_log(config.access_log) if config.access_log else None,
        h1_limits=H1Limits(max_head=config.max_request_headers, max_body=config.max_request_body),
        h2_settings=H2Settings(max_concurrent_streams=config.max_concurrent_streams),
        clusters=context.cluster_manager,
        overload=context.overload,
    )

    def factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        return HttpConnectionManager(shared, callbacks)

    return factory


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
