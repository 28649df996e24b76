"""A downstream connection: the asyncio edge that drives a network filter chain.

The connection owns the transport, the per-connection `StreamInfo`, flow control and
the idle timer; filters reach it only through `FilterCallbacks`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from filters.listener.api import ConnectionMetadata
from filters.network.api import STOP, FilterFactory, NetworkFilter
from proxy.config.units import Address
from proxy.filter_chain import ChainGeneration, FilterChain, select
from proxy.inspection import Inspection
from proxy.stream_info import ResponseFlag, StreamInfo
from proxy.tls import describe, start_server_tls
from proxy.upstream.original_dst import DESTINATION

if TYPE_CHECKING:
    from proxy.listener import Listener

log = logging.getLogger("mecha.connection")

_IDLE_CHECKS = 4
"""The idle timer looks this many times per timeout, so it fires within 1.25x of it."""


NO_METADATA = ConnectionMetadata()


def _address(address: object) -> Address | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return Address(str(address[0]), int(address[1]))
    return None


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address or "-")


class FilterCallbacks:
    """What one filter may do to its connection; knows the filter's place in the chains."""

    __slots__ = ("_connection", "_read_index", "_write_index", "info", "read_disable", "write")

    def __init__(self, connection: DownstreamConnection) -> None:
        self._connection = connection
        self._read_index = -1
        self._write_index = -1
        # Hot calls go straight to the connection, without a hop through this object.
        self.write = connection.write
        self.read_disable = connection.read_disable
        self.info = connection.info

    def close(self, abort: bool = False) -> None:
        self._connection.close(abort)

    def continue_reading(self) -> None:
        self._connection.start_read_chain(self._read_index + 1)

    def inject_read_data(self, data: bytes, end_stream: bool) -> None:
        self._connection.run_read_chain(data, end_stream, self._read_index + 1)

    def inject_write_data(self, data: bytes, end_stream: bool) -> None:
        self._connection.run_write_chain(data, end_stream, self._write_index + 1)

    def set_idle_timeout(self, seconds: float | None) -> None:
        self._connection.set_idle_timeout(seconds)


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_destination",
        "_drain_told",
        "_filters",
        "_generation",
        "_idle_handle",
        "_idle_quiet",
        "_idle_seen",
        "_idle_timeout",
        "_inspect_timer",
        "_inspection",
        "_read_disabled",
        "_read_eof",
        "_read_filters",
        "_single_reader",
        "_tls_chain",
        "_write_eof",
        "_write_filters",
        "closed",
        "info",
        "listener",
        "transport",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.info = StreamInfo(listener.name, "-", "-")
        self.closed = False
        self._filters: list[NetworkFilter] = []
        self._read_filters: list[NetworkFilter] = []
        self._write_filters: list[NetworkFilter] = []
        self._single_reader: NetworkFilter | None = None
        self._read_disabled = 0
        self._read_eof = False
        self._write_eof = False
        self._idle_timeout: float | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_seen = -1
        self._idle_quiet = 0
        self._inspection: Inspection | None = None
        self._inspect_timer: asyncio.TimerHandle | None = None
        self._destination: Address | None = None
        """The original destination (original_dst), set while filters run (DESTINATION)."""
        self._tls_chain: FilterChain | None = None
        """The chain waiting for its TLS handshake to finish."""
        self._drain_told = False
        self._generation: ChainGeneration | None = None
        """The build of the chains this connection picked from (held until it closes)."""

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._tls_chain is not None:  # called again by the TLS layer: handshake done
            self._tls_established(cast(asyncio.Transport, transport))
            return
        self.transport = transport = cast(asyncio.Transport, transport)
        self.info.downstream_remote = _peer(transport.get_extra_info("peername"))
        self.info.downstream_local = _peer(transport.get_extra_info("sockname"))
        if not self.listener.connection_opened(self):
            self.closed = True
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self.listener.config.buffer_limit)
        self.set_idle_timeout(self.listener.config.idle_timeout)
        if not self.listener.listener_filters:
            self._begin(NO_METADATA, b"")
            return
        metadata = ConnectionMetadata(
            local=_address(transport.get_extra_info("sockname")),
            remote=_address(transport.get_extra_info("peername")),
            sock=transport.get_extra_info("socket"),
            events=self.listener.stats.filter_events,
        )
        self._inspection = Inspection([make() for make in self.listener.listener_filters], metadata)
        try:
            done = self._inspection.start()
        except Exception:
            self._filter_failed("a listener filter")
            return
        if done:
            self._inspected()
        else:
            timeout = self.listener.config.listener_filters_timeout
            self._inspect_timer = asyncio.get_running_loop().call_later(timeout, self._inspect_late)

    def _begin(self, metadata: ConnectionMetadata, prefix: bytes) -> None:
        """Pick the filter chain, start it, and hand it the bytes inspection peeked at."""
        chain = select(self.listener.chains, metadata)
        if chain is None:
            self.listener.stats.no_filter_chain += 1
            remote, protocol = self.info.downstream_remote, metadata.protocol
            log.info("listener %r: no filter chain for %s (protocol %s); closing",
                     self.listener.name, remote, protocol)  # fmt: skip
            self.close(abort=True)
            return
        self._generation = self.listener.generation
        self._generation.attach()
        self._destination = metadata.original_destination
        if chain.tls is not None and chain.tls.context is not None:
            self._start_tls(chain, prefix)
            return
        self._start_chain(chain, prefix)

    def _start_chain(self, chain: FilterChain, prefix: bytes) -> None:
        token = DESTINATION.set(self._destination) if self._destination is not None else None
        try:
            self._build_chain(chain.factories)
            self.start_read_chain(0)
            if prefix:
                self._deliver(prefix)
            if self.listener.draining:  # the drain began during inspection or TLS
                self.drain()
        except Exception:
            self._filter_failed("on_new_connection")
        finally:
            if token is not None:
                DESTINATION.reset(token)
        if self._read_disabled:
            # uvloop starts reading right after connection_made returns, whatever a
            # filter asked for in it; pause again before the first read.
            asyncio.get_running_loop().call_soon(self._reapply_read_disable)

    def _inspect(self, data: bytes) -> None:
        assert self._inspection is not None
        try:
            done = self._inspection.feed(data)
        except Exception:
            self._filter_failed("a listener filter")
            return
        if done:
            self._inspected()

    def _inspected(self) -> None:
        inspection = self._inspection
        assert inspection is not None
        self._inspection = None
        if self._inspect_timer is not None:
            self._inspect_timer.cancel()
            self._inspect_timer = None
        if inspection.refused:  # the filter logged and counted why
            self.close(abort=True)
            return
        self._begin(inspection.metadata, inspection.prefix)

    def _inspect_late(self) -> None:
        """Listener filters did not decide in time: the default chain, if any, takes it."""
        self._inspect_timer = None
        if self._inspection is not None and not self.closed:
            self.listener.stats.listener_filter_timeouts += 1
            self._inspection.end_of_input()
            self._inspected()

    # -- TLS termination ----------------------------------------------------------------------

    def _start_tls(self, chain: FilterChain, prefix: bytes) -> None:
        tls = chain.tls
        assert tls is not None and tls.context is not None and self.transport is not None
        self._tls_chain = chain
        try:
            waiter = start_server_tls(
                self.transport, self, tls.context, tls.handshake_timeout, prefix
            )
        except Exception:
            self._tls_chain = None
            self._filter_failed("starting TLS")
            return
        waiter.add_done_callback(self._tls_handshake_done)

    def _tls_established(self, transport: asyncio.Transport) -> None:
        chain = self._tls_chain
        assert chain is not None
        self._tls_chain = None
        self.transport = transport
        self.info.downstream_tls = True
        transport.set_write_buffer_limits(high=self.listener.config.buffer_limit)
        self._start_chain(chain, b"")

    def _tls_handshake_done(self, waiter: asyncio.Future[None]) -> None:
        """A failed handshake never reaches connection_lost: account for the close here."""
        error = None if waiter.cancelled() else waiter.exception()
        if self._tls_chain is None:
            return  # established (connection_made ran) or already accounted for
        self._tls_chain = None
        self.listener.stats.ssl_handshake_errors += 1
        log.info("listener %r: TLS handshake with %s failed: %s",
                 self.listener.name, self.info.downstream_remote, describe(error))  # fmt: skip
        self.closed = True
        self._cancel_idle_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        self._detach()
        self.listener.connection_closed(self)

    def _reapply_read_disable(self) -> None:
        if self._read_disabled and self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.info.bytes_received += len(data)
        reader = self._single_reader
        if reader is not None and self._destination is None:
            try:  # the common case, inlined: one read filter, no original destination
                reader.on_data(data, False)
            except Exception:
                self._filter_failed("on_data")
            return
        if self._inspection is not None:
            self._inspect(data)
            return
        if self._destination is None:
            self._deliver(data)
            return
        token = DESTINATION.set(self._destination)
        try:
            self._deliver(data)
        finally:
            DESTINATION.reset(token)

    def _deliver(self, data: bytes) -> None:
        try:
            reader = self._single_reader
            if reader is not None:
                reader.on_data(data, False)
            else:
                self.run_read_chain(data, False, 0)
        except Exception:
            self._filter_failed("on_data")

    def eof_received(self) -> bool:
        self._read_eof = True
        if self._inspection is not None:
            self._inspection.end_of_input()
            self._inspected()
        try:
            self.run_read_chain(b"", True, 0)
        except Exception:
            self._filter_failed("on_data")
        if self._write_eof:
            self.close()
        # TLS has no half-close: the TLS layer closes after the peer's close_notify anyway.
        return not self.info.downstream_tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_idle_timer()
        if self._inspect_timer is not None:
            self._inspect_timer.cancel()
        if exc is not None and not self._read_eof:
            self.info.flags.add(ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION)
        for filter_ in self._filters:
            try:
                filter_.on_close()
            except Exception:
                log.exception(
                    "listener %r: filter %s failed in on_close",
                    self.listener.name,
                    type(filter_).__name__,
                )
        self._detach()
        self.listener.connection_closed(self)
        # Filters hold their callbacks, which hold this connection: drop the chain so the
        # whole connection is freed by reference counting, not left to the cyclic GC (a
        # busy listener would pile up closed connections and their buffers until then).
        self._filters, self._read_filters, self._write_filters = [], [], []
        self._single_reader = None

    def _detach(self) -> None:
        generation, self._generation = self._generation, None
        if generation is not None:
            generation.detach()

    def pause_writing(self) -> None:
        for filter_ in self._filters:
            filter_.on_above_write_buffer_high_watermark()

    def resume_writing(self) -> None:
        for filter_ in self._filters:
            filter_.on_below_write_buffer_low_watermark()

    def drain(self) -> None:
        """The listener is draining: tell each filter once, so it can wind down gracefully."""
        if self._drain_told or self.closed or not self._filters:
            return  # no chain yet: _start_chain tells it once built
        self._drain_told = True
        for filter_ in self._filters:
            try:
                filter_.on_drain()
            except Exception:
                self._filter_failed("on_drain")
                return

    def close_if_idle(self) -> bool:
        """Close gracefully if the terminal filter has nothing in flight; True if it did."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing() or not self._read_filters:
            return False  # (still inspecting or in its TLS handshake: not idle yet)
        try:
            return self._read_filters[-1].close_if_idle()
        except Exception:
            self._filter_failed("close_if_idle")
            return True

    # -- filter chains ----------------------------------------------------------------------

    def _build_chain(self, factories: tuple[FilterFactory, ...]) -> None:
        made: list[tuple[NetworkFilter, FilterCallbacks]] = []
        for factory in factories:
            callbacks = FilterCallbacks(self)
            made.append((factory(callbacks), callbacks))
        for filter_, callbacks in made:
            self._filters.append(filter_)
            if filter_.reads:
                callbacks._read_index = len(self._read_filters)
                self._read_filters.append(filter_)
        for filter_, callbacks in reversed(made):
            if filter_.writes:
                callbacks._write_index = len(self._write_filters)
                self._write_filters.append(filter_)
        if len(self._read_filters) == 1:
            self._single_reader = self._read_filters[0]

    def start_read_chain(self, start: int) -> None:
        for filter_ in self._read_filters[start:]:
            if filter_.on_new_connection() is STOP:
                return

    def run_read_chain(self, data: bytes, end_stream: bool, start: int) -> None:
        for filter_ in self._read_filters[start:]:
            if filter_.on_data(data, end_stream) is STOP:
                return

    def run_write_chain(self, data: bytes, end_stream: bool, start: int) -> None:
        for filter_ in self._write_filters[start:]:
            if filter_.on_write(data, end_stream) is STOP:
                return
        self._send(data, end_stream)

    def _filter_failed(self, hook: str) -> None:
        log.exception(
            "listener %r: a filter failed in %s; closing %s",
            self.listener.name,
            hook,
            self.info.downstream_remote,
        )
        self.listener.stats.filter_errors += 1
        self.close(abort=True)

    # -- what filters may do ----------------------------------------------------------------

    def write(self, data: bytes, end_stream: bool = False) -> None:
        if self._write_filters or end_stream or self.closed or self.transport is None:
            self.run_write_chain(data, end_stream, 0)
            return
        # The common case, inlined: plain data, no write filters.
        self.info.bytes_sent += len(data)
        self.transport.write(data)

    def _send(self, data: bytes, end_stream: bool) -> None:
        transport = self.transport
        if self.closed or transport is None:
            return
        if data:
            self.info.bytes_sent += len(data)
            transport.write(data)
        if end_stream and not self._write_eof:
            self._write_eof = True
            if self._read_eof or not transport.can_write_eof():
                self.close()
            else:
                transport.write_eof()

    def close(self, abort: bool = False) -> None:
        if self.transport is None or (self.transport.is_closing() and not abort):
            return
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def read_disable(self, disable: bool) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        if disable:
            self._read_disabled += 1
            if self._read_disabled == 1:
                transport.pause_reading()
        elif self._read_disabled > 0:
            self._read_disabled -= 1
            if self._read_disabled == 0:
                transport.resume_reading()

    # -- idle timeout -------------------------------------------------------------------------

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Checked a few times per period against byte counters, not reset per read."""
        self._cancel_idle_timer()
        self._idle_timeout = seconds
        if seconds and not self.closed:
            self._idle_quiet = 0
            self._idle_seen = -1
            self._schedule_idle_check()

    def _schedule_idle_check(self) -> None:
        assert self._idle_timeout is not None
        loop = asyncio.get_running_loop()
        self._idle_handle = loop.call_later(self._idle_timeout / _IDLE_CHECKS, self._idle_check)

    def _idle_check(self) -> None:
        moved = self.info.bytes_received + self.info.bytes_sent
        if moved != self._idle_seen:
            self._idle_seen = moved
            self._idle_quiet = 0
        else:
            self._idle_quiet += 1
            if self._idle_quiet >= _IDLE_CHECKS:
                self._idle_handle = None
                self.listener.stats.idle_timeouts += 1
                self.info.fail(ResponseFlag.STREAM_IDLE_TIMEOUT, "idle timeout")
                self.close()
                return
        self._schedule_idle_check()

    def _cancel_idle_timer(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
