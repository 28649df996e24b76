"""tls_inspector: reads a TLS ClientHello's server name and ALPN (Envoy's filter of that name).

Only TLS is looked for, so a listener that terminates TLS can pick its filter chain by SNI
(`match.server_names`) without sniffing other protocols. A connection that does not start
with a TLS handshake record is left as it is (protocol unknown) after its first byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from filters.listener.api import (
    CONTINUE,
    NEED_DATA,
    ConnectionMetadata,
    ListenerFilter,
    ListenerFilterFactory,
    ListenerFilterStatus,
)
from filters.listener.registry import ListenerFilterSpec
from protocols.sniff import TLS
from protocols.tls_hello import MAX_HELLO, TlsHelloError, looks_like_tls, parse_client_hello
from proxy.config.context import ParseContext
from proxy.config.reader import Node


@dataclass(frozen=True, slots=True)
class TlsInspectorConfig:
    pass


def parse_config(node: Node, context: ParseContext) -> TlsInspectorConfig:
    node.only()
    return TlsInspectorConfig()


class TlsInspector(ListenerFilter):
    __slots__ = ()

    def max_bytes(self) -> int:
        return MAX_HELLO

    def on_accept(self, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        return NEED_DATA

    def on_data(self, prefix: bytes, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        verdict = looks_like_tls(prefix)
        if verdict is None:
            return NEED_DATA
        if not verdict:
            return CONTINUE
        metadata.protocol = TLS
        try:
            hello = parse_client_hello(prefix)
        except TlsHelloError:
            return CONTINUE  # TLS without a readable hello: the handshake will tell
        if hello is None:
            return NEED_DATA
        metadata.server_name = hello.server_name
        metadata.alpn = hello.alpn
        return CONTINUE


def create_factory(config: TlsInspectorConfig) -> ListenerFilterFactory:
    return TlsInspector


SPEC = ListenerFilterSpec(parse_config, create_factory)
