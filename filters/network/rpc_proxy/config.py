"""Configuration of `rpc_proxy`."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.rpc import CODECS
from proxy.config.context import ParseContext
from proxy.config.reader import Node

UPSTREAM_CONNECTIONS = ("shared", "per_client")


@dataclass(frozen=True, slots=True)
class RpcRoute:
    name: str
    cluster: str
    method: str | None = None
    """Exact method name, or None with `prefix`."""
    prefix: str = ""
    timeout: float | None = 5.0
    idempotent: bool = False
    """Only idempotent methods are retried (after a timeout or a failed connection)."""
    retries: int = 0
    """Retries of an idempotent method (1 unless configured)."""

    def matches(self, method: str) -> bool:
        if self.method is not None:
            return method == self.method
        return method.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class RpcProxyConfig:
    codec: str
    routes: tuple[RpcRoute, ...]
    max_message_size: int = 4 << 20
    connections_per_endpoint: int = 1
    upstream_connections: str = "shared"
    """shared: every caller's calls multiplexed on a few connections per endpoint;
    per_client: each caller has its own upstream connection, pinned to one endpoint per
    cluster, and requests the server sends (Neovim's rpcrequest) reach that caller."""
    access_log: str | None = None
    idle_timeout: float | None = 3600.0
    """No bytes either way for this long (a partial message included): the caller is closed."""

    @property
    def per_client(self) -> bool:
        return self.upstream_connections == "per_client"


def parse_config(node: Node, context: ParseContext) -> RpcProxyConfig:
    node.only("codec", "routes", "max_message_size", "connections_per_endpoint",
              "upstream_connections", "access_log", "idle_timeout")  # fmt: skip
    routes = tuple(
        _route(item, context, i) for i, item in enumerate(node.items("routes", required=True))
    )
    if node.has("routes") and not routes:
        node.problem("at least one route is needed", "routes")
    access_log = node.child("access_log").value
    log_path = "off" if access_log is False else node.text("access_log", "off")
    return RpcProxyConfig(
        codec=node.choice("codec", CODECS, "msgpack_rpc"),
        routes=routes,
        max_message_size=node.size("max_message_size", 4 << 20, minimum=64),
        connections_per_endpoint=node.integer("connections_per_endpoint", 1, minimum=1, maximum=64),
        upstream_connections=node.choice("upstream_connections", UPSTREAM_CONNECTIONS, "shared"),
        access_log=None if log_path == "off" else log_path,
        idle_timeout=node.duration("idle_timeout", 3600.0) or None,
    )


def _route(node: Node, context: ParseContext, index: int) -> RpcRoute:
    node.only("name", "match", "cluster", "timeout", "idempotent", "retries")
    match = node.section("match")
    match.only("method", "prefix")
    if match.has("method") == match.has("prefix") and (match.has("method") or node.has("match")):
        match.problem("use exactly one of: method, prefix")
    timeout = node.duration("timeout", 5.0)
    idempotent = node.flag("idempotent", False)
    return RpcRoute(
        name=node.text("name", f"route{index}"),
        cluster=context.cluster(node),
        method=match.text("method") if match.has("method") else None,
        prefix=match.text("prefix", ""),
        timeout=timeout or None,
        idempotent=idempotent,
        retries=node.integer("retries", 1 if idempotent else 0, minimum=0, maximum=5),
    )
