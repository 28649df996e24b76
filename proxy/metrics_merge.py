"""One /metrics for several worker processes: their expositions merged sample by sample.

Counters, histogram buckets, sums and counts add up per label set; `_created` timestamps
keep the earliest. Gauges add up too (open connections, requests in flight), except those
that describe state every worker sees alike (endpoint health, membership, config version),
which take the largest. Process and interpreter metrics are not summed: each worker's keep
a `worker` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

PER_PROCESS_PREFIXES = ("process_", "python_")
SHARED_STATE_GAUGES = frozenset({
    "mecha_endpoint_healthy",
    "mecha_cluster_membership_total",
    "mecha_cluster_membership_healthy",
    "mecha_config_info",
})  # fmt: skip

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class _Merged(Collector):
    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}
        self.values: dict[str, dict[SampleKey, float]] = {}

    def add(self, worker: str, exposition: str) -> None:
        for family in text_string_to_metric_families(exposition):
            if family.name not in self.families:
                self.families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                self.values[family.name] = {}
            values = self.values[family.name]
            per_process = family.name.startswith(PER_PROCESS_PREFIXES)
            for sample in family.samples:
                labels = dict(sample.labels)
                if per_process:
                    labels["worker"] = worker
                key = (sample.name, tuple(labels.items()))
                values[key] = _combine(family, sample.name, values.get(key), sample.value)

    def collect(self) -> Iterator[Metric]:
        for name, family in self.families.items():
            for (sample_name, labels), value in self.values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family


def _combine(family: Metric, sample_name: str, seen: float | None, value: float) -> float:
    if seen is None:
        return value
    if sample_name.endswith("_created"):
        return min(seen, value)
    if family.type == "gauge" and family.name in SHARED_STATE_GAUGES:
        return max(seen, value)
    return seen + value


def merge(expositions: Iterable[tuple[str, str]]) -> bytes:
    """(worker label, exposition text) pairs -> one exposition."""
    merged = _Merged()
    for worker, text in expositions:
        merged.add(worker, text)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(merged)
    return generate_latest(registry)
