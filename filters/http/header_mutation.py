"""header_mutation: add, set and remove request and response headers.

```yaml
- name: header_mutation
  config:
    request:
      add: [{name: x-team, value: payments}]   # append: true (default) keeps existing values
      set: [{name: x-env, value: prod}]         # replaces every existing value
      remove: [x-debug]
    response:
      remove: [server]
```

Removals run first, then additions, then sets. Response mutations apply to every
response, local replies included (a 429 or a 503 from a fault too). A route's
`filters.header_mutation` block replaces the whole filter config for that route. Framing
headers (content-length, transfer-encoding) and `host` (use the route's host_rewrite)
cannot be changed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from filters.http.api import (
    CONTINUE,
    FilterStatus,
    HttpFactoryContext,
    StreamCallbacks,
    StreamFilter,
    StreamFilterFactory,
)
from filters.http.config_values import header_name, header_names, header_value
from filters.http.registry import HttpFilterSpec
from filters.http.route import HeaderMutation
from protocols.http.events import RequestHeaders, ResponseHeaders
from proxy.config.context import ParseContext
from proxy.config.reader import Node

NAME = "header_mutation"
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class HeaderMutationConfig:
    request: HeaderMutation
    response: HeaderMutation


def parse_config(node: Node, context: ParseContext) -> HeaderMutationConfig:
    node.only("request", "response")
    if not (node.has("request") or node.has("response")):
        node.problem("configure at least one of: request, response")
    return HeaderMutationConfig(
        request=_mutation(node.section("request"), _FRAMING | {b"host"}),
        response=_mutation(node.section("response"), _FRAMING),
    )


def _mutation(node: Node, forbidden: frozenset[bytes]) -> HeaderMutation:
    node.only("add", "set", "remove")
    entries = [_entry(item, forbidden, append=True) for item in node.items("add")]
    entries += [_entry(item, forbidden, append=False) for item in node.items("set")]
    removes = header_names(node, "remove")
    for name in removes:
        if name in forbidden:
            node.problem(f"{name.decode()} cannot be removed here", "remove")
    return HeaderMutation(tuple(entries), removes)


def _entry(node: Node, forbidden: frozenset[bytes], append: bool) -> tuple[bytes, bytes, bool]:
    if not node.expect_mapping():
        return b"", b"", append
    allowed = ("name", "value", "append") if append else ("name", "value")
    node.only(*allowed)
    name = header_name(node, "name", node.text("name"))
    if name in forbidden:
        node.problem(f"{name.decode()} cannot be changed here", "name")
    value = header_value(node, "value", node.text("value"))
    return name, value, node.flag("append", True) if append else False


def create_factory(
    config: HeaderMutationConfig, context: HttpFactoryContext
) -> StreamFilterFactory:
    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        return HeaderMutationFilter(config, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory, parse_per_route=parse_config)


class HeaderMutationFilter(StreamFilter):
    __slots__ = ("_callbacks", "_config")
    encodes = True

    def __init__(self, config: HeaderMutationConfig, callbacks: StreamCallbacks) -> None:
        self._config = config
        self._callbacks = callbacks

    def _effective(self) -> HeaderMutationConfig:
        override: HeaderMutationConfig | None = self._callbacks.per_route_config(NAME)
        return self._config if override is None else override

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        mutation = self._effective().request
        if mutation:
            mutation.apply(request.headers)
        return CONTINUE

    def encode_headers(self, response: ResponseHeaders, end_stream: bool) -> FilterStatus:
        mutation = self._effective().response
        if mutation and not response.informational:
            mutation.apply(response.headers)
        return CONTINUE
