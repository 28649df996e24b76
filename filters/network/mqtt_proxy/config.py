"""Configuration of `mqtt_proxy`."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.mqtt import is_topic_filter
from proxy.config.context import ParseContext
from proxy.config.reader import Node

ACTIONS = ("publish", "subscribe", "both")


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Send matching clients to `cluster` (first rule that matches wins)."""

    cluster: str
    username: str | None = None
    username_prefix: str | None = None
    client_id_prefix: str | None = None

    def matches(self, client_id: str, username: str | None) -> bool:
        if self.username is not None and username != self.username:
            return False
        if self.username_prefix is not None and not (username or "").startswith(
            self.username_prefix
        ):
            return False
        return self.client_id_prefix is None or client_id.startswith(self.client_id_prefix)


@dataclass(frozen=True, slots=True)
class AclRule:
    topic: str
    """A topic filter (+ and # wildcards) that the topic or subscription must fall under."""
    action: str = "both"
    allow: bool = True
    users: frozenset[str] | None = None
    """Only for these usernames (None: everyone)."""


@dataclass(frozen=True, slots=True)
class MqttProxyConfig:
    cluster: str
    routes: tuple[RouteRule, ...] = ()
    acl: tuple[AclRule, ...] = ()
    acl_default_allow: bool = True
    max_packet_size: int = 1 << 20
    connect_timeout: float = 10.0
    """A client that has not sent CONNECT by then is closed."""
    max_connections_per_second: float | None = None
    connection_burst: int = 100
    topic_stats: tuple[str, ...] = ()
    """Topic filters to count messages and bytes under (and `other`)."""


def parse_config(node: Node, context: ParseContext) -> MqttProxyConfig:
    node.only("cluster", "routes", "acl", "acl_default", "max_packet_size", "connect_timeout",
              "rate_limit", "topic_stats")  # fmt: skip
    rate = node.section("rate_limit")
    rate.only("connections_per_second", "burst")
    per_second = rate.number("connections_per_second", 0.0, minimum=0.0)
    return MqttProxyConfig(
        cluster=context.cluster(node),
        routes=tuple(_route(item, context) for item in node.items("routes")),
        acl=tuple(_acl(item) for item in node.items("acl")),
        acl_default_allow=node.choice("acl_default", ("allow", "deny"), "allow") == "allow",
        max_packet_size=node.size("max_packet_size", 1 << 20, minimum=64),
        connect_timeout=node.duration("connect_timeout", 10.0, positive=True),
        max_connections_per_second=per_second or None,
        connection_burst=rate.integer("burst", 100, minimum=1),
        topic_stats=tuple(_filters(node, "topic_stats")),
    )


def _route(node: Node, context: ParseContext) -> RouteRule:
    node.only("cluster", "username", "username_prefix", "client_id_prefix")
    return RouteRule(
        cluster=context.cluster(node),
        username=node.text("username") if node.has("username") else None,
        username_prefix=node.text("username_prefix") if node.has("username_prefix") else None,
        client_id_prefix=node.text("client_id_prefix") if node.has("client_id_prefix") else None,
    )


def _acl(node: Node) -> AclRule:
    node.only("topic", "action", "allow", "users")
    topic = node.text("topic")
    if topic and not is_topic_filter(topic, shared=False):
        node.problem(f"{topic!r} is not a valid topic filter", "topic")
    users = node.child("users").value
    if users is not None and not (
        isinstance(users, list) and all(isinstance(u, str) for u in users)
    ):
        node.problem("expected a list of usernames", "users")
        users = None
    return AclRule(
        topic=topic,
        action=node.choice("action", ACTIONS, "both"),
        allow=node.flag("allow", True),
        users=frozenset(users) if users is not None else None,
    )


def _filters(node: Node, key: str) -> list[str]:
    value = node.child(key).value or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        node.problem("expected a list of topic filters", key)
        return []
    for topic in value:
        if not is_topic_filter(topic, shared=False):
            node.problem(f"{topic!r} is not a valid topic filter", key)
    return value
