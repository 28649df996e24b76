"""Per-method RPC counters and latency histograms."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_METHODS = 1000
"""Method names come from clients: beyond this many, new ones share the label "other"."""


LISTENER_COUNTERS = (
    ("server_requests", "Requests from upstream servers relayed to their client (per_client)"),
    ("server_requests_refused", "Requests from upstream servers the proxy answered itself"),
    ("server_notifications", "Notifications from upstream servers relayed to their client"),
    ("probations", "Clients set apart after an upstream closed a shared connection with "
                   "their message unread"),
    ("probation_overflow", "Suspect clients left on shared connections (too many set apart)"),
    ("cut_off", "Clients cut off: upstreams closed connections twice with their message unread"),
)  # fmt: skip
"""RpcStats attributes exported as mecha_rpc_<name>_total{listener}."""


class MethodSeries:
    __slots__ = ("buckets", "calls", "errors", "timeouts", "total")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.timeouts = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float, error: bool) -> None:
        self.calls += 1
        self.errors += error
        self.total += seconds
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1


class RpcStats:
    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.methods: dict[str, MethodSeries] = {}
        self.notifications = 0
        self.protocol_errors = 0
        self.no_route = 0
        self.server_requests = 0
        """Requests from servers relayed to a caller (per_client)."""
        self.server_requests_refused = 0
        self.server_notifications = 0
        self.probations = 0
        """Callers set apart after an upstream closed a shared connection on their message."""
        self.probation_overflow = 0
        """Suspects left on the shared connections: MAX_ON_PROBATION callers were set apart."""
        self.cut_off = 0

    def series(self, method: str) -> MethodSeries:
        series = self.methods.get(method)
        if series is None:
            if len(self.methods) >= MAX_METHODS:
                method = "other"
                series = self.methods.get(method)
            if series is None:
                series = self.methods[method] = MethodSeries()
        return series


class RpcStatsCollector(Collector):
    def __init__(self) -> None:
        self.stats: list[RpcStats] = []

    def collect(self) -> Iterator[Metric]:
        labels = ["listener", "method"]
        calls = CounterMetricFamily("mecha_rpc_calls", "RPC calls answered", labels=labels)
        errors = CounterMetricFamily("mecha_rpc_call_errors", "RPC calls answered with an error",
                                     labels=labels)  # fmt: skip
        timeouts = CounterMetricFamily("mecha_rpc_call_timeouts", "RPC calls that timed out",
                                       labels=labels)  # fmt: skip
        latency = HistogramMetricFamily("mecha_rpc_call_duration_seconds", "RPC call duration",
                                        labels=labels)  # fmt: skip
        notes = CounterMetricFamily("mecha_rpc_notifications", "One-way messages forwarded",
                                    labels=["listener"])  # fmt: skip
        broken = CounterMetricFamily("mecha_rpc_protocol_errors",
                                     "Connections closed for malformed messages",
                                     labels=["listener"])  # fmt: skip
        per_listener = [
            CounterMetricFamily(f"mecha_rpc_{name}", text, labels=["listener"])
            for name, text in LISTENER_COUNTERS
        ]
        for stats in self.stats:
            notes.add_metric([stats.listener], stats.notifications)
            broken.add_metric([stats.listener], stats.protocol_errors)
            for family, (name, _) in zip(per_listener, LISTENER_COUNTERS, strict=True):
                family.add_metric([stats.listener], getattr(stats, name))
            for method, series in list(stats.methods.items()):
                key = [stats.listener, method]
                calls.add_metric(key, series.calls)
                errors.add_metric(key, series.errors)
                timeouts.add_metric(key, series.timeouts)
                cumulative, buckets = 0, []
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), series.buckets, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                latency.add_metric(key, buckets, series.total)
        yield from (calls, errors, timeouts, latency, notes, broken, *per_listener)
