"""`runtime_api` in a listener's filters: Dapr's HTTP API port (3500) in one line of config.

A connection manager with the `runtime_api` HTTP filter and the router and no routes of its
own: API paths are answered, invocations routed to the clusters that serve app ids, and
anything else is 404. Use the `http` filter with `runtime_api` in its `http_filters` to mix
the API with routes, CORS, auth or rate limits.
"""

from __future__ import annotations

from filters.http.route import RouteTable
from filters.network.http import config as hcm
from filters.network.http.filter import create_factory
from filters.network.registry import NetworkFilterSpec
from proxy.config.context import ParseContext
from proxy.config.reader import Node


def parse_config(node: Node, context: ParseContext) -> hcm.HcmConfig:
    node.only(
        "codec", "access_log", "idle_timeout", "max_concurrent_streams", "max_request_headers"
    )
    if context.runtime is None:
        node.problem("runtime_api serves the runtime: add a top-level `runtime:` section")
    access_log = node.child("access_log").value
    log_path = "off" if access_log is False else node.text("access_log", "off")
    filters = (
        hcm.http_filter("runtime_api", Node({}), context),
        hcm.http_filter("router", Node({}), context),
    )
    return hcm.HcmConfig(
        route_table=RouteTable(()),
        http_filters=filters,
        codec=node.choice("codec", hcm.CODECS, "auto"),
        access_log=None if log_path == "off" else log_path,
        generate_request_id=False,
        append_forwarded_for=False,
        generate_traceparent=False,
        max_request_headers=node.size("max_request_headers", 64 * 1024, minimum=1024),
        idle_timeout=node.duration("idle_timeout", 3600.0) or None,
        max_concurrent_streams=node.integer("max_concurrent_streams", 100, minimum=1),
    )


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
