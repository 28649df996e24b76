"""The HTTP connection manager when the client sends FIN: what is in flight ends, then the
connection closes (HTTP/2 as well as HTTP/1), played with h2's client on a fake transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events

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
DELAY = 0.05


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


def listener(delay: bool = False) -> Listener:
    """Answers 200 "ok" to every request, after DELAY seconds with `delay`."""
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "ok"}}
    fault = {"name": "fault", "config": {"delay": {"fixed_delay": f"{DELAY}s"}}}
    node = Node({"access_log": False, "http_filters": [fault] if delay else [],
                 "route_config": {"virtual_hosts": [
                     {"name": "vh", "domains": ["*"], "routes": [route]}]}}, "config")  # fmt: skip
    config = parse_config(node, ParseContext(frozenset()))
    assert node.problems == []
    factory = create_factory(config, Context())
    listener_config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    return Listener(listener_config, [FilterChain("default", FilterChainMatch(), (factory,))])


class H2Client:
    """h2's client side, talking to a DownstreamConnection through a fake transport."""

    def __init__(self, listener: Listener) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.connection = DownstreamConnection(listener)
        self.transport = FakeTransport()
        self.connection.connection_made(self.transport)
        self.read = 0

    def request(self, end_stream: bool = True) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        headers = [(":method", "POST"), (":path", "/"), (":scheme", "http"),
                   (":authority", "t")]  # fmt: skip
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        return stream_id

    def send(self) -> None:
        self.connection.data_received(self.h2.data_to_send())

    def fin(self) -> None:
        """The client closes its side (FIN), with no GOAWAY first."""
        self.connection.eof_received()

    def events(self) -> list[h2.events.Event]:
        data = self.transport.data[self.read :]
        self.read += len(data)
        return self.h2.receive_data(data) if data else []


async def settle(seconds: float = 0.0) -> None:
    await asyncio.sleep(seconds)
    await asyncio.sleep(0)  # the flush scheduled by the last callback


def responses(events: list[h2.events.Event]) -> dict[int, bytes]:
    bodies: dict[int, bytes] = {}
    for event in events:
        if isinstance(event, h2.events.ResponseReceived):
            bodies[event.stream_id] = b""
        elif isinstance(event, h2.events.DataReceived):
            bodies[event.stream_id] += event.data
    return bodies


async def test_http2_idle_connection_closes_on_the_peers_fin() -> None:
    client = H2Client(listener())
    client.send()
    await settle()
    assert not client.transport.closed
    client.fin()
    await settle()
    assert client.transport.closed


async def test_http2_answers_streams_in_flight_then_closes() -> None:
    client = H2Client(listener(delay=True))
    first, second = client.request(), client.request()
    client.send()
    client.fin()  # both requests are complete: their answers are still owed
    await settle()
    assert not client.transport.closed
    await settle(DELAY * 3)
    assert responses(client.events()) == {first: b"ok", second: b"ok"}
    assert client.transport.closed


async def test_http2_stream_whose_request_cannot_end_is_dropped_at_the_fin() -> None:
    client = H2Client(listener(delay=True))
    complete = client.request()
    client.request(end_stream=False)
    client.send()
    client.fin()
    await settle(DELAY * 3)
    assert responses(client.events()) == {complete: b"ok"}
    assert client.transport.closed


async def test_http1_kept_alive_connection_closes_on_the_peers_fin() -> None:
    connection, transport = DownstreamConnection(listener()), FakeTransport()
    connection.connection_made(transport)
    connection.data_received(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    await settle()
    assert transport.data.startswith(b"HTTP/1.1 200") and not transport.closed
    connection.eof_received()
    assert transport.closed
