"""Listener filters by name. Built-ins load lazily from a string table; plugins `register`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from filters.listener.api import ListenerFilterFactory
from proxy.config.context import ParseContext
from proxy.config.reader import Node


@dataclass(frozen=True, slots=True)
class ListenerFilterSpec:
    parse_config: Callable[[Node, ParseContext], Any]
    create_factory: Callable[[Any], ListenerFilterFactory]


_BUILTIN = {
    "protocol_sniffer": "filters.listener.sniffer:SPEC",
    "original_dst": "filters.listener.original_dst:SPEC",
    "tls_inspector": "filters.listener.tls_inspector:SPEC",
}
_registry: dict[str, ListenerFilterSpec] = {}


def register(name: str, spec: ListenerFilterSpec) -> None:
    _registry[name] = spec


def lookup(name: str) -> ListenerFilterSpec | None:
    if name not in _registry and name in _BUILTIN:
        module, _, attribute = _BUILTIN[name].partition(":")
        register(name, getattr(importlib.import_module(module), attribute))
    return _registry.get(name)


def names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registry))
