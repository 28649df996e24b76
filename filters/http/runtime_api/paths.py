"""The API's paths: method + path pattern -> handler, as Dapr's HTTP API lays them out.

A pattern is a tuple of segments: a literal, `{}` (one segment, passed to the handler) or
`{*}` (the rest of the path, `/`-joined: state keys and topics may contain slashes).
Patterns are indexed by their first two segments (`v1.0`, `state`), so a lookup tries a
handful of patterns, the literal ones first.

A path also says what its handler waits on (`waits`), so the filter knows when it may run
the handler inline, without a task (inline.py): on NOTHING, always; on the COMPONENT its
first `{}` names, when that component says it `runs_inline`; on OTHER things (deliveries,
every component's ping), never.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from filters.http.runtime_api import (
    bindings,
    configuration,
    lock,
    meta,
    pubsub,
    secrets,
    sequencer,
    state,
)
from filters.http.runtime_api.base import Answer

Handler = Callable[..., Coroutine[Any, Any, Answer]]
WRITE = ("POST", "PUT")


class Waits(enum.Enum):
    """What a handler may wait on."""

    NOTHING = "nothing"
    COMPONENT = "component"
    """Only the component its first `{}` names."""
    OTHER = "other"


NOTHING, COMPONENT, OTHER = Waits.NOTHING, Waits.COMPONENT, Waits.OTHER


@dataclass(frozen=True, slots=True)
class ApiPath:
    methods: tuple[str, ...]
    pattern: tuple[str, ...]
    handler: Handler
    waits: Waits = COMPONENT

    def match(self, parts: list[str]) -> list[str] | None:
        """The handler's arguments when `parts` fit the pattern (methods aside)."""
        pattern = self.pattern
        if pattern[-1] == "{*}":
            if len(parts) < len(pattern):
                return None
        elif len(parts) != len(pattern):
            return None
        args: list[str] = []
        for index, segment in enumerate(pattern):
            if segment == "{*}":
                args.append("/".join(parts[index:]))
                break
            if segment == "{}":
                args.append(parts[index])
            elif segment != parts[index]:
                return None
        return args


def _path(
    methods: str | tuple[str, ...], path: str, handler: Handler, waits: Waits = COMPONENT
) -> ApiPath:
    methods = (methods,) if isinstance(methods, str) else methods
    return ApiPath(methods, tuple(path.split("/")), handler, waits)


PATHS = [
    _path(WRITE, "v1.0/state/{}", state.save),
    _path(WRITE, "v1.0/state/{}/bulk", state.bulk_get),
    _path(WRITE, "v1.0/state/{}/transaction", state.transaction),
    _path("GET", "v1.0/state/{}/{*}", state.get),
    _path("DELETE", "v1.0/state/{}/{*}", state.delete),
    _path(WRITE, "v1.0-alpha1/state/{}/query", state.query),
    _path(WRITE, "v1.0-beta1/state/{}/query", state.query),
    _path(WRITE, "v1.0/publish/{}/{*}", pubsub.publish),
    _path(WRITE, "v1.0-alpha1/publish/bulk/{}/{*}", pubsub.bulk_publish),
    _path(WRITE, "v1.0/bindings/{}", bindings.invoke),
    _path("GET", "v1.0/secrets/{}/bulk", secrets.bulk),
    _path("GET", "v1.0/secrets/{}/{*}", secrets.get),
    *(
        path
        for version in ("v1.0", "v1.0-alpha1")
        for path in (
            _path("GET", f"{version}/configuration/{{}}", configuration.get),
            _path(
                "GET",
                f"{version}/configuration/{{}}/subscribe",
                configuration.subscribe,
                OTHER,
            ),
            _path(
                "GET",
                f"{version}/configuration/{{}}/{{}}/unsubscribe",
                configuration.unsubscribe,
                OTHER,
            ),
        )
    ),
    _path(WRITE, "v1.0-alpha1/lock/{}", lock.try_lock),
    _path(WRITE, "v1.0-alpha1/lock/{}/renew", lock.renew),
    _path(WRITE, "v1.0-alpha1/unlock/{}", lock.unlock),
    _path(WRITE, "v1.0-alpha1/sequencer/{}", sequencer.next_id),
    _path("GET", "v1.0/metadata", meta.metadata, NOTHING),
    _path("PUT", "v1.0/metadata/{}", meta.set_metadata, NOTHING),
    _path("GET", "v1.0/healthz", meta.healthz, NOTHING),
    _path("GET", "v1.0/healthz/outbound", meta.healthz_outbound, OTHER),
    _path("POST", "v1.0/shutdown", meta.shutdown, NOTHING),
]

UNAUTHENTICATED = frozenset({meta.healthz, meta.healthz_outbound})
"""Probes work without the API token, as in Dapr."""


def _index(paths: list[ApiPath]) -> dict[tuple[str, str], list[ApiPath]]:
    index: dict[tuple[str, str], list[ApiPath]] = {}
    for path in paths:
        key = (path.pattern[0], path.pattern[1] if len(path.pattern) > 1 else "")
        index.setdefault(key, []).append(path)
    for candidates in index.values():  # literal segments beat `{}` and `{*}`
        candidates.sort(key=lambda p: ("{*}" in p.pattern, -sum(s[0] != "{" for s in p.pattern)))
    return index


_INDEX = _index(PATHS)


@dataclass(frozen=True, slots=True)
class Found:
    handler: Handler | None
    """None: the path exists but not for this method (405)."""
    args: list[Any]
    waits: Waits = OTHER


def find(method: str, parts: list[str]) -> Found | None:
    """The handler for a request, or None when no API path fits (404)."""
    key = (parts[0], parts[1] if len(parts) > 1 else "") if parts else ("", "")
    other_method = False
    for path in _INDEX.get(key, ()):
        args = path.match(parts)
        if args is None:
            continue
        if method in path.methods:
            return Found(path.handler, args, path.waits)
        other_method = True
    return Found(None, []) if other_method else None
