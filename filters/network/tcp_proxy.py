"""tcp_proxy: the L4 terminal filter. Pipes bytes to an endpoint of a cluster.

Reading from the downstream stays disabled until the upstream connection is up, so
nothing is buffered while connecting. Each side's write buffer filling up pauses
reading on the other side (backpressure both ways); an EOF from either side is
passed on as a half-close, and the connection ends once both directions are done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from filters.network.api import (
    STOP,
    ConnectionCallbacks,
    FactoryContext,
    FilterFactory,
    FilterStatus,
    NetworkFilter,
)
from filters.network.registry import NetworkFilterSpec
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import ResponseFlag, StreamInfo
from proxy.upstream.cluster import Cluster, UpstreamError
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.endpoint import Endpoint


@dataclass(frozen=True, slots=True)
class TcpProxyConfig:
    cluster: str
    idle_timeout: float | None = 3600.0
    max_connect_attempts: int = 1
    access_log: str | None = "stdout"


def parse_config(node: Node, context: ParseContext) -> TcpProxyConfig:
    node.only("cluster", "idle_timeout", "max_connect_attempts", "access_log")
    idle = node.duration("idle_timeout", 3600.0)
    # Plain YAML reads `off` as false; both mean no access log.
    access_log = (
        "off" if node.child("access_log").value is False else node.text("access_log", "stdout")
    )
    return TcpProxyConfig(
        cluster=context.cluster(node),
        idle_timeout=idle or None,
        max_connect_attempts=node.integer("max_connect_attempts", 1, minimum=1, maximum=10),
        access_log=None if access_log == "off" else access_log,
    )


def create_factory(config: TcpProxyConfig, context: FactoryContext) -> FilterFactory:
    cluster = context.cluster_manager[config.cluster]
    write_log = context.access_log(config.access_log) if config.access_log else None

    def factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        return TcpProxy(config, cluster, callbacks, write_log)

    return factory


SPEC = NetworkFilterSpec(parse_config, create_factory, terminal=True)


class TcpProxy(NetworkFilter):
    __slots__ = (
        "_callbacks", "_closed", "_cluster", "_config", "_connecting", "_early", "_log", "upstream",
    )  # fmt: skip

    def __init__(
        self,
        config: TcpProxyConfig,
        cluster: Cluster,
        callbacks: ConnectionCallbacks,
        write_log: Callable[[str], None] | None,
    ) -> None:
        self._config = config
        self._cluster = cluster
        self._callbacks = callbacks
        self._log = write_log
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._early: list[tuple[bytes, bool]] = []
        """Data that arrived before the upstream was up (reading is paused meanwhile)."""
        self.upstream: UpstreamConnection | None = None

    # -- downstream events ----------------------------------------------------------------

    def on_new_connection(self) -> FilterStatus:
        callbacks = self._callbacks
        callbacks.info.upstream_cluster = self._cluster.name
        callbacks.set_idle_timeout(self._config.idle_timeout)
        callbacks.read_disable(True)
        self._connecting = asyncio.create_task(
            self._connect(), name=f"tcp_proxy-connect:{callbacks.info.downstream_remote}"
        )
        return STOP

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        upstream = self.upstream
        if upstream is None:
            self._early.append((data, end_stream))
            return STOP
        if data:
            upstream.write(data)
        if end_stream:
            upstream.write_eof()
        return STOP

    def on_above_write_buffer_high_watermark(self) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(False)

    def on_close(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.upstream is not None:
            self.upstream.close()
        if self._log is not None:
            self._log(format_access_log(self._callbacks.info))

    # -- upstream -------------------------------------------------------------------------

    async def _connect(self) -> None:
        callbacks = self._callbacks
        tried: set[Endpoint] = set()
        failure: UpstreamError | None = None
        for _ in range(self._config.max_connect_attempts):
            try:
                self.upstream = await self._cluster.connect(self, tried)
                break
            except UpstreamError as error:
                failure = error
                if error.endpoint is None:
                    break  # overflow or nothing healthy: another try cannot help
                tried.add(error.endpoint)
        if self.upstream is None:
            assert failure is not None
            if failure.endpoint is not None:
                callbacks.info.upstream_host = failure.endpoint.name
            callbacks.info.fail(failure.flag, failure.reason)
            callbacks.close()
            return
        callbacks.info.upstream_host = self.upstream.endpoint.name
        if self._closed:
            self.upstream.close()
            return
        for data, end_stream in self._early:
            self.on_data(data, end_stream)
        self._early.clear()
        callbacks.read_disable(False)

    def on_upstream_data(self, data: bytes) -> None:
        self._callbacks.write(data)

    def on_upstream_eof(self) -> None:
        self._callbacks.write(b"", end_stream=True)

    def on_upstream_close(self, error: Exception | None) -> None:
        if self._closed:
            return
        if error is not None:
            self._callbacks.info.fail(ResponseFlag.UPSTREAM_CONNECTION_TERMINATION, str(error))
        self._callbacks.close()

    def on_upstream_above_write_buffer_high_watermark(self) -> None:
        self._callbacks.read_disable(True)

    def on_upstream_below_write_buffer_low_watermark(self) -> None:
        self._callbacks.read_disable(False)


def format_access_log(info: StreamInfo) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(info.start_time))
    millis = int(info.start_time * 1000) % 1000
    flags = ",".join(sorted(flag.value for flag in info.flags)) or "-"
    reason = f'"{info.failure_reason}"' if info.failure_reason else "-"
    return (
        f"[{stamp}.{millis:03d}Z] tcp listener={info.listener} "
        f"downstream={info.downstream_remote} upstream={info.upstream_host or '-'} "
        f"cluster={info.upstream_cluster or '-'} rx={info.bytes_received} tx={info.bytes_sent} "
        f"duration_ms={int(info.duration * 1000)} flags={flags} reason={reason}"
    )
