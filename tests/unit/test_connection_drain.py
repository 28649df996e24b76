"""A draining listener tells every network filter of its open connections, once each."""

from __future__ import annotations

from collections.abc import Callable

from filters.network.api import ConnectionCallbacks, NetworkFilter
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from tests.unit.fakes import FakeTransport

Factory = Callable[[ConnectionCallbacks], NetworkFilter]


class DrainRecorder(NetworkFilter):
    def __init__(self, name: str, journal: list[str], fail: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail = fail

    def on_drain(self) -> None:
        self.journal.append(f"{self.name}.drain")
        if self.fail:
            raise RuntimeError("broken filter")


def recorder(name: str, journal: list[str], fail: bool = False) -> Factory:
    return lambda callbacks: DrainRecorder(name, journal, fail)


def make_listener(*factories: Factory) -> Listener:
    config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    return Listener(config, [FilterChain("default", FilterChainMatch(), factories)])


def connect(listener: Listener) -> FakeTransport:
    transport = FakeTransport()
    DownstreamConnection(listener).connection_made(transport)
    return transport


async def test_drain_reaches_each_filter_of_each_connection_once() -> None:
    journal: list[str] = []
    listener = make_listener(recorder("a", journal), recorder("b", journal))
    connect(listener)
    connect(listener)
    listener.drain()
    listener.drain()
    assert journal == ["a.drain", "b.drain"] * 2
    assert listener.draining


async def test_a_connection_whose_chain_starts_during_the_drain_is_told_at_once() -> None:
    journal: list[str] = []
    listener = make_listener(recorder("a", journal))
    listener.drain()
    connect(listener)
    assert journal == ["a.drain"]


async def test_a_filter_failing_in_on_drain_aborts_only_its_connection() -> None:
    journal: list[str] = []
    listener = make_listener(recorder("bad", journal, fail=True), recorder("next", journal))
    transport = connect(listener)
    listener.drain()
    assert journal == ["bad.drain"]
    assert transport.aborted
    assert listener.stats.filter_errors == 1


async def test_filters_without_on_drain_keep_their_connection_open() -> None:
    listener = make_listener(lambda callbacks: NetworkFilter())
    transport = connect(listener)
    listener.drain()
    assert not transport.closed
