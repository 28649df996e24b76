"""Route tables: virtual hosts by Host, routes by path/headers/method, and what a route does.

Parsed once from config into frozen objects; `RouteTable.find` is the per-request part.
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from filters.http import registry
from protocols.http.events import RequestHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node

RETRY_ON = frozenset({
    "5xx", "gateway-error", "connect-failure", "reset", "retriable-status-codes",
    "refused-stream", "cancelled", "deadline-exceeded", "resource-exhausted", "unavailable",
})  # fmt: skip
REDIRECT_CODES = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    name: bytes
    exact: bytes | None = None
    prefix: bytes | None = None
    suffix: bytes | None = None
    contains: bytes | None = None
    regex: re.Pattern[bytes] | None = None
    present: bool | None = None
    invert: bool = False

    def matches(self, headers: Headers) -> bool:
        value = headers.get(self.name)
        return self._test(value) != self.invert

    def _test(self, value: bytes | None) -> bool:
        if self.present is not None:
            return (value is not None) == self.present
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact
        if self.prefix is not None:
            return value.startswith(self.prefix)
        if self.suffix is not None:
            return value.endswith(self.suffix)
        if self.contains is not None:
            return self.contains in value
        if self.regex is not None:
            return self.regex.fullmatch(value) is not None
        return True


@dataclass(frozen=True, slots=True)
class RouteMatch:
    prefix: bytes | None = None
    path: bytes | None = None
    regex: re.Pattern[bytes] | None = None
    headers: tuple[HeaderMatcher, ...] = ()
    methods: frozenset[bytes] | None = None
    case_sensitive: bool = True

    def matches(self, request: RequestHeaders, path: bytes) -> bool:
        if not self.case_sensitive:
            path = path.lower()
        if self.prefix is not None and not path.startswith(self.prefix):
            return False
        if self.path is not None and path != self.path:
            return False
        if self.regex is not None and self.regex.fullmatch(path) is None:
            return False
        if self.methods is not None and request.method not in self.methods:
            return False
        for matcher in self.headers:  # noqa: SIM110 - all() with a generator costs more here
            if not matcher.matches(request.headers):
                return False
        return True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_on: frozenset[str]
    num_retries: int = 1
    per_try_timeout: float | None = None
    retriable_status_codes: frozenset[int] = frozenset()
    base_interval: float = 0.025
    max_interval: float = 0.25

    def retries_status(self, status: int) -> bool:
        on = self.retry_on
        if "5xx" in on and status >= 500:
            return True
        if "gateway-error" in on and status in (502, 503, 504):
            return True
        return "retriable-status-codes" in on and status in self.retriable_status_codes


@dataclass(frozen=True, slots=True)
class HeaderMutation:
    add: tuple[tuple[bytes, bytes, bool], ...] = ()
    """(name, value, append): append=False replaces existing values."""
    remove: tuple[bytes, ...] = ()
    active: bool = field(default=False, init=False, compare=False)
    """Anything to do: a plain attribute, read on every request."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "active", bool(self.add or self.remove))

    def apply(self, headers: Headers) -> None:
        """Callers skip inactive mutations on the hot path."""
        for name in self.remove:
            headers.remove(name)
        for name, value, append in self.add:
            if append:
                headers.add(name, value)
            else:
                headers.set(name, value)


NO_MUTATION = HeaderMutation()
"""Shared by every route and virtual host that changes no header."""


