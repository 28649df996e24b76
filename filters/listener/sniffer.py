"""protocol_sniffer: one port for many protocols (MOSN's Auto protocol).

Looks at the first bytes (protocols/sniff.py) and sets `metadata.protocol` to http1,
http2, redis, mqtt, msgpack_rpc or tls; for TLS it also reads the ClientHello's server
name and ALPN. What no rule recognises within `max_bytes` is left unknown: the listener
then uses its default chain, if it has one, or closes the connection.
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
from protocols.sniff import NEED_MORE, TLS, UNKNOWN, detect
from protocols.tls_hello import MAX_HELLO, TlsHelloError, parse_client_hello
from proxy.config.context import ParseContext
from proxy.config.reader import Node


@dataclass(frozen=True, slots=True)
class SnifferConfig:
    max_bytes: int = 64
    """For plain-text protocols; a TLS ClientHello may take up to 16 KiB more."""
    read_client_hello: bool = True


def parse_config(node: Node, context: ParseContext) -> SnifferConfig:
    node.only("max_bytes", "read_client_hello")
    return SnifferConfig(
        max_bytes=node.size("max_bytes", 64, minimum=24),
        read_client_hello=node.flag("read_client_hello", True),
    )


class Sniffer(ListenerFilter):
    __slots__ = ("_config",)

    def __init__(self, config: SnifferConfig) -> None:
        self._config = config

    def max_bytes(self) -> int:
        return MAX_HELLO if self._config.read_client_hello else self._config.max_bytes

    def on_accept(self, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        return NEED_DATA

    def on_data(self, prefix: bytes, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        if metadata.protocol != TLS:
            verdict = detect(prefix)
            if verdict == NEED_MORE and len(prefix) < self._config.max_bytes:
                return NEED_DATA
            if verdict in (NEED_MORE, UNKNOWN):
                return CONTINUE  # unknown: the default chain decides
            metadata.protocol = verdict
            if verdict != TLS or not self._config.read_client_hello:
                return CONTINUE
        try:
            hello = parse_client_hello(prefix)
        except TlsHelloError:
            return CONTINUE  # TLS, but no readable hello: match on the protocol alone
        if hello is None:
            return NEED_DATA
        metadata.server_name = hello.server_name
        metadata.alpn = hello.alpn
        return CONTINUE


def create_factory(config: SnifferConfig) -> ListenerFilterFactory:
    return lambda: Sniffer(config)


SPEC = ListenerFilterSpec(parse_config, create_factory)
