"""The network filter contract (Envoy's `Network::Filter`, MOSN's stream filters).

A factory is built once from config; it makes one filter instance per downstream
connection. Read filters see data in configuration order, write filters in reverse
order. Each hook answers `CONTINUE` (hand the same data to the next filter) or `STOP`
(this filter consumed or holds the data; it may pass data on later through
`inject_read_data` / `inject_write_data`, or resume a stopped chain with
`continue_reading`). A terminal filter (tcp_proxy, http, redis_proxy, ...) is last in
the read chain and owns the upstream side.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from proxy.stream_info import StreamInfo

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from proxy.overload import OverloadState
    from proxy.upstream.cluster import ClusterManager
    from runtime.runtime import Runtime


T = TypeVar("T")


class FilterStatus(enum.Enum):
    CONTINUE = 0
    STOP = 1


CONTINUE = FilterStatus.CONTINUE
STOP = FilterStatus.STOP


class ConnectionCallbacks(Protocol):
    """What a filter may do to the downstream connection it is attached to."""

    @property
    def info(self) -> StreamInfo: ...

    def write(self, data: bytes, end_stream: bool = False) -> None:
        """Send data downstream through the write filters; end_stream half-closes."""

    def close(self, abort: bool = False) -> None:
        """Close after flushing what is buffered, or at once with abort=True."""

    def read_disable(self, disable: bool) -> None:
        """Pause (True) or resume (False) reading; calls nest like Envoy's readDisable."""

    def continue_reading(self) -> None:
        """Resume a read chain that a filter stopped in on_new_connection."""

    def inject_read_data(self, data: bytes, end_stream: bool) -> None:
        """Hand data to the read filters after the calling one."""

    def inject_write_data(self, data: bytes, end_stream: bool) -> None:
        """Hand data to the write filters after the calling one."""

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close the connection after this long with no bytes in either direction."""


class NetworkFilter:
    """Base for read and/or write filters; override only the hooks you need."""

    __slots__ = ()
    reads: bool = True
    writes: bool = False

    def on_new_connection(self) -> FilterStatus:
        return CONTINUE

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def on_write(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def on_above_write_buffer_high_watermark(self) -> None:
        """The downstream socket is not keeping up: stop producing data for it."""

    def on_below_write_buffer_low_watermark(self) -> None:
        """The downstream socket drained: producing may resume."""

    def on_close(self) -> None:
        """The downstream connection is gone (either side closed it)."""

    def on_drain(self) -> None:
        """The listener is draining: wind the connection down gracefully (e.g. GOAWAY).

        Called at most once. Filters that do nothing here are cut at the drain timeout.
        """

    def close_if_idle(self) -> bool:
        """Close the connection gracefully if nothing is in flight or partly received (a
        kept-alive HTTP connection between requests, a Redis client with no reply due);
        True when it did. Asked of the terminal filter when the listener needs room (at
        max_connections, or under overload); a filter that cannot tell keeps it (False)."""
        return False


FilterFactory = Callable[[ConnectionCallbacks], NetworkFilter]


class FactoryContext(Protocol):
    """What a filter factory may use when it is built for one listener."""

    @property
    def cluster_manager(self) -> ClusterManager: ...

    @property
    def listener_name(self) -> str: ...

    @property
    def runtime(self) -> Runtime | None:
        """The application runtime, when the config has a `runtime:` section."""

    @property
    def overload(self) -> OverloadState:
        """What the overload manager asks of the data path (refuse new requests)."""

    def access_log(self, path: str | None) -> Callable[[str], None]:
        """A function that writes one line to the access log at `path` (batched)."""

    def add_collector(self, collector: Collector) -> None:
        """Export more metrics on /metrics."""

    def singleton(self, key: str, make: Callable[[], T]) -> T:
        """One object per server for `key` (e.g. a stats collector every listener shares)."""

    def on_retire(self, release: Callable[[], None]) -> None:
        """Call `release` once the filter chains built with this context are out of service
        (a reload replaced them, or their listener was removed) and their last connection
        has closed: give back what the factory holds (e.g. pools leased from a cluster)."""