@dataclass(frozen=True, slots=True)
class RouteAction:
    clusters: tuple[str, ...]
    weights: tuple[int, ...] = (1,)
    prefix_rewrite: bytes | None = None
    regex_rewrite: tuple[re.Pattern[bytes], bytes] | None = None
    host_rewrite: bytes | None = None
    timeout: float | None = 15.0
    retry_policy: RetryPolicy | None = None
    _cumulative: tuple[int, ...] = field(default=(), compare=False)
    rewrites: bool = field(default=False, init=False, compare=False)
    """Any of the rewrites is set: a plain attribute, read on every request."""
    cluster: str | None = field(default=None, init=False, compare=False)
    """The one cluster, when there is one (no weighted pick to make)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(self.weights)))
        object.__setattr__(self, "cluster", self.clusters[0] if len(self.clusters) == 1 else None)
        rewrites = (self.prefix_rewrite, self.regex_rewrite, self.host_rewrite)
        object.__setattr__(self, "rewrites", rewrites != (None, None, None))

    def pick_cluster(self) -> str:
        if len(self.clusters) == 1:
            return self.clusters[0]
        point = random.randrange(self._cumulative[-1])
        return self.clusters[bisect.bisect_right(self._cumulative, point)]


@dataclass(frozen=True, slots=True)
class Redirect:
    status: int = 301
    scheme: bytes | None = None
    host: bytes | None = None
    port: int | None = None
    path: bytes | None = None
    prefix_rewrite: bytes | None = None
    strip_query: bool = False


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: bytes = b""
    content_type: bytes = b"text/plain"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: RouteMatch
    action: RouteAction | None = None
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    request_headers: HeaderMutation = HeaderMutation()
    response_headers: HeaderMutation = HeaderMutation()
    per_filter: Mapping[str, Any] = field(default_factory=dict)
    """Per-route filter configs by filter name; the value False disables the filter here."""
    forwards_only: bool = field(default=False, init=False, compare=False)
    """The route sends requests to a cluster as they are (no redirect, direct response,
    rewrite or retry policy): the connection manager may take its forwarding path."""
    as_bytes: bool = field(default=False, init=False, compare=False)
    """... and changes no header either: HTTP/1.1 may go through as bytes."""

    def __post_init__(self) -> None:
        action = self.action
        plain = action is not None and not action.rewrites and action.retry_policy is None
        object.__setattr__(self, "forwards_only", plain)
        untouched = not (self.request_headers.active or self.response_headers.active)
        object.__setattr__(self, "as_bytes", plain and untouched)


ROUTE_CACHE_LIMIT = 4096
"""Decisions remembered per path (and per host and target); past it, the cache starts over."""


class RouteIndex:
    """A virtual host's routes, found without testing them one by one.

    Exact paths and prefixes are looked up by hash (one lookup per distinct prefix
    length), regex and path-less routes are always candidates, and candidates are tested
    in configuration order, so the first route that matches wins as before. When no route
    looks past the path (headers, methods), the decision is remembered per path.
    """

    __slots__ = ("_always", "_cache", "_exact", "_lengths", "_lower", "_prefixes", "routes")

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        self._exact: dict[bytes, list[int]] = {}
        self._prefixes: dict[bytes, list[int]] = {}
        self._always: list[int] = []
        self._lower = False
        """Some route matches case-insensitively: its keys are lowercase, look both up."""
        for index, route in enumerate(routes):
            match = route.match
            lower = not match.case_sensitive
            self._lower = self._lower or lower
            if match.path is not None:
                key = match.path.lower() if lower else match.path
                self._exact.setdefault(key, []).append(index)
            elif match.prefix is not None:
                key = match.prefix.lower() if lower else match.prefix
                self._prefixes.setdefault(key, []).append(index)
            else:
                self._always.append(index)
        self._lengths = sorted({len(prefix) for prefix in self._prefixes})
        path_only = all(not r.match.headers and r.match.methods is None for r in routes)
        self._cache: dict[bytes, Route | None] | None = {} if path_only else None

    @property
    def path_only(self) -> bool:
        """No route looks past the path: decisions are remembered per path."""
        return self._cache is not None

    def find(self, request: RequestHeaders, path: bytes) -> Route | None:
        cache = self._cache
        if cache is None:
            return self._search(request, path)
        try:
            return cache[path]
        except KeyError:
            pass
        route = self._search(request, path)
        if len(cache) >= ROUTE_CACHE_LIMIT:
            cache.clear()  # many distinct paths: start over rather than grow
        cache[path] = route
        return route

    def _search(self, request: RequestHeaders, path: bytes) -> Route | None:
        routes = self.routes
        for index in self._candidates(path):
            if routes[index].match.matches(request, path):
                return routes[index]
        return None

    def _candidates(self, path: bytes) -> list[int]:
        keys = (path, path.lower()) if self._lower else (path,)
        found: list[int] = []
        for key in keys:
            found += self._exact.get(key, ())
            prefixes = self._prefixes
            for length in self._lengths:
                if length > len(key):
                    break
                hit = prefixes.get(key[:length])
                if hit is not None:
                    found += hit
        found += self._always
        if len(keys) > 1:
            found = list(set(found))
        found.sort()
        return found


_NO_REQUEST = RequestHeaders(b"", b"", b"", Headers())
"""What path-only matching is given for a request (it never looks at it)."""


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    request_headers: HeaderMutation = HeaderMutation()
    response_headers: HeaderMutation = HeaderMutation()
    _index: RouteIndex | None = field(default=None, init=False, compare=False, repr=False)
    as_bytes: bool = field(default=False, init=False, compare=False)
    """No header mutation here: HTTP/1.1 requests may be forwarded as bytes."""

    def __post_init__(self) -> None:
        untouched = not (self.request_headers.active or self.response_headers.active)
        object.__setattr__(self, "as_bytes", untouched)

    @property
    def index(self) -> RouteIndex:
        """Built on the first request: of thousands of virtual hosts most may never see one."""
        index = self._index
        if index is None:
            index = RouteIndex(self.routes)
            object.__setattr__(self, "_index", index)
        return index


class RouteTable:
    """Host -> virtual host (exact, then *.suffix longest first, then prefix.*, then *)."""

    _CACHE_LIMIT = 1024

    def __init__(self, virtual_hosts: tuple[VirtualHost, ...]) -> None:
        self.virtual_hosts = virtual_hosts
        self._exact: dict[str, VirtualHost] = {}
        self._suffixes: list[tuple[str, VirtualHost]] = []
        self._prefixes: list[tuple[str, VirtualHost]] = []
        self._default: VirtualHost | None = None
        for vhost in virtual_hosts:
            for domain in vhost.domains:
                self._index(domain.lower(), vhost)
        self._suffixes.sort(key=lambda item: -len(item[0]))
        self._prefixes.sort(key=lambda item: -len(item[0]))
        self._cache: dict[bytes, VirtualHost | None] = {}
        self._decisions: dict[tuple[bytes, bytes], tuple[VirtualHost, Route] | None] = {}

    def _index(self, domain: str, vhost: VirtualHost) -> None:
        if domain == "*":
            self._default = self._default or vhost
        elif domain.startswith("*"):
            self._suffixes.append((domain[1:], vhost))
        elif domain.endswith("*"):
            self._prefixes.append((domain[:-1], vhost))
        else:
            self._exact.setdefault(domain, vhost)

    def virtual_host(self, authority: bytes) -> VirtualHost | None:
        try:
            return self._cache[authority]
        except KeyError:
            pass
        found = self._lookup(authority.decode("latin-1").lower())
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[authority] = found
        return found

    def _lookup(self, host: str) -> VirtualHost | None:
        if host in self._exact:
            return self._exact[host]
        bare = (
            host.rsplit(":", 1)[0] if host.count(":") == 1 or host.endswith("]") is False else host
        )
        if bare in self._exact:
            return self._exact[bare]
        for suffix, vhost in self._suffixes:
            if bare.endswith(suffix):
                return vhost
        for prefix, vhost in self._prefixes:
            if bare.startswith(prefix):
                return vhost
        return self._default

    def find_by_path(self, authority: bytes, target: bytes) -> tuple[VirtualHost, Route] | None:
        """The route of a request whose route can be told by host and path alone (no route
        of its virtual host looks at headers or methods), or None; remembered per (host,
        target), the way a sidecar's traffic repeats."""
        key = (authority, target)
        try:
            return self._decisions[key]
        except KeyError:
            pass
        found = None
        vhost = self.virtual_host(authority)
        if vhost is not None and vhost.index.path_only:
            query = target.find(b"?")
            route = vhost.index.find(_NO_REQUEST, target if query < 0 else target[:query])
            found = None if route is None else (vhost, route)
        if len(self._decisions) >= ROUTE_CACHE_LIMIT:
            self._decisions.clear()  # many distinct targets: start over rather than grow
        self._decisions[key] = found
        return found

    def find(self, request: RequestHeaders) -> tuple[VirtualHost | None, Route | None]:
        vhost = self.virtual_host(request.authority)
        if vhost is None:
            return None, None
        path = request.path
        query = path.find(b"?")
        return vhost, vhost.index.find(request, path if query < 0 else path[:query])


