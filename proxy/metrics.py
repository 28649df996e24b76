"""Prometheus exposition of mecha's counters.

Hot paths only bump plain integer attributes; this collector reads them when
/metrics is scraped, so counting costs nothing per byte or per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from proxy.listener import Listener
    from proxy.upstream.cluster import Cluster

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


T = TypeVar("T")
Row = tuple[str, str, str, Callable[[T], float]]
"""(name, help, "counter" or "gauge", how to read the value off one object)"""


def _families(
    prefix: str, label: str, rows: Iterable[Row[T]], objects: list[tuple[str, T]]
) -> Iterator[Metric]:
    """One labelled family per row, with one sample per object."""
    for name, documentation, kind, value in rows:
        family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = family_type(f"{prefix}_{name}", documentation, labels=[label])
        for label_value, item in objects:
            family.add_metric([label_value], value(item))
        yield family


_LISTENER_ROWS: list[Row[Listener]] = [
    ("downstream_cx", "Downstream connections accepted", "counter",
     lambda li: li.stats.cx_total),
    ("downstream_cx_active", "Downstream connections open", "gauge",
     lambda li: len(li.connections)),
    ("downstream_cx_overflow", "Connections refused by max_connections", "counter",
     lambda li: li.stats.cx_overflow),
    ("downstream_cx_idle_timeout", "Connections closed by their idle timeout", "counter",
     lambda li: li.stats.idle_timeouts),
    ("downstream_cx_idle_reclaimed",
     "Idle connections closed to make room for new ones at max_connections", "counter",
     lambda li: li.stats.idle_reclaimed),
    ("downstream_cx_overload_idle_closed", "Idle connections closed by the overload manager",
     "counter", lambda li: li.stats.idle_shed),
    ("downstream_cx_accept_exhausted",
     "accept() failures for want of file descriptors or kernel memory (EMFILE, ENFILE)",
     "counter", lambda li: li.stats.accept_exhausted),
    ("downstream_cx_filter_errors", "Connections closed because a filter failed", "counter",
     lambda li: li.stats.filter_errors),
    ("no_filter_chain", "Connections closed because no filter chain matched", "counter",
     lambda li: li.stats.no_filter_chain),
    ("listener_filter_timeouts", "Listener filters that did not decide in time", "counter",
     lambda li: li.stats.listener_filter_timeouts),
    ("ssl_handshake_error", "Downstream TLS handshakes that failed (connection closed)",
     "counter", lambda li: li.stats.ssl_handshake_errors),
    ("downstream_bytes_received", "Bytes read from downstream", "counter",
     lambda li: li.bytes_received),
    ("downstream_bytes_sent", "Bytes written to downstream", "counter",
     lambda li: li.bytes_sent),
]  # fmt: skip

_CLUSTER_ROWS: list[Row[Cluster]] = [
    ("upstream_cx", "Upstream connections attempted", "counter",
     lambda c: c.stats.cx_total),
    ("upstream_cx_active", "Upstream connections open or opening", "gauge",
     lambda c: c.cx_active),
    ("upstream_cx_connect_fail", "Upstream connection failures (timeouts included)", "counter",
     lambda c: c.stats.cx_connect_fail),
    ("upstream_cx_connect_timeout", "Upstream connect timeouts", "counter",
     lambda c: c.stats.cx_connect_timeout),
    ("upstream_cx_overflow", "Connections refused by the max_connections breaker", "counter",
     lambda c: c.stats.cx_overflow),
    ("upstream_cx_ssl_handshake_error", "Upstream TLS handshakes that failed", "counter",
     lambda c: c.stats.cx_ssl_handshake_error),
    ("upstream_bytes_sent", "Bytes written to upstreams", "counter",
     lambda c: c.bytes_sent),
    ("upstream_bytes_received", "Bytes read from upstreams", "counter",
     lambda c: c.bytes_received),
    ("upstream_rq", "Requests sent to the cluster's pools", "counter",
     lambda c: c.stats.rq_total),
    ("upstream_rq_active", "Requests in flight on upstream connections", "gauge",
     lambda c: c.rq_active),
    ("upstream_rq_pending_overflow", "Requests refused by max_pending_requests", "counter",
     lambda c: c.stats.rq_pending_overflow),
    ("upstream_rq_overflow", "Requests refused by max_requests", "counter",
     lambda c: c.stats.rq_overflow),
    ("upstream_rq_retry", "Retries", "counter", lambda c: c.stats.rq_retry),
    ("upstream_rq_retry_overflow", "Retries refused by max_retries or the retry budget",
     "counter", lambda c: c.stats.rq_retry_overflow),
    ("upstream_rq_timeout", "Requests that timed out (route or per-try)", "counter",
     lambda c: c.stats.rq_timeout),
    ("outlier_ejections", "Endpoints ejected by outlier detection", "counter",
     lambda c: c.outlier.ejections_total if c.outlier else 0),
    ("membership_total", "Endpoints in the cluster", "gauge",
     lambda c: len(c.endpoints)),
    ("membership_healthy", "Healthy endpoints in the cluster", "gauge",
     lambda c: c.healthy_count),
    ("dns_failures", "Failed DNS resolutions", "counter",
     lambda c: c.stats.dns_failures),
]  # fmt: skip


class ServerCollector(Collector):
    def __init__(
        self,
        listeners: Callable[[], Iterable[Listener]],
        clusters: Callable[[], Iterable[Cluster]],
    ) -> None:
        self._listeners = listeners
        self._clusters = clusters

    def collect(self) -> Iterator[Metric]:
        listeners = [(li.name, li) for li in self._listeners()]
        clusters = [(c.name, c) for c in self._clusters()]
        yield from _families("mecha_listener", "listener", _LISTENER_ROWS, listeners)
        yield self._filter_events(listeners)
        yield from _families("mecha_cluster", "cluster", _CLUSTER_ROWS, clusters)
        yield from self._health_checks(c for _, c in clusters)

    @staticmethod
    def _filter_events(listeners: list[tuple[str, Listener]]) -> Metric:
        events = CounterMetricFamily(
            "mecha_listener_filter_events",
            "Events counted by listener filters (e.g. original_dst_missing)",
            labels=["listener", "event"],
        )
        for name, listener in listeners:
            for event, count in sorted(listener.stats.filter_events.items()):
                events.add_metric([name, event], count)
        return events

    def _health_checks(self, clusters: Iterable[Cluster]) -> Iterator[Metric]:
        checks = CounterMetricFamily(
            "mecha_cluster_health_check",
            "Active health check results",
            labels=["cluster", "result"],
        )
        healthy = GaugeMetricFamily(
            "mecha_endpoint_healthy",
            "1 when the endpoint passes health checks",
            labels=["cluster", "endpoint"],
        )
        for cluster in clusters:
            checks.add_metric([cluster.name, "success"], cluster.stats.hc_success)
            checks.add_metric([cluster.name, "failure"], cluster.stats.hc_failure)
            for endpoint in cluster.endpoints:
                healthy.add_metric([cluster.name, str(endpoint.address)], int(endpoint.healthy))
        yield checks
        yield healthy


class Metrics:
    """The registry behind /metrics; other parts of mecha add collectors to it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
