"""Per-request access log lines and per-route / per-cluster request stats.

Stats are plain counters and fixed-bucket histograms updated with one dict lookup and
one bisect per request; `HttpStatsCollector` turns them into Prometheus families when
/metrics is scraped.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.stream_info import HttpStreamInfo

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def _quote(value: bytes | str | None) -> str:
    if value is None:
        return "-"
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text.replace('"', "%22")


def format_access_log(info: HttpStreamInfo) -> str:
    """Envoy's default line: start, request line, status, flags, bytes, durations, ids."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(info.start_time))
    millis = int(info.start_time * 1000) % 1000
    flags = ",".join(sorted(flag.value for flag in info.flags)) or "-"
    service = (
        "-" if info.upstream_service_time is None else str(int(info.upstream_service_time * 1000))
    )
    reason = f' "{_quote(info.failure_reason)}"' if info.failure_reason else ""
    return (
        f'[{stamp}.{millis:03d}Z] "{_quote(info.method)} {_quote(info.path)} '
        f'{_quote(info.protocol)}" {info.status} {flags} {info.body_bytes_received} '
        f"{info.body_bytes_sent} {int(info.duration * 1000)} {service} "
        f'"{_quote(info.forwarded_for)}" "{_quote(info.user_agent)}" "{_quote(info.request_id)}" '
        f'"{_quote(info.authority)}" "{_quote(info.upstream_host)}" '
        f"route={info.route_name or '-'} cluster={info.upstream_cluster or '-'}{reason}"
    )


class _Series:
    """Requests by status class plus a latency histogram, for one (route, cluster)."""

    __slots__ = ("buckets", "by_class", "count", "total")

    def __init__(self) -> None:
        self.by_class = [0, 0, 0, 0, 0]
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0


class HttpStats:
    """Shared by every connection of one HTTP connection manager."""

    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.series: dict[tuple[str, str], _Series] = {}
        self.downstream_rq = 0
        self.downstream_rq_active = 0
        self.protocol_errors = 0
        self.request_headers_timeouts = 0
        self.overload_refused = 0
        self.h2_floods = 0
        """HTTP/2 connections ended with GOAWAY(ENHANCE_YOUR_CALM) past a flood budget."""

    def record(self, info: HttpStreamInfo) -> None:
        """Count a finished request (once per request: `_Series.observe`, inlined)."""
        key = (info.route_name or "", info.upstream_cluster or "")
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        end = info.end_monotonic
        seconds = (time.monotonic() if end is None else end) - info.start_monotonic
        index = info.status // 100 - 1
        if 0 <= index < 5:
            series.by_class[index] += 1
        series.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        series.count += 1
        series.total += seconds


class HttpStatsCollector(Collector):
    def __init__(self, stats: list[HttpStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mecha_http_requests", "HTTP requests by route, cluster and status class",
            labels=["listener", "route", "cluster", "code_class"],
        )  # fmt: skip
        latency = HistogramMetricFamily(
            "mecha_http_request_duration_seconds", "HTTP request duration, first byte to last",
            labels=["listener", "route", "cluster"],
        )  # fmt: skip
        downstream = CounterMetricFamily(
            "mecha_http_downstream_rq", "HTTP requests received", labels=["listener"]
        )
        errors = CounterMetricFamily(
            "mecha_http_downstream_protocol_errors", "Malformed HTTP from clients",
            labels=["listener"],
        )  # fmt: skip
        header_timeouts = CounterMetricFamily(
            "mecha_http_downstream_rq_header_timeout",
            "Requests whose head did not arrive within request_headers_timeout (408)",
            labels=["listener"],
        )
        refused = CounterMetricFamily(
            "mecha_http_downstream_rq_overload_refused",
            "Requests refused by the overload manager (503 / REFUSED_STREAM)",
            labels=["listener"],
        )
        floods = CounterMetricFamily(
            "mecha_http_downstream_cx_h2_flood",
            "HTTP/2 connections ended past a frame flood budget (GOAWAY ENHANCE_YOUR_CALM)",
            labels=["listener"],
        )
        for stats in self.stats:
            floods.add_metric([stats.listener], stats.h2_floods)
            downstream.add_metric([stats.listener], stats.downstream_rq)
            errors.add_metric([stats.listener], stats.protocol_errors)
            header_timeouts.add_metric([stats.listener], stats.request_headers_timeouts)
            refused.add_metric([stats.listener], stats.overload_refused)
            for (route, cluster), series in list(stats.series.items()):
                labels = [stats.listener, route, cluster]
                for code_class, count in zip(CLASSES, series.by_class, strict=True):
                    if count:
                        requests.add_metric([*labels, code_class], count)
                cumulative, buckets = 0, []
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), series.buckets, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                latency.add_metric(labels, buckets, series.total)
        yield from (requests, latency, downstream, errors, header_timeouts, refused, floods)