def _without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1] or host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# -- parsing ---------------------------------------------------------------------------------


def parse_route_table(node: Node, context: ParseContext) -> RouteTable:
    node.only("virtual_hosts")
    vhosts = tuple(
        _virtual_host(item, context, i)
        for i, item in enumerate(node.items("virtual_hosts", required=True))
    )
    return RouteTable(vhosts)


def _virtual_host(node: Node, context: ParseContext, index: int) -> VirtualHost:
    node.only("name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
              "response_headers_to_add", "response_headers_to_remove")  # fmt: skip
    name = node.text("name", f"vhost{index}")
    domains = tuple(_strings(node, "domains", ["*"]))
    routes = tuple(
        _route(item, context, f"{name}/{i}")
        for i, item in enumerate(node.items("routes", required=True))
    )
    return VirtualHost(
        name, domains, routes, _mutation(node, "request"), _mutation(node, "response")
    )


def _strings(node: Node, key: str, default: list[str]) -> list[str]:
    value = node.child(key).value
    if value is None:
        return default
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        node.problem("expected a list of strings", key)
        return default
    return [str(v) for v in value]


def _route(node: Node, context: ParseContext, default_name: str) -> Route:
    node.only("name", "match", "route", "redirect", "direct_response", "filters",
              "request_headers_to_add", "request_headers_to_remove",
              "response_headers_to_add", "response_headers_to_remove")  # fmt: skip
    actions = [key for key in ("route", "redirect", "direct_response") if node.has(key)]
    if len(actions) != 1:
        node.problem("a route needs exactly one of: route, redirect, direct_response")
    return Route(
        name=node.text("name", default_name),
        match=_match(node.section("match")),
        action=_action(node.section("route"), context) if node.has("route") else None,
        redirect=_redirect(node.section("redirect")) if node.has("redirect") else None,
        direct_response=_direct(node.section("direct_response"))
        if node.has("direct_response")
        else None,
        request_headers=_mutation(node, "request"),
        response_headers=_mutation(node, "response"),
        per_filter=_per_filter(node.section("filters"), context),
    )


