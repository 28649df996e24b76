"""cors: Cross-Origin Resource Sharing, like Envoy's cors filter (Fetch standard, CORS protocol).

```yaml
- name: cors
  config:
    allow_origin: ["https://app.example.com"]     # exact origins; "*" allows any
    allow_origin_regex: ["https://.*\\.example\\.com"]
    allow_methods: [GET, POST]                     # or "GET, POST"
    allow_headers: [content-type, authorization]
    expose_headers: [x-request-id]
    max_age: 10m                                   # how long a browser may cache a preflight
    allow_credentials: false
    forward_not_matching_preflights: true
```

A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) from an allowed
origin is answered here with 200 and the `Access-Control-Allow-*` headers. Any other
request from an allowed origin goes on, and its response (local replies included, so a
browser can read a 401 or a 429) gets `Access-Control-Allow-Origin`, and
`-Allow-Credentials` / `-Expose-Headers` when configured. A request from an origin that
is not allowed goes on without CORS headers, and the browser refuses the response to the
page; a preflight from such an origin goes upstream unless
`forward_not_matching_preflights: false`, which answers it with 200 and no CORS headers.

The allowed origin is echoed back (with `Vary: origin`), except with `"*"` and without
credentials, where the answer is `*`. Put this filter before filters that may refuse a
request (auth, rate limits): browsers send preflights without credentials. A route's
`filters.cors` block replaces the whole filter config for that route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from filters.http.api import (
    CONTINUE,
    STOP,
    FilterStatus,
    HttpFactoryContext,
    StreamCallbacks,
    StreamFilter,
    StreamFilterFactory,
)
from filters.http.config_values import header_names, header_value, string_list
from filters.http.registry import HttpFilterSpec
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node

NAME = "cors"
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

ALLOW_ORIGIN = b"access-control-allow-origin"
ALLOW_CREDENTIALS = b"access-control-allow-credentials"
ALLOW_METHODS = b"access-control-allow-methods"
ALLOW_HEADERS = b"access-control-allow-headers"
EXPOSE_HEADERS = b"access-control-expose-headers"
MAX_AGE = b"access-control-max-age"
REQUEST_METHOD = b"access-control-request-method"


@dataclass(frozen=True, slots=True)
class CorsConfig:
    allow_origin: frozenset[bytes] = frozenset()
    allow_origin_regex: tuple[re.Pattern[bytes], ...] = ()
    allow_methods: tuple[bytes, ...] = ()
    allow_headers: tuple[bytes, ...] = ()
    expose_headers: tuple[bytes, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False
    forward_not_matching_preflights: bool = True
    any_origin: bool = field(default=False, init=False)
    """`*` is allowed: every origin matches."""
    wildcard: bool = field(default=False, init=False)
    """Answer `*` instead of echoing the origin (any origin, no credentials)."""
    preflight_headers: tuple[tuple[bytes, bytes], ...] = field(default=(), init=False)
    """What a preflight answer carries besides Access-Control-Allow-Origin."""
    expose: bytes = field(default=b"", init=False)
    """The Access-Control-Expose-Headers value, or empty."""

    def __post_init__(self) -> None:
        any_origin = b"*" in self.allow_origin
        object.__setattr__(self, "any_origin", any_origin)
        object.__setattr__(self, "wildcard", any_origin and not self.allow_credentials)
        object.__setattr__(self, "expose", b", ".join(self.expose_headers))
        headers: list[tuple[bytes, bytes]] = []
        if self.allow_methods:
            headers.append((ALLOW_METHODS, b", ".join(self.allow_methods)))
        if self.allow_headers:
            headers.append((ALLOW_HEADERS, b", ".join(self.allow_headers)))
        if self.max_age is not None:
            headers.append((MAX_AGE, b"%d" % self.max_age))
        if self.allow_credentials:
            headers.append((ALLOW_CREDENTIALS, b"true"))
        object.__setattr__(self, "preflight_headers", tuple(headers))

    def allows(self, origin: bytes) -> bool:
        if self.any_origin or origin in self.allow_origin:
            return True
        return any(pattern.fullmatch(origin) is not None for pattern in self.allow_origin_regex)


def parse_config(node: Node, context: ParseContext) -> CorsConfig:
    node.only("allow_origin", "allow_origin_regex", "allow_methods", "allow_headers",
              "expose_headers", "max_age", "allow_credentials",
              "forward_not_matching_preflights")  # fmt: skip
    origins = frozenset(_origin(node, text) for text in string_list(node, "allow_origin"))
    patterns = _patterns(node, "allow_origin_regex")
    if not origins and not patterns:
        node.problem("configure allow_origin or allow_origin_regex (no origin is allowed)")
    max_age = node.duration("max_age", -1.0)
    return CorsConfig(
        allow_origin=origins,
        allow_origin_regex=patterns,
        allow_methods=_methods(node, "allow_methods"),
        allow_headers=header_names(node, "allow_headers"),
        expose_headers=header_names(node, "expose_headers"),
        max_age=int(max_age) if max_age >= 0 else None,
        allow_credentials=node.flag("allow_credentials", False),
        forward_not_matching_preflights=node.flag("forward_not_matching_preflights", True),
    )


def _origin(node: Node, text: str) -> bytes:
    if text.endswith("/"):
        node.problem(f"{text!r}: an origin is scheme://host[:port], without a path", "allow_origin")
    return header_value(node, "allow_origin", text)


def _patterns(node: Node, key: str) -> tuple[re.Pattern[bytes], ...]:
    patterns = []
    for index, text in enumerate(string_list(node, key)):
        try:
            patterns.append(re.compile(text.encode()))
        except re.error as exc:
            node.problem(f"invalid regex: {exc}", f"{key}[{index}]")
    return tuple(patterns)


def _methods(node: Node, key: str) -> tuple[bytes, ...]:
    methods = []
    for text in string_list(node, key):
        if text != "*" and not _METHOD.fullmatch(text):
            node.problem(f"{text!r} is not an HTTP method", key)
        methods.append(text.upper().encode("ascii", "replace"))
    return tuple(methods)


def create_factory(config: CorsConfig, context: HttpFactoryContext) -> StreamFilterFactory:
    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        return CorsFilter(config, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory, parse_per_route=parse_config)


class CorsFilter(StreamFilter):
    __slots__ = ("_allowed", "_callbacks", "_config", "_decoded")
    encodes = True

    def __init__(self, config: CorsConfig, callbacks: StreamCallbacks) -> None:
        self._config = config
        self._callbacks = callbacks
        self._allowed: bytes | None = None
        """The request's origin when the response must carry CORS headers."""
        self._decoded = False

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        self._decoded = True
        headers = request.headers
        origin = headers.get(b"origin")
        if origin is None:
            return CONTINUE
        config = self._effective()
        allowed = config.allows(origin)
        if request.method == b"OPTIONS" and REQUEST_METHOD in headers:
            return self._preflight(config, origin, allowed)
        if allowed:
            self._allowed = origin
        return CONTINUE

    def _effective(self) -> CorsConfig:
        override: CorsConfig | None = self._callbacks.per_route_config(NAME)
        return self._config if override is None else override

    def _preflight(self, config: CorsConfig, origin: bytes, allowed: bool) -> FilterStatus:
        if not allowed:
            if config.forward_not_matching_preflights:
                return CONTINUE
            self._callbacks.send_local_reply(200, details="cors preflight: origin not allowed")
            return STOP
        headers = Headers(config.preflight_headers)
        _allow_origin(headers, config, origin)
        self._callbacks.send_local_reply(200, headers=headers)  # a success: no failure reason
        return STOP

    def encode_headers(self, response: ResponseHeaders, end_stream: bool) -> FilterStatus:
        origin = self._allowed
        if origin is None:
            if self._decoded:
                return CONTINUE
            # A filter before this one answered before the request reached us.
            origin = self._callbacks.request.headers.get(b"origin")
            if origin is None or not self._effective().allows(origin):
                return CONTINUE
        if response.informational:
            return CONTINUE
        config = self._effective()
        headers = response.headers
        _allow_origin(headers, config, origin)
        if config.allow_credentials:
            headers.set(ALLOW_CREDENTIALS, b"true")
        if config.expose:
            headers.set(EXPOSE_HEADERS, config.expose)
        return CONTINUE


def _allow_origin(headers: Headers, config: CorsConfig, origin: bytes) -> None:
    if config.wildcard:
        headers.set(ALLOW_ORIGIN, b"*")
        return
    headers.set(ALLOW_ORIGIN, origin)
    vary = headers.get(b"vary")
    if vary is None or (vary != b"*" and b"origin" not in vary.lower()):
        headers.add(b"vary", b"origin")
