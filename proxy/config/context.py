"""What a filter's config parser may know about the rest of the file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from proxy.config.model import ClusterConfig
from proxy.config.reader import REQUIRED, Node, Required
from runtime.config import RuntimeConfig


@dataclass(frozen=True, slots=True)
class ParseContext:
    clusters: frozenset[str]
    cluster_configs: Mapping[str, ClusterConfig] = field(default_factory=dict)
    runtime: RuntimeConfig | None = None
    """The `runtime:` section, for filters that serve the runtime API."""
    base_dir: Path | None = None
    """The config file's directory: relative paths in it (certificates, ...) start there."""

    def cluster(self, node: Node, key: str = "cluster", default: str | Required = REQUIRED) -> str:
        """A cluster name that must be defined under `clusters`."""
        name = node.text(key, default)
        if name and name not in self.clusters:
            known = ", ".join(sorted(self.clusters)) or "none defined"
            node.problem(f"unknown cluster {name!r} (clusters: {known})", key)
        return name
