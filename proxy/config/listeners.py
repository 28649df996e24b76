"""Listeners in the config: address and limits, listener filters, filter chains.

`filters:` is the short form of one default filter chain; `filter_chains:` lists chains
with `match:` conditions (protocol, TLS server names, ALPN, destination port), tried in
order, the one without conditions being the default. `tls:` on a chain (or on a listener
with `filters:`) terminates TLS before that chain's filters.
"""

from __future__ import annotations

from filters.listener import registry as listener_registry
from filters.network import registry
from proxy.config.context import ParseContext
from proxy.config.model import (
    FilterChainConfig,
    FilterChainMatch,
    FilterConfig,
    ListenerConfig,
)
from proxy.config.reader import Node
from proxy.config.tls import HTTP_ALPN, DownstreamTls, parse_downstream_tls
from proxy.config.units import Address

PLACEHOLDER = Address("127.0.0.1", 0)
HTTP_FILTERS = ("http", "runtime_api")
"""Filters behind which a TLS chain offers ALPN h2 and http/1.1 by default."""


def parse_listener(node: Node, context: ParseContext) -> ListenerConfig:
    if not node.expect_mapping():
        return ListenerConfig("", PLACEHOLDER, ())
    node.only(
        "name", "address", "filters", "filter_chains", "listener_filters",
        "listener_filters_timeout", "reuse_port", "backlog", "max_connections",
        "buffer_limit", "idle_timeout", "tls",
    )  # fmt: skip
    max_connections = node.integer("max_connections", 0, minimum=0)
    idle_timeout = node.duration("idle_timeout", 0.0)
    return ListenerConfig(
        name=node.text("name"),
        address=node.address("address"),
        filter_chains=_filter_chains(node, context),
        listener_filters=_listener_filters(node, context),
        listener_filters_timeout=node.duration("listener_filters_timeout", 15.0, positive=True),
        reuse_port=node.flag("reuse_port", False),
        backlog=node.integer("backlog", 1024, minimum=1),
        max_connections=max_connections or None,
        buffer_limit=node.size("buffer_limit", 1 << 20, minimum=1024),
        idle_timeout=idle_timeout or None,
    )


def _filter_chains(listener: Node, context: ParseContext) -> tuple[FilterChainConfig, ...]:
    if listener.has("filters") == listener.has("filter_chains"):
        listener.problem("a listener needs exactly one of: filters, filter_chains")
    if listener.has("filters"):
        filters = _filters(listener, context)
        tls = _tls(listener, filters, context)
        return (FilterChainConfig("default", FilterChainMatch(), filters, tls),)
    if listener.has("tls"):
        listener.problem("with filter_chains, put tls: on each chain that terminates TLS", "tls")
    chains = []
    for index, node in enumerate(listener.items("filter_chains")):
        if not node.expect_mapping():
            continue
        node.only("name", "match", "filters", "tls")
        filters = _filters(node, context)
        chains.append(FilterChainConfig(
            name=node.text("name", f"chain{index}"),
            match=_match(node.section("match")),
            filters=filters,
            tls=_tls(node, filters, context),
        ))  # fmt: skip
    if listener.has("filter_chains") and not chains:
        listener.problem("at least one filter chain is needed", "filter_chains")
    defaults = [chain.name for chain in chains if chain.match.is_default]
    if len(defaults) > 1:
        listener.problem(f"more than one chain without match: {', '.join(defaults)}",
                         "filter_chains")  # fmt: skip
    return tuple(chains)


def _tls(
    holder: Node, filters: tuple[FilterConfig, ...], context: ParseContext
) -> DownstreamTls | None:
    """ALPN defaults to what the chain's terminal filter speaks: h2 and http/1.1 for HTTP."""
    alpn: tuple[str, ...] = ()
    if filters and filters[-1].name in HTTP_FILTERS:
        codec = getattr(filters[-1].config, "codec", "auto")
        alpn = {"http1": ("http/1.1",), "http2": ("h2",)}.get(codec, HTTP_ALPN)
    return parse_downstream_tls(holder.child("tls"), context.base_dir, alpn)


def _match(node: Node) -> FilterChainMatch:
    node.only("protocol", "server_names", "alpn", "destination_port")
    protocols = _names(node, "protocol")
    raw = node.child("destination_port").value
    candidates = raw if isinstance(raw, list) else [] if raw is None else [raw]
    ports = [p for p in candidates if isinstance(p, int) and 0 < p < 65536]
    if len(ports) != len(candidates):
        node.problem("expected a port or a list of ports", "destination_port")
    server_names = _names(node, "server_names")
    return FilterChainMatch(
        protocols=frozenset(protocols) if protocols else None,
        server_names=tuple(n.lower() for n in server_names) if server_names else None,
        alpn=frozenset(_names(node, "alpn")) or None,
        destination_ports=frozenset(ports) if ports else None,
    )


def _names(node: Node, key: str) -> list[str]:
    value = node.child(key).value
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        node.problem("expected a name or a list of names", key)
        return []
    return value


def _listener_filters(listener: Node, context: ParseContext) -> tuple[FilterConfig, ...]:
    result = []
    for node in listener.items("listener_filters"):
        if not node.expect_mapping():
            continue
        node.only("name", "config")
        name = node.text("name")
        spec = listener_registry.lookup(name) if name else None
        if name and spec is None:
            known = ", ".join(listener_registry.names())
            node.problem(f"unknown listener filter {name!r} (known: {known})", "name")
            continue
        if spec is not None:
            result.append(FilterConfig(name, spec.parse_config(node.section("config"), context)))
    return tuple(result)


def _filters(holder: Node, context: ParseContext) -> tuple[FilterConfig, ...]:
    nodes = holder.items("filters", required=True)
    if holder.has("filters") and not nodes:
        holder.problem("at least one filter is needed", "filters")
    result = []
    for index, node in enumerate(nodes):
        if not node.expect_mapping():
            continue
        node.only("name", "config")
        name = node.text("name")
        spec = registry.lookup(name) if name else None
        if name and spec is None:
            node.problem(f"unknown filter {name!r} (known: {', '.join(registry.names())})", "name")
        if spec is None:
            continue
        if spec.terminal and index != len(nodes) - 1:
            node.problem(f"{name} is a terminal filter and must be last in the chain", "name")
        result.append(FilterConfig(name, spec.parse_config(node.section("config"), context)))
    return tuple(result)
