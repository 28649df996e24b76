"""`runtime_grpc` in a listener's filters: Dapr's gRPC API port (50001) in one line of config.

A connection manager speaking HTTP/2 (prior knowledge, as gRPC clients do) with the
`runtime_grpc`, `runtime_api` and router HTTP filters and no routes of its own: the Dapr
and mecha gRPC services are answered, calls carrying `dapr-app-id` metadata are routed to
the app's cluster (Dapr's gRPC proxying), and anything else is UNIMPLEMENTED (404).
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
        "codec",
        "access_log",
        "idle_timeout",
        "max_concurrent_streams",
        "max_request_headers",
        "max_message_size",
    )
    if context.runtime is None:
        node.problem("runtime_grpc serves the runtime: add a top-level `runtime:` section")
    access_log = node.child("access_log").value
    log_path = "off" if access_log is False else node.text("access_log", "off")
    size = node.child("max_message_size").value or 0  # checked by the HTTP filter, at this path
    grpc_config = Node({"max_message_size": size}, node.path, node.problems)
    filters = (
        hcm.http_filter("runtime_grpc", grpc_config, context),
        hcm.http_filter("runtime_api", Node({}), context),
        hcm.http_filter("router", Node({}), context),
    )
    return hcm.HcmConfig(
        route_table=RouteTable(()),
        http_filters=filters,
        codec=node.choice("codec", hcm.CODECS, "http2"),
        access_log=None if log_path == "off" else log_path,
        generate_request_id=False,
        append_forwarded_for=False,
        generate_traceparent=False,
        max_request_headers=node.size("max_request_headers", 64 * 1024, minimum=1024),
        idle_timeout=node.duration("idle_timeout", 3600.0) or None,
        max_concurrent_streams=node.integer("max_concurrent_streams", 1000, minimum=1),
    )


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
