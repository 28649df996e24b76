"""`runtime_api` in a listener's filters: Dapr's HTTP API port (3500) in one line of config.

A connection manager with the `runtime_api` HTTP filter and the router and no routes of its
own: API paths are answered, invocations routed to the clusters that serve app ids, and
anything else is 404. Use the `http` filter with `runtime_api` in its `http_filters` to mix
the API with routes, CORS, auth or rate limits.
"""

from __future__ import annotations

from filters.http import registry as http_registry
from filters.http.route import RouteTable
from filters.network.http import config as hcm
from filters.network.http.filter import create_factory
from filters.network.registry import NetworkFilterSpec
from proxy.config.context import ParseContext
from proxy.config.reader import Node

NAME = "runtime_api"
MANAGER_KEYS = (
    "codec",
    "access_log",
    "idle_timeout",
    "max_concurrent_streams",
    "max_request_headers",
    "request_headers_timeout",
)
"""What a runtime API listener lets its connection manager be tuned by."""


def parse_config(node: Node, context: ParseContext) -> hcm.HcmConfig:
    """`internal: true`: the listener other sidecars send this app's invocations to.
    `http_filters`: HTTP filters the API's requests go through first (a Dapr httpPipeline)."""
    node.only(*MANAGER_KEYS, "internal", "http_filters")
    internal = node.flag("internal", False)
    api = hcm.http_filter(NAME, Node({"internal": True} if internal else {}), context)
    filters = (*_before_api(node, context), api)
    return api_manager(node, context, NAME, filters, codec="auto", max_streams=100)


def api_manager(
    node: Node,
    context: ParseContext,
    name: str,
    api_filters: tuple[hcm.HttpFilterConfig, ...],
    codec: str,
    max_streams: int,
) -> hcm.HcmConfig:
    """A connection manager serving `api_filters`, then the router for invocations, with no
    routes of its own and none of a proxy's request decoration (ids, forwarded-for)."""
    if context.runtime is None:
        node.problem(f"{name} serves the runtime: add a top-level `runtime:` section")
    access_log = node.child("access_log").value
    log_path = "off" if access_log is False else node.text("access_log", "off")
    return hcm.HcmConfig(
        route_table=RouteTable(()),
        http_filters=(*api_filters, hcm.http_filter("router", Node({}), context)),
        codec=node.choice("codec", hcm.CODECS, codec),
        access_log=None if log_path == "off" else log_path,
        generate_request_id=False,
        append_forwarded_for=False,
        generate_traceparent=False,
        max_request_headers=node.size("max_request_headers", 64 * 1024, minimum=1024),
        idle_timeout=node.duration("idle_timeout", 3600.0) or None,
        max_concurrent_streams=node.integer("max_concurrent_streams", max_streams, minimum=1),
        request_headers_timeout=node.duration("request_headers_timeout", 10.0) or None,
    )


def _before_api(node: Node, context: ParseContext) -> list[hcm.HttpFilterConfig]:
    result = []
    for item in node.items("http_filters"):
        if not item.expect_mapping():
            continue
        item.only("name", "config")
        name = item.text("name")
        spec = http_registry.lookup(name) if name else None
        if spec is None or spec.terminal or name == NAME:
            known = ", ".join(http_registry.names())
            item.problem(f"{name!r} cannot come before the API (known: {known}; not a terminal "
                         "one)", "name")  # fmt: skip
            continue
        config = spec.parse_config(item.section("config"), context)
        result.append(hcm.HttpFilterConfig(name, config))
    return result


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
