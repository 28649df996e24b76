"""request_headers_timeout: a request head has this long from its first byte to its last."""

from __future__ import annotations

import asyncio

from filters.network.http.config import parse_config
from filters.network.http.filter import create_factory
from filters.network.http.manager import HttpConnectionManager
from protocols.http import h2_frames as fr
from protocols.http.hpack import Encoder
from proxy.config.context import ParseContext
from proxy.config.model import FilterChainMatch, ListenerConfig
from proxy.config.reader import Node
from proxy.config.units import Address
from proxy.connection import DownstreamConnection
from proxy.filter_chain import FilterChain
from proxy.listener import Listener
from tests.unit.test_http_drain import REQUEST, Context, connect, settle

TIMEOUT = 0.2
LATE = TIMEOUT + 0.1


def listener(timeout: float = TIMEOUT) -> tuple[Listener, Context]:
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "ok"}}
    routes = {"virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [route]}]}
    node = Node({"access_log": False, "request_headers_timeout": timeout,
                 "route_config": routes}, "config")  # fmt: skip
    config = parse_config(node, ParseContext(frozenset()))
    assert node.problems == []
    context = Context()
    factory = create_factory(config, context)
    listener_config = ListenerConfig("test", Address("127.0.0.1", 0), ())
    chains = [FilterChain("default", FilterChainMatch(), (factory,))]
    return Listener(listener_config, chains), context


def timeouts(context: Context) -> int:
    stats = context.shared["http_stats"].stats[0]
    count: int = stats.request_headers_timeouts
    return count


async def trickle(data: bytes, into: DownstreamConnection, gap: float) -> None:
    for byte in data:
        into.data_received(bytes([byte]))
        await asyncio.sleep(gap)


async def test_a_head_trickled_past_the_timeout_gets_408_and_the_connection_closes() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    await trickle(REQUEST[:6], connection, TIMEOUT / 3)
    await settle(LATE)
    assert transport.data.startswith(b"HTTP/1.1 408 ")
    assert b"\r\nconnection: close\r\n" in transport.data
    assert transport.closed
    assert timeouts(context) == 1


async def test_a_head_in_pieces_within_the_timeout_is_served() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    connection.data_received(REQUEST[:7])
    await asyncio.sleep(TIMEOUT / 2)
    connection.data_received(REQUEST[7:])
    await settle(LATE)
    assert transport.data.startswith(b"HTTP/1.1 200 ") and not transport.closed
    assert timeouts(context) == 0


async def test_each_head_has_its_own_time_and_an_idle_connection_has_none() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    for _ in range(3):  # heads in two parts, one after the other, over 3x the timeout
        connection.data_received(REQUEST[:7])
        await asyncio.sleep(TIMEOUT * 0.6)
        connection.data_received(REQUEST[7:])
        await settle(TIMEOUT * 0.6)
    await settle(LATE)  # kept alive with nothing sent: the idle timeout's business
    assert transport.data.count(b"HTTP/1.1 200 ") == 3 and not transport.closed
    assert timeouts(context) == 0
    assert manager_of(connection)._head_timer is None


async def test_a_pipelined_head_cut_short_times_out_after_the_answer_before_it() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    connection.data_received(REQUEST + REQUEST[:9])
    await settle(LATE)
    assert transport.data.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in transport.data and transport.closed
    assert timeouts(context) == 1


async def test_part_of_what_could_be_the_http2_preface_is_closed_without_an_answer() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    # A byte a loop turn: sleeps between them, stretched by a busy machine, could pass TIMEOUT.
    await trickle(b"PRI * HT", connection, 0)
    wheel = manager_of(connection).shared.timers
    assert sum(len(armed) for armed in wheel.slots.values()) == 1  # from the first byte
    await settle(LATE)
    assert transport.data == b"" and transport.closed
    assert timeouts(context) == 1


async def test_zero_turns_it_off() -> None:
    test_listener, _ = listener(timeout=0)
    connection, transport = connect(test_listener)
    connection.data_received(REQUEST[:7])
    await settle(LATE)
    assert not transport.closed and transport.data == b""


def manager_of(connection: DownstreamConnection) -> HttpConnectionManager:
    manager = connection._single_reader
    assert isinstance(manager, HttpConnectionManager)
    return manager


# -- HTTP/2: a header block (HEADERS to END_HEADERS) has the same time ----------------------

H2_START = fr.PREFACE + fr.settings_frame({})
H2_BLOCK = Encoder().encode(
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"test")]
)


def frame_types(data: bytes) -> list[int]:
    reader = fr.FrameReader(expect_preface=False, max_frame_size=fr.MAX_FRAME_SIZE_LIMIT)
    return [kind for kind, _, _, _ in reader.feed(data)]


async def test_an_http2_header_block_that_stalls_ends_the_connection() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    connection.data_received(H2_START)
    connection.data_received(fr.frame(fr.HEADERS, fr.END_STREAM, 1, H2_BLOCK[:3]))
    await settle(LATE)  # no CONTINUATION: nothing else may come on the connection meanwhile
    assert transport.closed and timeouts(context) == 1
    assert frame_types(transport.data)[-1] == fr.GOAWAY


async def test_an_http2_frame_header_alone_starts_the_time() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    connection.data_received(H2_START)
    whole = fr.frame(fr.HEADERS, fr.END_STREAM | fr.END_HEADERS, 1, H2_BLOCK)
    connection.data_received(whole[:10])
    await settle(LATE)
    assert transport.closed and timeouts(context) == 1


async def test_an_http2_header_block_in_time_is_served_and_disarms_the_timer() -> None:
    test_listener, context = listener()
    connection, transport = connect(test_listener)
    connection.data_received(H2_START)
    connection.data_received(fr.frame(fr.HEADERS, fr.END_STREAM, 1, H2_BLOCK[:3]))
    await asyncio.sleep(TIMEOUT / 2)
    assert manager_of(connection)._head_timer is not None
    connection.data_received(fr.frame(fr.CONTINUATION, fr.END_HEADERS, 1, H2_BLOCK[3:]))
    await settle(LATE)
    assert not transport.closed and timeouts(context) == 0
    assert manager_of(connection)._head_timer is None
    assert fr.HEADERS in frame_types(transport.data)  # the answer