def _regex(node: Node, key: str) -> re.Pattern[bytes] | None:
    pattern = node.text(key, "")
    if not pattern:
        return None
    try:
        return re.compile(pattern.encode())
    except re.error as exc:
        node.problem(f"invalid regex: {exc}", key)
        return None


def _match(node: Node) -> RouteMatch:
    node.only("prefix", "path", "regex", "headers", "methods", "case_sensitive")
    kinds = [key for key in ("prefix", "path", "regex") if node.has(key)]
    if len(kinds) > 1:
        node.problem("use only one of: prefix, path, regex")
    case_sensitive = node.flag("case_sensitive", True)

    def path_value(key: str) -> bytes | None:
        if not node.has(key):
            return None
        text = node.text(key).encode()
        return text if case_sensitive else text.lower()

    methods = _strings(node, "methods", [])
    return RouteMatch(
        prefix=path_value("prefix") if kinds else b"/",
        path=path_value("path"),
        regex=_regex(node, "regex"),
        headers=tuple(_header_matcher(item) for item in node.items("headers")),
        methods=frozenset(m.upper().encode() for m in methods) if methods else None,
        case_sensitive=case_sensitive,
    )


def _header_matcher(node: Node) -> HeaderMatcher:
    node.only("name", "exact", "prefix", "suffix", "contains", "regex", "present", "invert")

    def optional(key: str) -> bytes | None:
        return node.text(key).encode() if node.has(key) else None

    return HeaderMatcher(
        name=node.text("name").lower().encode(),
        exact=optional("exact"),
        prefix=optional("prefix"),
        suffix=optional("suffix"),
        contains=optional("contains"),
        regex=_regex(node, "regex"),
        present=node.flag("present") if node.has("present") else None,
        invert=node.flag("invert", False),
    )


def _action(node: Node, context: ParseContext) -> RouteAction:
    node.only("cluster", "weighted_clusters", "prefix_rewrite", "regex_rewrite", "host_rewrite",
              "timeout", "retry_policy")  # fmt: skip
    if node.has("cluster") == node.has("weighted_clusters"):
        node.problem("a route needs exactly one of: cluster, weighted_clusters")
    if node.has("weighted_clusters"):
        entries = node.items("weighted_clusters")
        clusters = tuple(context.cluster(item, "name") for item in entries)
        weights = tuple(item.integer("weight", 1, minimum=0) for item in entries)
        if entries and sum(weights) == 0:
            node.problem("weights must not all be zero", "weighted_clusters")
            weights = tuple(1 for _ in entries)
    else:
        clusters, weights = (context.cluster(node, "cluster", ""),), (1,)
    timeout = node.duration("timeout", 15.0)
    return RouteAction(
        clusters=clusters or ("",),
        weights=weights or (1,),
        prefix_rewrite=node.text("prefix_rewrite").encode() if node.has("prefix_rewrite") else None,
        regex_rewrite=_regex_rewrite(node),
        host_rewrite=node.text("host_rewrite").encode() if node.has("host_rewrite") else None,
        timeout=timeout or None,
        retry_policy=_retry_policy(node.section("retry_policy"))
        if node.has("retry_policy")
        else None,
    )


