"""What a reload changes: listeners, clusters and runtime components, by name.

Pure functions over two validated `Config`s, but for one read: listeners and clusters are
compared by their expanded YAML (typed configs hold objects such as TLS contexts that never
compare equal) and by the content of the files it names (`*_file`: a certificate rotated in
place, as a Kubernetes secret update does, changes its listener or cluster);
components by their specs. A listener whose own YAML is unchanged is still rebuilt when it
names a changed cluster, because filter factories hold the cluster objects they were built
with. Settings a reload cannot apply are listed so the operator hears they wait for a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.model import Config

_EMPTY: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    """Names added, changed and removed in one section, each in config order."""

    added: tuple[str, ...] = _EMPTY
    changed: tuple[str, ...] = _EMPTY
    removed: tuple[str, ...] = _EMPTY

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def describe(self, section: str) -> str | None:
        """`listeners: +a ~b -c`, or None when nothing changed."""
        if not self:
            return None
        marks = [f"+{n}" for n in self.added] + [f"~{n}" for n in self.changed]
        return f"{section}: " + " ".join(marks + [f"-{n}" for n in self.removed])


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Changes:
    """Names only in `new`, in both with unequal values, only in `old`."""
    return Changes(
        added=tuple(name for name in new if name not in old),
        changed=tuple(name for name in new if name in old and old[name] != new[name]),
        removed=tuple(name for name in old if name not in new),
    )


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    listeners: Changes
    clusters: Changes
    components: Changes
    rebuilt: tuple[str, ...] = _EMPTY
    """Listeners unchanged themselves whose filters name a changed cluster."""
    restart_needed: tuple[str, ...] = _EMPTY
    """Settings that differ but only take effect when mecha restarts."""
    drain_timeout: bool = False

    @property
    def empty(self) -> bool:
        sections = (self.listeners, self.clusters, self.components)
        return not any(sections) and not self.rebuilt and not self.drain_timeout

    def summary(self) -> str:
        parts = [
            self.listeners.describe("listeners"),
            self.clusters.describe("clusters"),
            self.components.describe("components"),
            f"rebuilt for changed clusters: {', '.join(self.rebuilt)}" if self.rebuilt else None,
            "drain_timeout" if self.drain_timeout else None,
        ]
        return "; ".join(part for part in parts if part) or "nothing"


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    listeners = compare(
        _compared(listener_documents(old), old),
        _compared(listener_documents(new), new),
    )
    clusters = compare(
        _compared(cluster_documents(old), old),
        _compared(cluster_documents(new), new),
    )
    return ConfigDiff(
        listeners=listeners,
        clusters=clusters,
        components=compare(component_specs(old), component_specs(new)),
        rebuilt=_rebuilt(new, listeners, clusters.changed),
        restart_needed=restart_needed(old, new),
        drain_timeout=old.drain_timeout != new.drain_timeout,
    )


def listener_documents(config: Config) -> dict[str, Any]:
    return _named(config.document, "listeners", (li.name for li in config.listeners))


def cluster_documents(config: Config) -> dict[str, Any]:
    return _named(config.document, "clusters", (c.name for c in config.clusters))


def _compared(documents: dict[str, Any], config: Config) -> dict[str, Any]:
    """Each entry's YAML beside the digests, taken when the file was read, of files it names."""
    return {
        name: (document, tuple(config.file_digests.get(path) for path in _files_in(document)))
        for name, document in documents.items()
    }


def _files_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.endswith("_file") and isinstance(item, str):
                yield item
            else:
                yield from _files_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _files_in(item)


def _named(document: Any, section: str, names: Iterable[str]) -> dict[str, Any]:
    """Each entry's YAML by name; the parser keeps the document's order."""
    entries = document.get(section) if isinstance(document, dict) else None
    return dict(zip(names, entries or (), strict=False))


def component_specs(config: Config) -> dict[str, Any]:
    """Specs without `source`: moving a component within the file changes nothing."""
    if config.runtime is None:
        return {}
    return {spec.name: dataclasses.replace(spec, source="") for spec in config.runtime.components}


def _rebuilt(new: Config, listeners: Changes, changed_clusters: tuple[str, ...]) -> tuple[str, ...]:
    if not changed_clusters:
        return _EMPTY
    wanted = set(changed_clusters)
    touched = set(listeners.added) | set(listeners.changed)
    return tuple(
        name
        for name, document in listener_documents(new).items()
        if name not in touched and not wanted.isdisjoint(strings_in(document))
    )


def strings_in(value: Any) -> Iterator[str]:
    """Every string scalar in a YAML value: where a listener may name a cluster."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def restart_needed(old: Config, new: Config) -> tuple[str, ...]:
    """What differs outside listeners, clusters, components and drain_timeout."""
    found = []
    if old.admin != new.admin:
        found.append("admin")
    if old.health != new.health:
        found.append("health")
    if old.overload != new.overload:
        found.append("overload")
    if (old.runtime is None) != (new.runtime is None):
        found.append("runtime")
    elif old.runtime is not None and new.runtime is not None:
        before = dataclasses.replace(old.runtime, components=())
        after = dataclasses.replace(new.runtime, components=())
        found += [f"runtime.{field}" for field in _differing_fields(before, after)]
    return tuple(found)


def _differing_fields(old: Any, new: Any) -> list[str]:
    return [
        field.name
        for field in dataclasses.fields(old)
        if getattr(old, field.name) != getattr(new, field.name)
    ]
