"""A closed connection is freed by reference counting, chain and buffers with it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from filters.network.api import ConnectionCallbacks, NetworkFilter
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from tests.unit.fakes import FakeTransport


class HoldsItsCallbacks(NetworkFilter):
    """As every real filter does: the cycle connection -> filter -> callbacks -> connection."""

    def __init__(self, callbacks: ConnectionCallbacks) -> None:
        self.callbacks = callbacks
        self.buffer = bytearray(64 * 1024)


def remember(made: list[HoldsItsCallbacks]) -> Callable[[ConnectionCallbacks], NetworkFilter]:
    def factory(callbacks: ConnectionCallbacks) -> NetworkFilter:
        made.append(HoldsItsCallbacks(callbacks))
        return made[-1]

    return factory


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_closed_connection_needs_no_cyclic_gc(no_cyclic_gc: None) -> None:
    config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    made: list[HoldsItsCallbacks] = []
    listener = Listener(config, [FilterChain("default", FilterChainMatch(), (remember(made),))])
    connection = DownstreamConnection(listener)
    connection.connection_made(FakeTransport())
    chain = weakref.ref(made.pop())
    connection.connection_lost(None)
    del connection
    assert chain() is None  # the filter, its callbacks and the connection went by refcount
