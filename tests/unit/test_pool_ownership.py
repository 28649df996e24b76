"""Who closes upstream pools: the cluster owns them; filter chains lease them and give them
back when they retire; closed pools refuse new work and close connections once idle."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from filters.network.api import ConnectionCallbacks, NetworkFilter
from protocols.rpc import lookup
from proxy.config.model import ClusterConfig, EndpointConfig, FilterChainMatch, ListenerConfig
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import ChainGeneration, FilterChain
from proxy.listener import Listener
from proxy.stream_info import ResponseFlag
from proxy.upstream.cluster import Cluster
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http1_pool import Http1Connection, Http1Pool
from proxy.upstream.http2_pool import Http2Pool
from proxy.upstream.redis_pool import RedisConnection, RedisPool, RedisPoolSettings
from proxy.upstream.rpc_pool import RpcPool, RpcPoolSettings
from tests.unit.fakes import FakeTransport

A, B = Address("10.0.0.1", 6379), Address("10.0.0.2", 6379)
SETTINGS = RedisPoolSettings(timeout=5.0)


def make_cluster(*addresses: Address) -> Cluster:
    return Cluster(ClusterConfig("shards", tuple(EndpointConfig(a) for a in addresses)))


def endpoint(cluster: Cluster, address: Address) -> Endpoint:
    return next(e for e in cluster.endpoints if e.address == address)


class Replies:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def complete(self, reply: bytes) -> None:
        self.got.append(reply)

    def refused(self) -> None:
        raise AssertionError("no protocol error expected")


class Failures:
    """UpstreamCallbacks that only expect a pool failure."""

    def __init__(self) -> None:
        self.failures: list[tuple[ResponseFlag, str]] = []

    def on_pool_failure(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None) -> None:
        self.failures.append((flag, reason))

    def __getattr__(self, name: str) -> Callable[..., None]:
        raise AssertionError(f"unexpected {name}")


# -- chain generations ----------------------------------------------------------------------


def test_a_generation_releases_once_retired_and_its_last_connection_gone() -> None:
    released: list[str] = []
    generation = ChainGeneration()
    generation.on_retire(lambda: released.append("pools"))
    generation.attach()
    generation.attach()
    generation.retire()
    generation.detach()
    assert released == []
    generation.detach()
    assert released == ["pools"]
    generation.retire()
    assert released == ["pools"]  # once


def test_an_unused_generation_releases_when_retired() -> None:
    released: list[str] = []
    generation = ChainGeneration()
    generation.on_retire(lambda: released.append("pools"))
    generation.attach()
    generation.detach()
    assert released == []  # in service: a new connection may come
    generation.retire()
    assert released == ["pools"]


def test_a_failing_release_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    released: list[str] = []
    generation = ChainGeneration()

    def broken() -> None:
        raise RuntimeError("broken")

    generation.on_retire(broken)
    generation.on_retire(lambda: released.append("second"))
    generation.retire()
    assert released == ["second"]
    assert "releasing what a retired filter chain held failed" in caplog.text


class Quiet(NetworkFilter):
    def __init__(self, callbacks: ConnectionCallbacks) -> None:
        self.callbacks = callbacks


async def test_a_reload_releases_the_old_chains_after_their_last_connection() -> None:
    config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    chains = [FilterChain("default", FilterChainMatch(), (Quiet,))]
    old, released = ChainGeneration(), []
    old.on_retire(lambda: released.append("old"))
    listener = Listener(config, chains, (), old)
    connection = DownstreamConnection(listener)
    connection.connection_made(FakeTransport())
    listener.reconfigure(config, chains, (), ChainGeneration())
    assert released == []  # the connection still uses the old chains
    connection.connection_lost(None)
    assert released == ["old"]


async def test_a_drained_listener_releases_its_chains() -> None:
    config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    generation, released = ChainGeneration(), []
    generation.on_retire(lambda: released.append("chains"))
    listener = Listener(config, [], (), generation)
    listener.drain()
    assert released == ["chains"]


# -- leases -----------------------------------------------------------------------------------


async def test_filters_with_the_same_settings_share_pools_until_the_last_lets_go() -> None:
    cluster = make_cluster(A)
    first = cluster.lease(RedisPool, SETTINGS)
    second = cluster.lease(RedisPool, SETTINGS)
    assert first is second and first.users == 2
    other = cluster.lease(RedisPool, RedisPoolSettings(timeout=6.0))
    assert other is not first
    pool = first(endpoint(cluster, A))
    cluster.release(first)
    assert not pool.closed and cluster.busy
    cluster.release(second)
    assert pool.closed and first.closed
    assert cluster.lease(RedisPool, SETTINGS) is not first  # a fresh set
    cluster.release(other)


async def test_a_departed_endpoints_pools_close() -> None:
    cluster = make_cluster(A, B)
    pools = cluster.lease(RedisPool, SETTINGS)
    gone = pools(endpoint(cluster, B))
    stays = pools(endpoint(cluster, A))
    cluster.set_endpoints([(A, 1, None)])
    assert gone.closed and not stays.closed
    assert list(pools.pools) == [endpoint(cluster, A)]


async def test_a_stopped_cluster_closes_leased_and_own_pools() -> None:
    cluster = make_cluster(A)
    pools = cluster.lease(RedisPool, SETTINGS)
    redis = pools(endpoint(cluster, A))
    http = cluster.http_pools(endpoint(cluster, A))
    await cluster.stop()
    assert redis.closed and http.closed and pools.closed
    late = cluster.lease(RedisPool, RedisPoolSettings(timeout=9.0))
    assert late(endpoint(cluster, A)).closed  # a late caller gets nothing that connects


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_released_pools_are_freed_by_reference_counting(no_cyclic_gc: None) -> None:
    cluster = make_cluster(A)
    pools = cluster.lease(RedisPool, SETTINGS)
    pool = weakref.ref(pools(endpoint(cluster, A)))
    cluster.release(pools)
    del pools
    assert pool() is None
    assert cluster.pool_sets() == [cluster.http_pools]


# -- closed pools -----------------------------------------------------------------------------


async def test_a_closed_redis_pool_answers_with_an_error_and_never_connects() -> None:
    cluster = make_cluster(A)
    pool = RedisPool(cluster, endpoint(cluster, A), SETTINGS)
    pool.close()
    replies = Replies()
    pool.send(b"*1\r\n$4\r\nPING\r\n", replies)
    pool.send_asking(b"*1\r\n$4\r\nPING\r\n", replies)
    assert len(replies.got) == 2
    assert replies.got[0].startswith(b"-ERR upstream 10.0.0.1:6379: cluster 'shards' was removed")
    assert pool.connections == [] and not pool._connects
    assert cluster.connecting == 0


async def test_a_closed_redis_pool_closes_a_busy_connection_once_it_is_answered() -> None:
    cluster = make_cluster(A)
    pool = RedisPool(cluster, endpoint(cluster, A), SETTINGS)
    connection = RedisConnection(pool)
    pool.connections.append(connection)
    transport = FakeTransport()
    connection.connection_made(transport)
    replies = Replies()
    pool.send(b"*1\r\n$4\r\nPING\r\n", replies)
    assert pool.in_flight == 1
    pool.close()
    assert not transport.closed  # its command is still owed an answer
    connection.data_received(b"+PONG\r\n")
    assert replies.got == [b"+PONG\r\n"]
    assert transport.closed


async def test_a_closed_rpc_pool_refuses_calls() -> None:
    cluster = make_cluster(A)
    pool = RpcPool(cluster, endpoint(cluster, A), RpcPoolSettings(lookup("msgpack_rpc")))
    pool.close()
    reasons: list[str] = []

    class Call:
        @property
        def caller(self) -> Call:
            return self

        def suspected(self, connection: object) -> None:
            raise AssertionError("nobody to suspect")

        def on_response(self, frame: object, connection: object) -> None:
            raise AssertionError("no response expected")

        def on_failure(self, reason: str) -> None:
            reasons.append(reason)

    frame = lookup("msgpack_rpc").decoder(1024).feed(b"\x94\x00\x01\xa3add\x92\x01\x02")[0]
    assert pool.connection().send_request(frame, Call()) is None
    assert reasons == ["upstream 10.0.0.1:6379: cluster 'shards' was removed or replaced by a "
                       "reload"]  # fmt: skip
    assert pool.connections == []


async def test_closed_http_pools_refuse_new_streams() -> None:
    cluster = make_cluster(A)
    where = endpoint(cluster, A)
    for pool in (Http1Pool(cluster, where), Http2Pool(cluster, where)):
        pool.close()
        callbacks = Failures()
        assert pool.new_stream(callbacks) is None
        assert callbacks.failures == [
            (ResponseFlag.NO_HEALTHY_UPSTREAM,
             "cluster 'shards' was removed or replaced by a reload")]  # fmt: skip
        assert pool.connecting == 0


async def test_a_closed_http1_pool_closes_a_connection_when_its_exchange_ends() -> None:
    cluster = make_cluster(A)
    pool = Http1Pool(cluster, endpoint(cluster, A))
    idle, busy = Http1Connection(pool), Http1Connection(pool)
    idle_transport, busy_transport = FakeTransport(), FakeTransport()
    idle.connection_made(idle_transport)
    busy.connection_made(busy_transport)
    pool.release(idle, reused=False)
    pool.close()
    assert idle_transport.closed and not busy_transport.closed
    pool.release(busy)  # its exchange ended
    assert busy_transport.closed and pool.idle == []
