"""A closed connection of every proxy is freed by reference counting, with its buffers.

Each test runs one proxy in-process against a real peer (a fake transport stands for the
client), with the cyclic garbage collector disabled: whatever a closed session keeps in a
reference cycle (and the partial frame it was reading) would stay until a full collection,
which a busy process runs rarely (the issue saw 969 MB of unfinished Redis bulks held so).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hpack import Encoder
from hyperframe.frame import HeadersFrame, SettingsFrame

from filters.network import registry
from filters.network.http.forward import ForwardedExchange
from filters.network.http.manager import HttpConnectionManager
from filters.network.http.stream import ActiveStream
from filters.network.mqtt_proxy.session import MqttSession
from filters.network.redis_proxy.pinned import Pinning
from filters.network.redis_proxy.session import RedisSession
from filters.network.rpc_proxy.session import RpcSession
from filters.network.tcp_proxy import TcpProxy
from protocols.redis.requests import RequestParser
from proxy.config.model import FilterChainMatch
from proxy.config.parse import parse_config
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from proxy.upstream.cluster import ClusterManager
from proxy.upstream.redis_pool import RedisConnection
from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import (
    http_config,
    mqtt_proxy_config,
    redis_proxy_config,
    rpc_proxy_config,
    tcp_proxy_config,
)
from tests.support.mqtt import mosquitto
from tests.support.msgpack_rpc_peer import PeerServer, start_server
from tests.support.peers import echo, tcp_server
from tests.unit.fakes import FakeTransport
from tests.unit.test_http_drain import PREFACE, Context

pytestmark = pytest.mark.integration

BIG = 8 << 20
"""The partial command a closed Redis client leaves (its parser must go with it)."""


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with http_backend() as running:
        yield running


def living(*kinds: type) -> list[object]:
    return [thing for thing in gc.get_objects() if isinstance(thing, kinds)]


async def serve_and_close(document: dict[str, Any], inputs: list[bytes], turns: int = 10) -> None:
    """One client connection of the document's first listener: feed it `inputs` (letting
    the upstream answer), then close it, and let the loop settle."""
    config = parse_config(document)
    context = Context()
    clusters = context.cluster_manager = ClusterManager(config.clusters)
    listener_config = config.listeners[0]
    entry = listener_config.filter_chains[0].filters[0]
    spec = registry.lookup(entry.name)
    assert spec is not None
    factory = spec.create_factory(entry.config, context)
    listener = Listener(listener_config, [FilterChain("default", FilterChainMatch(), (factory,))])
    connection = DownstreamConnection(listener)
    transport = FakeTransport()
    connection.connection_made(transport)
    for data in inputs:
        connection.data_received(data)
        for _ in range(turns):
            await asyncio.sleep(0.01)
    assert transport.written or not inputs, "the proxy answered nothing"
    connection.connection_lost(None)
    del connection, factory, listener
    for _ in range(5):
        await asyncio.sleep(0.01)
    await clusters.stop()


SESSIONS = (DownstreamConnection, TcpProxy, HttpConnectionManager, ActiveStream,
            ForwardedExchange, RedisSession, RequestParser, RpcSession, MqttSession)  # fmt: skip


async def test_tcp_proxy(no_cyclic_gc: None) -> None:
    with tcp_server(echo) as upstream:
        await serve_and_close(tcp_proxy_config([upstream]), [b"hello"])
    assert living(*SESSIONS) == []


CORS = {"http_filters": [{"name": "cors", "config": {"allow_origin": ["*"]}}]}
"""A stream filter: requests take the filter chain, not the forwarding path."""


@pytest.mark.parametrize("manager", [{}, CORS])
async def test_http1(no_cyclic_gc: None, backend: Backend, manager: dict[str, Any]) -> None:
    document = http_config({"upstream": [backend.port]}, manager={"access_log": False})
    if manager:
        document["listeners"][0]["filters"][0]["config"].update(manager)
    request = b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n"
    await serve_and_close(document, [request, request, request[:10]])
    assert living(*SESSIONS) == []


async def test_http2(no_cyclic_gc: None, backend: Backend) -> None:
    document = http_config({"upstream": [backend.port]}, manager={"access_log": False})
    headers = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    headers.data = Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                     (":path", "/echo"), (":authority", "x")])  # fmt: skip
    await serve_and_close(document, [PREFACE + SettingsFrame(0).serialize() + headers.serialize()])
    assert living(*SESSIONS) == []


async def test_redis_proxy_with_an_unfinished_bulk(no_cyclic_gc: None, redis_port: int) -> None:
    unfinished = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (BIG * 2) + b"x" * BIG
    ping = b"*1\r\n$4\r\nPING\r\n"
    await serve_and_close(redis_proxy_config([redis_port]), [ping, b"*1\r\n$4\r\nINFO\r\n",
                                                             unfinished])  # fmt: skip
    assert living(*SESSIONS) == []


@pytest.mark.parametrize(
    "commands",
    [
        b"*1\r\n$4\r\nPING\r\n*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n"
        b"*1\r\n$4\r\nPING\r\n",  # blocked, a command held behind
        b"*2\r\n$5\r\nWATCH\r\n$1\r\nw\r\n*1\r\n$5\r\nMULTI\r\n"
        b"*2\r\n$4\r\nINCR\r\n$1\r\nw\r\n",  # mid-transaction
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n*1\r\n$4\r\nPING\r\n",  # subscribed
    ],
)
async def test_redis_proxy_with_a_pinned_client(
    no_cyclic_gc: None, redis_port: int, commands: bytes
) -> None:
    await serve_and_close(redis_proxy_config([redis_port]), [commands])
    assert living(*SESSIONS, Pinning, RedisConnection) == []


async def test_rpc_proxy(no_cyclic_gc: None) -> None:
    with start_server(0) as server:
        await rpc(server)
    assert living(*SESSIONS) == []


async def rpc(server: PeerServer) -> None:
    document = rpc_proxy_config([{"cluster": "rpc"}], {"rpc": [server.port]})
    call = msgpack.packb([0, 1, "echo", ["x"]])
    await serve_and_close(document, [call, msgpack.packb([0, 2, "echo", ["y" * 100]])[:30]])


async def test_mqtt_proxy(no_cyclic_gc: None, tmp_path: Path) -> None:
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])
    with mosquitto(tmp_path) as broker:
        await serve_and_close(mqtt_proxy_config(broker), [connect])
    assert living(*SESSIONS) == []
