"""`runtime_grpc` in a listener's filters: Dapr's gRPC API port (50001) in one line of config.

A connection manager speaking HTTP/2 (prior knowledge, as gRPC clients do) with the
`runtime_grpc`, `runtime_api` and router HTTP filters and no routes of its own: the Dapr
and mecha gRPC services are answered, calls carrying `dapr-app-id` metadata are routed to
the app's cluster (Dapr's gRPC proxying), and anything else is UNIMPLEMENTED (404).
"""

from __future__ import annotations

from filters.network.http import config as hcm
from filters.network.http.filter import create_factory
from filters.network.registry import NetworkFilterSpec
from filters.network.runtime_api import MANAGER_KEYS, api_manager
from proxy.config.context import ParseContext
from proxy.config.reader import Node


def parse_config(node: Node, context: ParseContext) -> hcm.HcmConfig:
    node.only(*MANAGER_KEYS, "max_message_size")
    size = node.child("max_message_size").value or 0  # checked by the HTTP filter, at this path
    grpc_config = Node({"max_message_size": size}, node.path, node.problems)
    filters = (
        hcm.http_filter("runtime_grpc", grpc_config, context),
        hcm.http_filter("runtime_api", Node({}), context),
    )
    return api_manager(node, context, "runtime_grpc", filters, codec="http2", max_streams=1000)


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)
