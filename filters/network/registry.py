"""Network filters by name. Built-ins load lazily from a string table; plugins `register`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from filters.network.api import FactoryContext, FilterFactory
from proxy.config.context import ParseContext
from proxy.config.reader import Node


@dataclass(frozen=True, slots=True)
class NetworkFilterSpec:
    parse_config: Callable[[Node, ParseContext], Any]
    """Typed config from the filter's `config:` node; report problems on the node."""
    create_factory: Callable[[Any, FactoryContext], FilterFactory]
    """Built once per listener from the typed config."""
    terminal: bool = False
    """Owns the upstream side, so it must be the last filter of its chain."""


_BUILTIN = {
    "tcp_proxy": "filters.network.tcp_proxy:SPEC",
    "http": "filters.network.http.filter:SPEC",
    "redis_proxy": "filters.network.redis_proxy.filter:SPEC",
    "rpc_proxy": "filters.network.rpc_proxy.filter:SPEC",
    "mqtt_proxy": "filters.network.mqtt_proxy.filter:SPEC",
    "runtime_api": "filters.network.runtime_api:SPEC",
    "runtime_grpc": "filters.network.runtime_grpc:SPEC",
}
_registry: dict[str, NetworkFilterSpec] = {}


def register(name: str, spec: NetworkFilterSpec) -> None:
    _registry[name] = spec


def lookup(name: str) -> NetworkFilterSpec | None:
    if name not in _registry and name in _BUILTIN:
        module, _, attribute = _BUILTIN[name].partition(":")
        register(name, getattr(importlib.import_module(module), attribute))
    return _registry.get(name)


def names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registry))