def _regex_rewrite(node: Node) -> tuple[re.Pattern[bytes], bytes] | None:
    if not node.has("regex_rewrite"):
        return None
    section = node.section("regex_rewrite")
    section.only("pattern", "substitution")
    pattern = _regex(section, "pattern")
    substitution = section.text("substitution").encode()
    return (pattern, substitution) if pattern is not None else None


def _retry_policy(node: Node) -> RetryPolicy:
    node.only("retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "backoff")
    raw = node.child("retry_on").value
    conditions = raw.split(",") if isinstance(raw, str) else _strings(node, "retry_on", [])
    retry_on = frozenset(c.strip() for c in conditions if c.strip())
    for unknown in sorted(retry_on - RETRY_ON):
        node.problem(
            f"unknown retry condition {unknown!r} (known: {', '.join(sorted(RETRY_ON))})",
            "retry_on",
        )
    if not retry_on:
        node.problem("required value is missing", "retry_on")
    codes = node.child("retriable_status_codes").value or []
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and 100 <= c <= 599 for c in codes
    ):
        node.problem("expected a list of HTTP status codes", "retriable_status_codes")
        codes = []
    backoff = node.section("backoff")
    backoff.only("base_interval", "max_interval")
    base = backoff.duration("base_interval", 0.025, positive=True)
    per_try = node.duration("per_try_timeout", 0.0)
    return RetryPolicy(
        retry_on=retry_on,
        num_retries=node.integer("num_retries", 1, minimum=0, maximum=10),
        per_try_timeout=per_try or None,
        retriable_status_codes=frozenset(codes),
        base_interval=base,
        max_interval=backoff.duration("max_interval", base * 10, positive=True),
    )


def _redirect(node: Node) -> Redirect:
    node.only(
        "response_code", "https_redirect", "scheme_redirect", "host_redirect",
        "port_redirect", "path_redirect", "prefix_rewrite", "strip_query",
    )  # fmt: skip
    status = node.integer("response_code", 301)
    if status not in REDIRECT_CODES:
        node.problem(f"must be one of {', '.join(map(str, REDIRECT_CODES))}", "response_code")
    scheme = "https" if node.flag("https_redirect", False) else node.text("scheme_redirect", "")

    def optional(key: str) -> bytes | None:
        return node.text(key).encode() if node.has(key) else None

    return Redirect(
        status=status,
        scheme=scheme.encode() or None,
        host=optional("host_redirect"),
        port=node.integer("port_redirect", 0, minimum=0, maximum=65535) or None,
        path=optional("path_redirect"),
        prefix_rewrite=optional("prefix_rewrite"),
        strip_query=node.flag("strip_query", False),
    )


def _direct(node: Node) -> DirectResponse:
    node.only("status", "body", "content_type")
    return DirectResponse(
        status=node.integer("status", minimum=100, maximum=599),
        body=node.text("body", "").encode(),
        content_type=node.text("content_type", "text/plain").encode(),
    )


def _mutation(node: Node, direction: str) -> HeaderMutation:
    adds = []
    for item in node.items(f"{direction}_headers_to_add"):
        item.only("name", "value", "append")
        adds.append(
            (
                item.text("name").lower().encode(),
                item.text("value").encode(),
                item.flag("append", True),
            )
        )
    removes = tuple(
        name.lower().encode() for name in _strings(node, f"{direction}_headers_to_remove", [])
    )
    return HeaderMutation(tuple(adds), removes) if adds or removes else NO_MUTATION


def _per_filter(node: Node, context: ParseContext) -> dict[str, Any]:
    result: dict[str, Any] = {}
    value = node.value if isinstance(node.value, dict) else {}
    for name in value:
        spec = registry.lookup(str(name))
        if spec is None:
            node.problem(f"unknown HTTP filter (known: {', '.join(registry.names())})", str(name))
            continue
        if value[name] is False:
            result[str(name)] = False
            continue
        result[str(name)] = spec.parse_per_route(node.section(str(name)), context)
    return result
