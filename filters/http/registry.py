"""HTTP stream filters by name. Built-ins load lazily from a string table; plugins `register`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from filters.http.api import HttpFactoryContext, StreamFilterFactory
from proxy.config.context import ParseContext
from proxy.config.reader import Node


def _no_per_route(node: Node, context: ParseContext) -> Any:
    node.problem("this filter has no per-route configuration")
    return None


@dataclass(frozen=True, slots=True)
class HttpFilterSpec:
    parse_config: Callable[[Node, ParseContext], Any]
    """Typed config from the filter's `config:` node in `http_filters`."""
    create_factory: Callable[[Any, HttpFactoryContext], StreamFilterFactory]
    """Built once per connection manager; makes one filter per stream."""
    parse_per_route: Callable[[Node, ParseContext], Any] = _no_per_route
    """Typed override from `routes[].filters.<name>` (the value `false` disables it there)."""
    terminal: bool = False


_BUILTIN = {
    "router": "filters.http.router:SPEC",
    "local_ratelimit": "filters.http.local_ratelimit:SPEC",
    "fault": "filters.http.fault:SPEC",
    "header_mutation": "filters.http.header_mutation:SPEC",
    "cors": "filters.http.cors:SPEC",
    "auth": "filters.http.auth:SPEC",
    "runtime_api": "filters.http.runtime_api.filter:SPEC",
    "runtime_grpc": "filters.http.runtime_grpc.filter:SPEC",
}
_registry: dict[str, HttpFilterSpec] = {}


def register(name: str, spec: HttpFilterSpec) -> None:
    _registry[name] = spec


def lookup(name: str) -> HttpFilterSpec | None:
    if name not in _registry and name in _BUILTIN:
        module, _, attribute = _BUILTIN[name].partition(":")
        register(name, getattr(importlib.import_module(module), attribute))
    return _registry.get(name)


def names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registry))
