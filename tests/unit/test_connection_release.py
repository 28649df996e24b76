"""A closed connection is freed by reference counting, chain and buffers with it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator

import msgpack
import pytest

from filters.network.api import ConnectionCallbacks, NetworkFilter
from filters.network.rpc_proxy.filter import create_factory
from filters.network.rpc_proxy.session import RpcSession
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.parse import parse_config
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from proxy.upstream.cluster import ClusterManager
from tests.unit.fakes import FakeTransport
from tests.unit.test_http_drain import Context


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


async def test_a_closed_rpc_proxy_connection_with_its_own_upstream_needs_no_cyclic_gc(
    no_cyclic_gc: None,
) -> None:
    """per_client: session -> its pools -> the session as their owner, broken by the close."""
    document = {
        "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "filters": [{
            "name": "rpc_proxy", "config": {"upstream_connections": "per_client",
                                            "routes": [{"cluster": "app"}]}}]}],
        "clusters": [{"name": "app", "endpoints": ["127.0.0.1:1"]}],
    }  # fmt: skip
    config = parse_config(document)
    context = Context()
    context.cluster_manager = ClusterManager(config.clusters)
    rpc = config.listeners[0].filter_chains[0].filters[0]
    factory = create_factory(rpc.config, context)
    made: list[NetworkFilter] = []

    def remembered(callbacks: ConnectionCallbacks) -> NetworkFilter:
        made.append(factory(callbacks))
        return made[-1]

    listener = Listener(config.listeners[0], [FilterChain("default", FilterChainMatch(),
                                                          (remembered,))])  # fmt: skip
    connection = DownstreamConnection(listener)
    connection.connection_made(FakeTransport())
    connection.data_received(msgpack.packb([2, "note", []]))  # opens its own upstream
    made.clear()
    assert len(living(RpcSession)) == 1  # slotted, so no weakref: count the live ones
    connection.connection_lost(None)
    del connection
    await asyncio.sleep(0)  # the cancelled connect task lets go of the upstream connection
    await asyncio.sleep(0)
    assert living(RpcSession) == []


def living(kind: type) -> list[object]:
    return [thing for thing in gc.get_objects() if isinstance(thing, kind)]
