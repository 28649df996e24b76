"""The HTTP connection manager on a draining listener, played through a fake transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

from filters.network.http import manager
from filters.network.http.config import parse_config
from filters.network.http.filter import create_factory
from proxy.config.context import ParseContext
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.reader import Node
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from proxy.overload import OverloadState
from proxy.upstream.cluster import ClusterManager
from tests.unit.fakes import FakeTransport

T = TypeVar("T")
GRACE = manager.IDLE_DRAIN_GRACE + 0.05
REQUEST = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Context:
    """A FactoryContext with no clusters, no access log and no metrics export."""

    listener_name = "test"
    runtime = None
    cluster_manager = ClusterManager([])

    def __init__(self) -> None:
        self.shared: dict[str, Any] = {}
        self.overload = OverloadState()

    def access_log(self, path: str | None) -> Callable[[str], None]:
        return lambda line: None

    def add_collector(self, collector: object) -> None:
        pass

    def singleton(self, key: str, make: Callable[[], T]) -> T:
        value: T = self.shared.setdefault(key, make())
        return value

    def on_retire(self, release: Callable[[], None]) -> None:
        pass


def http_listener() -> Listener:
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "ok"}}
    node = Node({"access_log": False, "route_config": {"virtual_hosts": [
        {"name": "vh", "domains": ["*"], "routes": [route]}]}}, "config")  # fmt: skip
    config = parse_config(node, ParseContext(frozenset()))
    assert node.problems == []
    factory = create_factory(config, Context())
    listener_config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    return Listener(listener_config, [FilterChain("default", FilterChainMatch(), (factory,))])


def connect(listener: Listener) -> tuple[DownstreamConnection, FakeTransport]:
    connection, transport = DownstreamConnection(listener), FakeTransport()
    connection.connection_made(transport)
    return connection, transport


async def settle(seconds: float = 0.0) -> None:
    await asyncio.sleep(seconds)
    await asyncio.sleep(0)  # the flush scheduled by the last callback


def goaways(data: bytes) -> list[int]:
    """The last-stream-id of each GOAWAY frame in `data`."""
    found, view = [], memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        if isinstance(frame, GoAwayFrame):
            assert frame.error_code == 0
            found.append(frame.last_stream_id)
        view = view[9 + length :]
    return found


async def test_http1_idle_connection_closes_after_the_grace() -> None:
    listener = http_listener()
    connection, transport = connect(listener)
    connection.data_received(REQUEST)
    await settle()
    answered = transport.data
    assert answered.startswith(b"HTTP/1.1 200") and b"connection: close" not in answered
    listener.drain()
    await settle()
    assert not transport.closed
    await settle(GRACE)
    assert transport.closed and transport.data == answered


async def test_http1_request_arriving_in_the_grace_is_answered_with_connection_close() -> None:
    listener = http_listener()
    connection, transport = connect(listener)
    listener.drain()
    connection.data_received(REQUEST)
    await settle()
    assert transport.data.startswith(b"HTTP/1.1 200")
    assert b"\r\nconnection: close\r\n" in transport.data
    assert transport.closed


async def test_http1_half_a_request_head_keeps_the_connection_past_the_grace() -> None:
    listener = http_listener()
    connection, transport = connect(listener)
    connection.data_received(REQUEST[:10])
    listener.drain()
    await settle(GRACE)
    assert not transport.closed
    connection.data_received(REQUEST[10:])
    await settle()
    assert b"\r\nconnection: close\r\n" in transport.data
    assert transport.closed


async def test_http2_preface_arriving_in_the_grace_gets_the_goaway_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(manager, "FINAL_GOAWAY_DELAY", 0.05)
    listener = http_listener()
    connection, transport = connect(listener)
    listener.drain()
    connection.data_received(PREFACE + SettingsFrame(0).serialize())
    await settle()
    assert goaways(transport.data) == [2**31 - 1]
    await settle(GRACE)  # the idle timer gave way to the GOAWAY one
    assert goaways(transport.data) == [2**31 - 1, 0]
    assert transport.closed


async def test_a_connection_that_never_spoke_closes_after_the_grace() -> None:
    listener = http_listener()
    _, transport = connect(listener)
    listener.drain()
    await settle(GRACE)
    assert transport.closed and transport.data == b""
