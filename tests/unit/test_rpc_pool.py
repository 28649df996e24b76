"""The RPC upstream connection's bookkeeping, played through a fake transport: whom a close
by the server blames, and where the server's own requests and notifications go."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from protocols.rpc import Frame
from protocols.rpc.msgpack_rpc import MSGPACK_RPC
from proxy.config.parse import parse_config
from proxy.upstream.cluster import ClusterManager
from proxy.upstream.rpc_pool import (
    SHARED_REFUSAL,
    Owner,
    RpcConnection,
    RpcPool,
    RpcPoolSettings,
)
from tests.unit.fakes import FakeTransport


def pack(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj))


def frame(obj: Any) -> Frame:
    return MSGPACK_RPC.decoder(1 << 16).feed(pack(obj))[0]


def unpack_all(data: bytes) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    return list(unpacker)


class Caller:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    def suspected(self, connection: RpcConnection) -> None:
        self.events.append(f"suspected {self.name}")


class Call:
    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self.answers: list[Frame] = []

    @property
    def caller(self) -> Caller:
        return self._caller

    def on_response(self, frame: Frame, connection: RpcConnection) -> None:
        self.answers.append(frame)

    def on_failure(self, reason: str) -> None:
        self._caller.events.append(f"failed {self._caller.name}: {reason}")


class Listening(Owner):
    def __init__(self) -> None:
        self.heard: list[tuple[str, Frame]] = []

    def on_server_request(self, frame: Frame, connection: RpcConnection) -> None:
        self.heard.append(("request", frame))

    def on_server_notification(self, frame: Frame, connection: RpcConnection) -> None:
        self.heard.append(("notification", frame))

    def on_upstream_lost(self, connection: RpcConnection, reason: str) -> None:
        self.heard.append(("lost", frame([2, reason, []])))

    def on_upstream_write_paused(self, paused: bool) -> None:
        pass


def connect(owner: Owner | None = None) -> tuple[RpcConnection, FakeTransport]:
    config = parse_config({"clusters": [{"name": "app", "endpoints": ["127.0.0.1:1"]}]})
    cluster = ClusterManager(config.clusters)["app"]
    pool = RpcPool(cluster, cluster.choose(), RpcPoolSettings(MSGPACK_RPC), owner)
    connection = RpcConnection(pool)
    pool.connections.append(connection)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


async def test_a_close_by_the_server_blames_only_the_messages_it_had_not_read() -> None:
    connection, _ = connect()
    events: list[str] = []
    a, b, c, d = (Caller(name, events) for name in "abcd")
    connection.send_request(frame([0, 1, "slow", []]), Call(a))
    answered = connection.send_request(frame([0, 1, "fast", []]), Call(b))
    connection.send_oneway(frame([2, "note", []]), c)
    connection.send_request(frame([0, 1, "poison", []]), Call(d))
    connection.data_received(pack([1, answered, None, "ok"]))  # so a's and b's were read
    connection.connection_lost(None)
    reason = "connection closed by the server with 2 calls in flight"
    assert sorted(events[:2]) == ["suspected c", "suspected d"]  # before any call fails
    assert sorted(events[2:]) == [f"failed a: upstream 127.0.0.1:1: {reason}",
                                  f"failed d: upstream 127.0.0.1:1: {reason}"]  # fmt: skip


async def test_with_nothing_answered_every_sender_is_a_suspect_once() -> None:
    connection, _ = connect()
    events: list[str] = []
    a, b = Caller("a", events), Caller("b", events)
    for caller in (a, b, a):
        connection.send_request(frame([0, 1, "m", []]), Call(caller))
    connection.connection_lost(ConnectionResetError("reset by peer"))
    assert events[:2] == ["suspected a", "suspected b"]
    assert events[2].startswith("failed a: upstream 127.0.0.1:1: connection reset (reset by peer)")


async def test_a_close_by_mecha_blames_no_one() -> None:
    connection, transport = connect()
    events: list[str] = []
    connection.send_request(frame([0, 1, "m", []]), Call(Caller("a", events)))
    connection.close()
    connection.connection_lost(None)
    assert transport.closed
    assert events == ["failed a: upstream 127.0.0.1:1: connection closed by mecha"]


async def test_a_servers_request_on_a_shared_connection_is_answered_at_once() -> None:
    connection, transport = connect()
    connection.data_received(pack([0, 7, "rpcrequest_target", [1]]) + pack([2, "event", []]))
    await asyncio.sleep(0)  # the queued answer is flushed on the next turn
    assert unpack_all(transport.data) == [[1, 7, SHARED_REFUSAL, None]]
    assert connection.stray_frames == 2


async def test_an_owner_hears_the_server_and_answers_under_the_servers_id() -> None:
    owner = Listening()
    connection, transport = connect(owner)
    request = pack([0, 41, "double", [21]])
    connection.data_received(request + pack([2, "event", ["x"]]))
    assert [(kind, f.raw) for kind, f in owner.heard] == [
        ("request", request), ("notification", pack([2, "event", ["x"]]))]  # fmt: skip
    connection.send_response(frame([1, 3, None, 42]), 41)  # the client answered its id 3
    connection.refuse(42, "no")
    await asyncio.sleep(0)
    assert unpack_all(transport.data) == [[1, 41, None, 42], [1, 42, "no", None]]
    connection.connection_lost(None)
    assert owner.heard[-1][0] == "lost" and connection.failed
