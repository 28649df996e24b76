"""A full listener makes room by closing its oldest idle connection; busy ones are kept."""

from __future__ import annotations

import dataclasses

from hyperframe.frame import SettingsFrame

from filters.network.api import STOP, ConnectionCallbacks, FilterStatus, NetworkFilter
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from tests.unit.fakes import FakeTransport
from tests.unit.test_http_drain import PREFACE, REQUEST, connect, goaways, http_listener, settle


def full_http_listener(limit: int) -> Listener:
    listener = http_listener()
    listener.config = dataclasses.replace(listener.config, max_connections=limit)
    return listener


async def test_the_oldest_idle_connection_makes_room_for_a_new_one() -> None:
    listener = full_http_listener(3)
    busy, busy_transport = connect(listener)
    busy.data_received(REQUEST[:10])  # a head on its way: not idle
    opened = [connect(listener) for _ in range(2)]
    for connection, _ in opened:
        connection.data_received(REQUEST)  # answered, then idle on keep-alive
    await settle()
    _, newcomer_transport = connect(listener)
    assert not newcomer_transport.closed
    assert opened[0][1].closed and not opened[1][1].closed and not busy_transport.closed
    assert opened[0][1].data.startswith(b"HTTP/1.1 200 ")  # closed between requests
    assert listener.stats.idle_reclaimed == 1 and listener.stats.cx_overflow == 0


async def test_a_full_listener_with_nothing_idle_refuses() -> None:
    listener = full_http_listener(2)
    for _ in range(2):
        connection, _ = connect(listener)
        connection.data_received(REQUEST[:10])
    _, refused = connect(listener)
    assert refused.aborted
    assert listener.stats.cx_overflow == 1 and listener.stats.idle_reclaimed == 0


class Counted(NetworkFilter):
    asked = 0

    def __init__(self, callbacks: ConnectionCallbacks) -> None:
        self.callbacks = callbacks

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return STOP

    def close_if_idle(self) -> bool:
        Counted.asked += 1
        return False


def test_a_flood_at_the_limit_is_refused_without_a_scan_each() -> None:
    config = ListenerConfig("test", Address("127.0.0.1", 0), (), max_connections=50)
    listener = Listener(config, [FilterChain("default", FilterChainMatch(), (Counted,))])
    for _ in range(50):
        DownstreamConnection(listener).connection_made(FakeTransport())
    Counted.asked = 0
    for _ in range(1000):
        DownstreamConnection(listener).connection_made(FakeTransport())
    assert listener.stats.cx_overflow == 1000
    assert Counted.asked == 50  # one scan, then refused at once until RESCAN_AFTER


async def test_close_idle_sheds_only_the_idle() -> None:
    listener = http_listener()
    idle = [connect(listener) for _ in range(3)]
    busy, busy_transport = connect(listener)
    busy.data_received(REQUEST[:10])
    assert listener.close_idle() == 3
    assert all(transport.closed for _, transport in idle) and not busy_transport.closed
    assert listener.stats.idle_shed == 3


async def test_an_idle_http2_connection_gets_a_goaway_before_it_is_closed() -> None:
    listener = http_listener()
    connection, transport = connect(listener)
    connection.data_received(PREFACE + SettingsFrame(0).serialize())
    await settle()
    assert listener.close_idle() == 1
    assert goaways(transport.data) == [0] and transport.closed
