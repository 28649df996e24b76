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
from dataclasses import dataclass, field
from typing import Protocol

from proxy.config.units import Address


class ListenerFilterStatus(enum.Enum):
    CONTINUE = 0
    """Done with this connection: run the next listener filter."""
    NEED_DATA = 1
    """Call on_data again when more bytes have arrived."""
    CLOSE = 2
    """Refuse the connection: it is closed before any filter chain sees it (the filter
    has logged and counted why)."""


CONTINUE = ListenerFilterStatus.CONTINUE
NEED_DATA = ListenerFilterStatus.NEED_DATA
CLOSE = ListenerFilterStatus.CLOSE


class SocketOptions(Protocol):
    """The part of the accepted socket listener filters may read (socket options)."""

    def getsockopt(self, level: int, option: int, buflen: int) -> bytes: ...


@dataclass(slots=True)
class ConnectionMetadata:
    """What listener filters found out about a connection; filter chains match on it."""

    local: Address | None = None
    remote: Address | None = None
    protocol: str | None = None
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    original_destination: Address | None = None
    sock: SocketOptions | None = None
    """The accepted socket, for filters that read socket options (original_dst)."""
    events: dict[str, int] = field(default_factory=dict)
    """The listener's per-event counters (exported as mecha_listener_filter_events_total)."""

    def count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1


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
