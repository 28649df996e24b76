"""The `overload:` section: watermarks on process memory and open descriptors, and the
actions that shed load as each is crossed (Envoy's overload manager, in one YAML block)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.reader import Node

ACTIONS = ("close_idle_connections", "stop_accepting", "refuse_requests")
"""In the order they usually come: shed what costs nothing, then new work."""

DEFAULT_WATERMARKS = {
    "close_idle_connections": 0.90,
    "stop_accepting": 0.95,
    "refuse_requests": 0.98,
}


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    check_interval: float = 1.0
    """How often memory and descriptors are read."""
    max_rss: int | None = None
    """Resident memory at pressure 1.0; None: memory is not watched."""
    max_descriptors: int | None = None
    """Open descriptors at pressure 1.0; None: the soft RLIMIT_NOFILE (read at each check)."""
    watermarks: tuple[tuple[str, float], ...] = tuple(DEFAULT_WATERMARKS.items())
    """(action, pressure at which it starts); it stops a little below (see proxy.overload)."""


def parse_overload(root: Node) -> OverloadConfig | None:
    """Conservative defaults when absent (descriptors watched, memory not); `false`: off."""
    if root.child("overload").value is False:
        return None
    node = root.section("overload")
    node.only("check_interval", "max_rss", "max_descriptors", "watermarks")
    marks = node.section("watermarks")
    marks.only(*ACTIONS)
    max_rss = node.size("max_rss", 0, minimum=0)
    max_descriptors = node.integer("max_descriptors", 0, minimum=0)
    return OverloadConfig(
        check_interval=node.duration("check_interval", 1.0, positive=True),
        max_rss=max_rss or None,
        max_descriptors=max_descriptors or None,
        watermarks=tuple(
            (action, marks.number(action, default, minimum=0.05, maximum=1.0))
            for action, default in DEFAULT_WATERMARKS.items()
            if marks.child(action).value is not False  # `false`: never taken
        ),
    )
