"""Per-command counters and latency histograms, exported when /metrics is scraped."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
OTHER = b"OTHER"
"""Unknown command names share one series, so clients cannot grow the label set."""


class CommandSeries:
    __slots__ = ("buckets", "count", "errors", "total")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float, error: bool) -> None:
        self.count += 1
        self.errors += error
        self.total += seconds
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1


class RedisStats:
    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.commands: dict[bytes, CommandSeries] = {}
        self.protocol_errors = 0
        self.slow_commands = 0
        self.pinned_connections = 0
        """Upstream connections of clients' own (transactions, blocking), open now."""
        self.held_limit = 0
        """Times a client was not read: MAX_HELD commands waited behind its blocked one."""
        self.output_buffer_closed = 0
        """Clients closed for leaving more than client_output_buffer_limit of replies unread."""

    def series(self, name: bytes) -> CommandSeries:
        series = self.commands.get(name)
        if series is None:
            series = self.commands[name] = CommandSeries()
        return series


class RedisStatsCollector(Collector):
    def __init__(self) -> None:
        self.stats: list[RedisStats] = []

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily("mecha_redis_commands", "Redis commands by name",
                                    labels=["listener", "command"])  # fmt: skip
        errors = CounterMetricFamily("mecha_redis_command_errors",
                                     "Redis commands answered with an error",
                                     labels=["listener", "command"])  # fmt: skip
        latency = HistogramMetricFamily("mecha_redis_command_duration_seconds",
                                        "From command received to reply ready",
                                        labels=["listener", "command"])  # fmt: skip
        protocol = CounterMetricFamily("mecha_redis_protocol_errors",
                                       "Connections closed for malformed RESP",
                                       labels=["listener"])  # fmt: skip
        slow = CounterMetricFamily("mecha_redis_slow_commands",
                                   "Commands slower than slow_command_threshold",
                                   labels=["listener"])  # fmt: skip
        pinned = GaugeMetricFamily("mecha_redis_pinned_upstream_connections",
                                   "Upstream connections of clients' own (transactions, "
                                   "blocking commands)", labels=["listener"])  # fmt: skip
        held = CounterMetricFamily("mecha_redis_held_commands_limit",
                                   "Clients not read because too many commands waited behind "
                                   "a blocked one", labels=["listener"])  # fmt: skip
        unread = CounterMetricFamily("mecha_redis_client_output_buffer_closed",
                                     "Clients closed for leaving more than "
                                     "client_output_buffer_limit of replies unread",
                                     labels=["listener"])  # fmt: skip
        for stats in self.stats:
            unread.add_metric([stats.listener], stats.output_buffer_closed)
            protocol.add_metric([stats.listener], stats.protocol_errors)
            slow.add_metric([stats.listener], stats.slow_commands)
            pinned.add_metric([stats.listener], stats.pinned_connections)
            held.add_metric([stats.listener], stats.held_limit)
            for name, series in list(stats.commands.items()):
                labels = [stats.listener, name.decode("latin-1").lower()]
                total.add_metric(labels, series.count)
                errors.add_metric(labels, series.errors)
                cumulative, buckets = 0, []
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), series.buckets, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                latency.add_metric(labels, buckets, series.total)
        yield from (total, errors, latency, protocol, slow, pinned, held, unread)
