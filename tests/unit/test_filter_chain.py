"""The network filter chain, driven through a fake transport: order, STOP, inject, flow control."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from filters.network.api import CONTINUE, STOP, ConnectionCallbacks, FilterStatus, NetworkFilter
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from proxy.stream_info import ResponseFlag
from tests.unit.fakes import FakeTransport

Journal = list[str]


class Recorder(NetworkFilter):
    """Logs every hook it sees; answers with a fixed status."""

    writes = True

    def __init__(self, name: str, journal: Journal, callbacks: ConnectionCallbacks,
                 status: FilterStatus = CONTINUE) -> None:  # fmt: skip
        self.name = name
        self.journal = journal
        self.callbacks = callbacks
        self.status = status

    def on_new_connection(self) -> FilterStatus:
        self.journal.append(f"{self.name}.new")
        return self.status

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        self.journal.append(f"{self.name}.data({data.decode()},{end_stream})")
        return self.status

    def on_write(self, data: bytes, end_stream: bool) -> FilterStatus:
        self.journal.append(f"{self.name}.write({data.decode()})")
        return self.status

    def on_close(self) -> None:
        self.journal.append(f"{self.name}.close")


class Upper(NetworkFilter):
    """Transforms data on its way through: consumes the chunk and injects a new one."""

    def __init__(self, callbacks: ConnectionCallbacks) -> None:
        self.callbacks = callbacks

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        self.callbacks.inject_read_data(data.upper(), end_stream)
        return STOP


class Terminal(NetworkFilter):
    """Echoes what reaches it back through the write chain."""

    def __init__(self, callbacks: ConnectionCallbacks) -> None:
        self.callbacks = callbacks

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        self.callbacks.write(data, end_stream)
        return STOP


Factory = Callable[[ConnectionCallbacks], NetworkFilter]


def open_connection(
    *factories: Factory, idle: float | None = None
) -> tuple[DownstreamConnection, FakeTransport]:
    config = ListenerConfig("test", Address("127.0.0.1", 0), (), idle_timeout=idle)
    listener = Listener(config, [FilterChain("default", FilterChainMatch(), factories)])
    connection = DownstreamConnection(listener)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


def recorder(name: str, journal: Journal, status: FilterStatus = CONTINUE) -> Factory:
    return lambda callbacks: Recorder(name, journal, callbacks, status)


async def test_read_filters_run_in_order_and_write_filters_in_reverse() -> None:
    journal: Journal = []
    connection, transport = open_connection(
        recorder("a", journal), recorder("b", journal), Terminal
    )
    connection.data_received(b"hi")
    assert journal == ["a.new", "b.new", "a.data(hi,False)", "b.data(hi,False)",
                       "b.write(hi)", "a.write(hi)"]  # fmt: skip
    assert transport.data == b"hi"
    assert connection.info.bytes_received == 2 and connection.info.bytes_sent == 2


async def test_stop_holds_data_back_from_later_filters() -> None:
    journal: Journal = []
    connection, transport = open_connection(
        recorder("gate", journal, STOP), recorder("late", journal)
    )
    connection.data_received(b"x")
    assert journal == ["gate.new", "gate.data(x,False)"]
    assert transport.data == b""


async def test_continue_reading_resumes_a_stopped_chain() -> None:
    journal: Journal = []
    gate: list[Recorder] = []

    def gate_factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        gate.append(Recorder("gate", journal, callbacks, STOP))
        return gate[0]

    open_connection(gate_factory, recorder("late", journal))
    assert journal == ["gate.new"]
    gate[0].callbacks.continue_reading()
    assert journal == ["gate.new", "late.new"]


async def test_inject_read_data_reaches_only_the_filters_after() -> None:
    journal: Journal = []
    connection, transport = open_connection(
        recorder("first", journal), Upper, recorder("last", journal), Terminal
    )
    connection.data_received(b"abc")
    assert "last.data(ABC,False)" in journal
    assert journal.count("first.data(abc,False)") == 1
    assert transport.data == b"ABC"


async def test_write_end_stream_half_closes_until_the_peer_is_done_too() -> None:
    connection, transport = open_connection(Terminal)
    connection.write(b"bye", end_stream=True)
    assert transport.eof_written and not transport.closed
    assert connection.eof_received() is True
    assert transport.closed and not transport.aborted  # both directions done


async def test_end_stream_after_peer_eof_closes_gracefully() -> None:
    connection, transport = open_connection(Terminal)
    assert connection.eof_received() is True  # keep our side open for the answer
    assert transport.closed and not transport.aborted  # Terminal echoed end_stream


async def test_a_failing_filter_aborts_only_its_connection() -> None:
    class Broken(NetworkFilter):
        def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
            raise RuntimeError("bug")

    connection, transport = open_connection(lambda callbacks: Broken())
    connection.data_received(b"boom")
    assert transport.aborted
    assert connection.listener.stats.filter_errors == 1


async def test_read_disable_nests() -> None:
    connection, transport = open_connection(Terminal)
    connection.read_disable(True)
    connection.read_disable(True)
    connection.read_disable(False)
    assert not transport.reading
    connection.read_disable(False)
    assert transport.reading
    connection.read_disable(False)  # unbalanced enables are ignored
    assert transport.reading


async def test_write_buffer_watermarks_reach_filters() -> None:
    seen: list[str] = []

    class Watcher(NetworkFilter):
        def on_above_write_buffer_high_watermark(self) -> None:
            seen.append("above")

        def on_below_write_buffer_low_watermark(self) -> None:
            seen.append("below")

    connection, transport = open_connection(lambda callbacks: Watcher())
    assert transport.high_water == 1 << 20
    connection.pause_writing()
    connection.resume_writing()
    assert seen == ["above", "below"]


async def test_close_notifies_filters_and_the_listener() -> None:
    journal: Journal = []
    connection, _ = open_connection(recorder("a", journal))
    listener = connection.listener
    assert list(listener.connections) == [connection]
    connection.connection_lost(ConnectionResetError())
    assert journal[-1] == "a.close"
    assert not listener.connections
    assert ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION in connection.info.flags


@pytest.mark.parametrize("traffic", [False, True])
async def test_idle_timeout(traffic: bool) -> None:
    connection, transport = open_connection(Terminal, idle=0.2)
    for _ in range(5):
        await asyncio.sleep(0.06)
        if traffic:
            connection.data_received(b".")
    assert transport.closed is (not traffic)
    assert connection.listener.stats.idle_timeouts == (0 if traffic else 1)
    if not traffic:
        assert ResponseFlag.STREAM_IDLE_TIMEOUT in connection.info.flags
    connection.connection_lost(None)


async def test_max_connections_refuses_the_extra_connection() -> None:
    config = ListenerConfig("test", Address("127.0.0.1", 0), (), max_connections=1)
    listener = Listener(config, [FilterChain("default", FilterChainMatch(), (Terminal,))])
    first, second = DownstreamConnection(listener), DownstreamConnection(listener)
    first.connection_made(FakeTransport())
    refused = FakeTransport()
    second.connection_made(refused)
    assert refused.aborted
    assert listener.stats.cx_overflow == 1
    assert list(listener.connections) == [first]
