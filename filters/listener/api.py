"""The listener filter contract (Envoy's `Network::ListenerFilter`).

Listener filters run in order on each accepted connection, before any network filter.
They may peek at the first bytes (without consuming them: the chosen network filter
chain sees every byte) and record what they learn in `ConnectionMetadata` — the
protocol, the TLS server name and ALPN, the original destination — which then picks
the filter chain.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from proxy.config.units import Address


class ListenerFilterStatus(enum.Enum):
    CONTINUE = 0
    """Done with this connection: run the next listener filter."""
    NEED_DATA = 1
    """Call on_data again when more bytes have arrived."""


CONTINUE = ListenerFilterStatus.CONTINUE
NEED_DATA = ListenerFilterStatus.NEED_DATA


@dataclass(slots=True)
class ConnectionMetadata:
    """What listener filters found out about a connection; filter chains match on it."""

    local: Address | None = None
    remote: Address | None = None
    protocol: str | None = None
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    original_destination: Address | None = None


class ListenerFilter:
    __slots__ = ()

    def max_bytes(self) -> int:
        """How many bytes this filter may need to see; given that many, it must decide."""
        return 0

    def on_accept(self, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        return CONTINUE

    def on_data(self, prefix: bytes, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        """`prefix` is everything received so far (not consumed)."""
        return CONTINUE


ListenerFilterFactory = Callable[[], ListenerFilter]
