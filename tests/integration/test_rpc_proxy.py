"""msgpack-RPC through mecha's rpc_proxy, with aio-msgpack-rpc clients and servers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aio_msgpack_rpc.error import RPCResponseError

from tests.support.mecha import rpc_proxy_config, run_mecha
from tests.support.msgpack_rpc_peer import PeerServer, acall, anotify, pipelined, start_server
from tests.support.net import free_port, is_closed_by_peer

pytestmark = pytest.mark.integration

EVERYTHING: dict[str, Any] = {"match": {"prefix": ""}, "cluster": "app"}


@pytest.fixture
def server() -> Iterator[PeerServer]:
    with start_server() as handle:
        yield handle


def config(
    routes: list[dict[str, Any]], clusters: dict[str, list[int]], **proxy: Any
) -> dict[str, Any]:
    return rpc_proxy_config(routes, clusters, {"access_log": "stdout", **proxy})


async def test_calls_many_callers_many_overlapping(tmp_path: Path, server: PeerServer) -> None:
    with run_mecha(tmp_path, config([EVERYTHING], {"app": [server.port]})) as mecha:
        port = mecha.port("rpc")
        assert await acall(port, "add", 2, 3) == 5
        batches = [[("echo", [c, i]) for i in range(50)] for c in range(10)]
        results = await asyncio.gather(*(pipelined(port, batch) for batch in batches))
        for c, result in enumerate(results):
            assert result == [[c, i] for i in range(50)]
        assert mecha.metric("mecha_rpc_calls_total", listener="rpc", method="echo") == 500
        assert mecha.metric("mecha_cluster_upstream_cx_total", cluster="app") == 1  # multiplexed


async def test_responses_out_of_order_reach_the_right_call(
    tmp_path: Path, server: PeerServer
) -> None:
    with run_mecha(tmp_path, config([EVERYTHING], {"app": [server.port]})) as mecha:
        calls: list[tuple[str, list[Any]]] = [
            ("sleep", [0.3, "slow"]), ("sleep", [0.0, "fast"]), ("echo", ["now"])
        ]  # fmt: skip
        assert await pipelined(mecha.port("rpc"), calls) == ["slow", "fast", ["now"]]


async def test_error_responses_pass_through(tmp_path: Path, server: PeerServer) -> None:
    with run_mecha(tmp_path, config([EVERYTHING], {"app": [server.port]})) as mecha:
        with pytest.raises(RPCResponseError, match="broken on purpose"):
            await acall(mecha.port("rpc"), "fail", "broken on purpose")
        assert mecha.metric("mecha_rpc_call_errors_total", listener="rpc", method="fail") == 1
        assert "result=error" in mecha.wait_access_log(1)[-1]


async def test_routes_by_method_and_notifications(tmp_path: Path) -> None:
    with start_server() as first, start_server() as second:
        routes = [{"match": {"method": "add"}, "cluster": "math"},
                  {"match": {"prefix": "log."}, "cluster": "logs"}]  # fmt: skip
        clusters = {"math": [first.port], "logs": [second.port]}
        with run_mecha(tmp_path, config(routes, clusters)) as mecha:
            port = mecha.port("rpc")
            assert await acall(port, "add", 40, 2) == 42
            await anotify(port, "log.write", "hello")
            deadline = time.monotonic() + 5
            while not second.notifications:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert second.notifications == [("log.write", ["hello"])]
            assert first.notifications == []
            with pytest.raises(RPCResponseError, match="no route for method 'echo'"):
                await acall(port, "echo", 1)


async def test_timeout_answers_only_the_slow_call(tmp_path: Path, server: PeerServer) -> None:
    routes: list[dict[str, Any]] = [
        {"match": {"method": "sleep"}, "cluster": "app", "timeout": "200ms"},
        EVERYTHING,
    ]
    with run_mecha(tmp_path, config(routes, {"app": [server.port]})) as mecha:
        started = time.monotonic()
        slow, fast = await pipelined(mecha.port("rpc"), [("sleep", [2, "late"]), ("echo", ["ok"])])
        assert time.monotonic() - started < 1.5
        assert isinstance(slow, RPCResponseError) and "timeout after 0.2s calling sleep" in str(
            slow
        )
        assert fast == ["ok"]
        assert mecha.metric("mecha_rpc_call_timeouts_total", listener="rpc", method="sleep") == 1


async def test_only_idempotent_methods_are_retried(tmp_path: Path, server: PeerServer) -> None:
    dead = free_port()
    routes: list[dict[str, Any]] = [
              {"match": {"prefix": "get"}, "cluster": "app", "idempotent": True, "retries": 1},
              {"match": {"prefix": ""}, "cluster": "app"}]  # fmt: skip
    clusters = {"app": [dead, server.port]}
    with run_mecha(tmp_path, config(routes, clusters)) as mecha:
        port = mecha.port("rpc")
        for _ in range(4):  # round robin starts at either endpoint: every call must succeed
            assert await acall(port, "get_thing", 1) is None
        failures = 0
        for _ in range(4):
            try:
                await acall(port, "echo", 1)
            except RPCResponseError as error:
                assert "connection refused" in str(error)
                failures += 1
        assert failures >= 1


def test_malformed_frame_closes_the_connection(tmp_path: Path, server: PeerServer) -> None:
    with run_mecha(tmp_path, config([EVERYTHING], {"app": [server.port]})) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("rpc")), timeout=5) as sock:
            sock.sendall(b"\x94\x07\x01\xa3abc\x90")  # type 7 does not exist
            assert is_closed_by_peer(sock)
        assert mecha.metric("mecha_rpc_protocol_errors_total", listener="rpc") == 1
        assert "malformed msgpack_rpc message" in mecha.logs()


def test_a_caller_that_half_closes_still_gets_its_answers(
    tmp_path: Path, server: PeerServer
) -> None:
    with run_mecha(tmp_path, config([EVERYTHING], {"app": [server.port]})) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("rpc")), timeout=5) as sock:
            sock.sendall(
                msgpack.packb([0, 7, "add", [2, 3]]) + msgpack.packb([0, 8, "add", [1, 1]])
            )
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(received)
        answers = sorted(unpacker, key=lambda message: message[1])
        assert answers == [[1, 7, None, 5], [1, 8, None, 2]]  # then mecha closed the connection


# -- one caller's message makes the upstream close a shared connection -----------------------

POISON = msgpack.packb([0, 1, "echo", [{1: "integer keys"}]])
"""A message the peer cannot decode (msgpack's strict_map_key): it closes the connection."""
POISON_NOTE = msgpack.packb([2, "log", [{1: "integer keys"}]])
SHARING: list[dict[str, Any]] = [
    {"name": "reads", "match": {"method": "sleep"}, "cluster": "app", "idempotent": True},
    {"name": "writes", "match": {"prefix": ""}, "cluster": "app"},
]


async def next_message(reader: asyncio.StreamReader) -> Any:
    """The next msgpack message from `reader`; None at EOF."""
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        for message in unpacker:
            return message
        data = await asyncio.wait_for(reader.read(4096), 5)
        if not data:
            return None
        unpacker.feed(data)


def in_flight(port: int, method: str, count: int) -> list[asyncio.Task[Any]]:
    """`count` callers, each on its own connection, each with one 0.5s call in flight."""
    return [asyncio.create_task(acall(port, method, 0.5, i)) for i in range(count)]


async def test_a_poisonous_caller_is_cut_off_and_the_others_carry_on(
    tmp_path: Path, server: PeerServer
) -> None:
    with run_mecha(tmp_path, config(SHARING, {"app": [server.port]})) as mecha:
        port = mecha.port("rpc")
        reads, writes = in_flight(port, "sleep", 10), in_flight(port, "pause", 10)
        await asyncio.sleep(0.2)  # twenty calls in flight on the one shared connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(POISON)
        first = await next_message(reader)
        assert first[:2] == [1, 1] and "connection closed by the server" in first[2]
        assert await asyncio.gather(*reads) == list(range(10))  # retried: idempotent
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            assert isinstance(outcome, RPCResponseError)
            assert "connection closed by the server with 21 calls in flight" in str(outcome)
            assert "not retried: route 'writes' is not idempotent" in str(outcome)
        assert mecha.metric("mecha_rpc_probations_total", listener="rpc") == 21

        others = in_flight(port, "pause", 20)  # new callers on a fresh shared connection
        await asyncio.sleep(0.2)
        writer.write(POISON)  # the suspect's own connection, this time
        second = await next_message(reader)
        assert "closed connections twice with a message of this client unread" in second[2]
        assert await next_message(reader) is None  # cut off
        assert await asyncio.gather(*others) == list(range(20))  # no one else lost a call
        assert mecha.metric("mecha_rpc_cut_off_total", listener="rpc") == 1
        writer.close()
        await writer.wait_closed()


async def test_a_poisonous_notification_is_traced_to_its_sender(
    tmp_path: Path, server: PeerServer
) -> None:
    with run_mecha(tmp_path, config(SHARING, {"app": [server.port]})) as mecha:
        port = mecha.port("rpc")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(POISON_NOTE)
        mecha.wait_metric("mecha_rpc_probations_total", 1, listener="rpc")
        others = in_flight(port, "pause", 10)
        await asyncio.sleep(0.2)
        writer.write(POISON_NOTE)
        assert await next_message(reader) is None  # cut off
        assert await asyncio.gather(*others) == list(range(10))
        assert mecha.metric("mecha_rpc_cut_off_total", listener="rpc") == 1
        writer.close()
        await writer.wait_closed()
