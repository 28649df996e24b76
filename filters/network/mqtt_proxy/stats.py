"""MQTT counters: connections by outcome, ACL denials, messages and bytes per topic pattern."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from protocols.mqtt import TopicMatcher

OTHER = "other"
_CACHE_LIMIT = 10_000


class MqttStats:
    def __init__(self, listener: str, patterns: tuple[str, ...]) -> None:
        self.listener = listener
        self.connections: dict[str, int] = {}
        self.denials: dict[str, int] = {}
        self.messages: dict[tuple[str, str], list[int]] = {}
        """(pattern, direction) -> [messages, bytes]"""
        self._matcher: TopicMatcher[str] = TopicMatcher()
        for pattern in patterns:
            self._matcher.add(pattern, pattern)
        self._cache: dict[str, tuple[str, ...]] = {}

    def connection(self, outcome: str) -> None:
        self.connections[outcome] = self.connections.get(outcome, 0) + 1

    def denial(self, action: str) -> None:
        self.denials[action] = self.denials.get(action, 0) + 1

    def message(self, topic: str, size: int, direction: str) -> None:
        patterns = self._cache.get(topic)
        if patterns is None:
            patterns = tuple(self._matcher.match(topic)) or (OTHER,)
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[topic] = patterns
        for pattern in patterns:
            counts = self.messages.get((pattern, direction))
            if counts is None:
                counts = self.messages[(pattern, direction)] = [0, 0]
            counts[0] += 1
            counts[1] += size


class MqttStatsCollector(Collector):
    def __init__(self) -> None:
        self.stats: list[MqttStats] = []

    def collect(self) -> Iterator[Metric]:
        connections = CounterMetricFamily("mecha_mqtt_connections", "MQTT connections by outcome",
                                          labels=["listener", "outcome"])  # fmt: skip
        denials = CounterMetricFamily("mecha_mqtt_acl_denials",
                                      "Publishes and subscriptions refused",
                                      labels=["listener", "action"])  # fmt: skip
        labels = ["listener", "pattern", "direction"]
        messages = CounterMetricFamily("mecha_mqtt_messages", "PUBLISH packets", labels=labels)
        sizes = CounterMetricFamily("mecha_mqtt_message_bytes", "PUBLISH bytes", labels=labels)
        for stats in self.stats:
            for outcome, count in stats.connections.items():
                connections.add_metric([stats.listener, outcome], count)
            for action, count in stats.denials.items():
                denials.add_metric([stats.listener, action], count)
            for (pattern, direction), (count, size) in list(stats.messages.items()):
                messages.add_metric([stats.listener, pattern, direction], count)
                sizes.add_metric([stats.listener, pattern, direction], size)
        yield from (connections, denials, messages, sizes)
