"""Configuration of the HTTP connection manager (`name: http` in a listener's filters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from filters.http import registry as http_registry
from filters.http.route import RouteTable, parse_route_table
from proxy.config.context import ParseContext
from proxy.config.reader import Node

CODECS = ("auto", "http1", "http2")


@dataclass(frozen=True, slots=True)
class HttpFilterConfig:
    name: str
    config: Any


@dataclass(frozen=True, slots=True)
class HcmConfig:
    route_table: RouteTable
    http_filters: tuple[HttpFilterConfig, ...]
    """Decoder order; the router is always last (added when not listed)."""
    codec: str = "auto"
    access_log: str | None = "stdout"
    generate_request_id: bool = True
    append_forwarded_for: bool = True
    generate_traceparent: bool = True
    max_request_headers: int = 64 * 1024
    max_request_body: int | None = None
    retry_buffer_limit: int = 64 * 1024
    """Request bodies up to this size are kept so that a retry can replay them."""
    idle_timeout: float | None = 3600.0
    max_concurrent_streams: int = 100
    request_headers_timeout: float | None = 10.0
    """HTTP/1: from a head's first byte to its last; late, the client gets 408 and is closed."""


def parse_config(node: Node, context: ParseContext) -> HcmConfig:
    node.only("codec", "route_config", "http_filters", "access_log", "generate_request_id",
              "append_forwarded_for", "generate_traceparent", "max_request_headers",
              "max_request_body", "retry_buffer_limit", "idle_timeout",
              "max_concurrent_streams", "request_headers_timeout")  # fmt: skip
    access_log = node.child("access_log").value
    log_path = "off" if access_log is False else node.text("access_log", "stdout")
    max_body = node.size("max_request_body", 0)
    idle = node.duration("idle_timeout", 3600.0)
    return HcmConfig(
        route_table=_route_table(node, context),
        http_filters=_http_filters(node, context),
        codec=node.choice("codec", CODECS, "auto"),
        access_log=None if log_path == "off" else log_path,
        generate_request_id=node.flag("generate_request_id", True),
        append_forwarded_for=node.flag("append_forwarded_for", True),
        generate_traceparent=node.flag("generate_traceparent", True),
        max_request_headers=node.size("max_request_headers", 64 * 1024, minimum=1024),
        max_request_body=max_body or None,
        retry_buffer_limit=node.size("retry_buffer_limit", 64 * 1024),
        idle_timeout=idle or None,
        max_concurrent_streams=node.integer("max_concurrent_streams", 100, minimum=1),
        request_headers_timeout=node.duration("request_headers_timeout", 10.0) or None,
    )


def _route_table(node: Node, context: ParseContext) -> RouteTable:
    """Optional when a filter answers requests itself (runtime_api, runtime_grpc): no routes,
    so anything else is 404."""
    if node.has("route_config"):
        return parse_route_table(node.section("route_config"), context)
    names = [item.child("name").value for item in node.items("http_filters")]
    if not {"runtime_api", "runtime_grpc"}.intersection(names):
        node.problem("required value is missing", "route_config")
    return RouteTable(())


def http_filter(name: str, node: Node, context: ParseContext) -> HttpFilterConfig:
    """A filter's entry made in code (e.g. the router added when not listed)."""
    spec = http_registry.lookup(name)
    assert spec is not None, name
    return HttpFilterConfig(name, spec.parse_config(node, context))


def _http_filters(node: Node, context: ParseContext) -> tuple[HttpFilterConfig, ...]:
    items = node.items("http_filters")
    result: list[HttpFilterConfig] = []
    for index, item in enumerate(items):
        if not item.expect_mapping():
            continue
        item.only("name", "config")
        name = item.text("name")
        spec = http_registry.lookup(name) if name else None
        if name and spec is None:
            known = ", ".join(http_registry.names())
            item.problem(f"unknown HTTP filter {name!r} (known: {known})", "name")
        if spec is None:
            continue
        if spec.terminal and index != len(items) - 1:
            item.problem(f"{name} is a terminal filter and must be last", "name")
        result.append(HttpFilterConfig(name, spec.parse_config(item.section("config"), context)))
    if not result or result[-1].name != "router":
        result.append(http_filter("router", Node({}), context))
    return tuple(result)
