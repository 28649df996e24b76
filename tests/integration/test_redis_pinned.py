"""Transactions and blocking commands through redis_proxy, driven by redis-py.

Each runs on a connection of the client's own to the shard of its keys: MULTI/EXEC with
WATCH's optimistic locking, -EXECABORT when a queued command cannot run there, BLPOP /
BLMOVE / XREAD BLOCK released by another client while other clients go on, commands
pipelined behind a blocked one answered after it, in order, and a blocked client that
leaves takes its connection with it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from tests.support.mecha import Mecha, redis_proxy_config, run_mecha
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports = []
        for i in range(2):
            (tmp_path / f"s{i}").mkdir()
            ports.append(stack.enter_context(redis_server(tmp_path / f"s{i}")))
        yield ports


@pytest.fixture
def mecha(tmp_path: Path, shards: list[int]) -> Iterator[Mecha]:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as running:
        yield running


def client(mecha: Mecha) -> redis.Redis:
    return redis.Redis(port=mecha.port("redis"), socket_timeout=10)


def on_other_shards(proxy: redis.Redis, shards: list[int]) -> tuple[str, str]:
    """Two keys the proxy puts on different shards."""
    where: dict[int, str] = {}
    for i in range(100):
        key = f"k{i}"
        proxy.set(key, 1)
        shard = next(p for p in shards if redis.Redis(port=p).exists(key))
        where.setdefault(shard, key)
        if len(where) == 2:
            return where[shards[0]], where[shards[1]]
    raise AssertionError("every key on one shard")


def test_a_transaction_runs_on_the_shard_of_its_keys(mecha: Mecha, shards: list[int]) -> None:
    proxy = client(mecha)
    pipe = proxy.pipeline(transaction=True)
    pipe.set("{u1}a", 1)
    pipe.incr("{u1}a")
    pipe.get("{u1}a")
    pipe.ping()
    assert pipe.execute() == [True, 2, b"2", True]
    assert sum(redis.Redis(port=p).exists("{u1}a") for p in shards) == 1
    assert proxy.get("{u1}a") == b"2"  # the connection is shared again


def test_watch_makes_exec_fail_when_another_client_wrote(mecha: Mecha) -> None:
    proxy, other = client(mecha), client(mecha)
    proxy.set("{w}n", 1)
    with proxy.pipeline(transaction=True) as pipe:
        pipe.watch("{w}n")
        assert pipe.get("{w}n") == b"1"
        other.set("{w}n", 5)
        pipe.multi()
        pipe.incr("{w}n")
        with pytest.raises(redis.WatchError):
            pipe.execute()

    def increment(pipe: redis.client.Pipeline) -> None:
        value = int(pipe.get("{w}n") or 0)
        pipe.multi()
        pipe.set("{w}n", value + 1)

    assert proxy.transaction(increment, "{w}n") == [True]
    assert proxy.get("{w}n") == b"6"


def test_a_command_on_another_shard_aborts_the_transaction(mecha: Mecha, shards: list[int]) -> None:
    proxy = client(mecha)
    first, second = on_other_shards(proxy, shards)
    pipe = proxy.pipeline(transaction=True)
    pipe.set(first, "x")
    pipe.set(second, "y")
    with pytest.raises(redis.ResponseError, match="same shard"):
        pipe.execute()
    assert proxy.get(first) == b"1" and proxy.get(second) == b"1"  # nothing ran
    with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
        proxy.execute_command("EXEC")


def test_blocking_commands_wait_without_holding_up_others(mecha: Mecha) -> None:
    proxy, other = client(mecha), client(mecha)
    results: dict[str, object] = {}

    def block() -> None:
        blocked = client(mecha)
        results["blpop"] = blocked.blpop(["{q}jobs"], timeout=0)
        results["blmove"] = blocked.blmove("{q}in", "{q}out", timeout=0)
        results["xread"] = blocked.xread({"{q}stream": "$"}, block=0)

    thread = threading.Thread(target=block)
    thread.start()
    time.sleep(0.3)
    for i in range(50):  # others' commands go on meanwhile
        assert other.set(f"busy{i}", i) and other.get(f"busy{i}") == str(i).encode()
    proxy.rpush("{q}jobs", "job1")
    time.sleep(0.2)
    proxy.rpush("{q}in", "item")
    time.sleep(0.2)
    proxy.xadd("{q}stream", {"f": "v"}, id="5-1")
    thread.join(timeout=10)
    assert results["blpop"] == (b"{q}jobs", b"job1")
    assert results["blmove"] == b"item"
    assert results["xread"] == [[b"{q}stream", [(b"5-1", {b"f": b"v"})]]]


def test_commands_behind_a_blocked_one_are_answered_after_it_in_order(mecha: Mecha) -> None:
    proxy, other = client(mecha), client(mecha)
    pipe = proxy.pipeline(transaction=False)
    pipe.blpop(["{b}q"], timeout=0)
    pipe.rpush("{b}q", "mine")
    pipe.lpop("{b}q")
    pipe.ping()
    answers: list[object] = []
    thread = threading.Thread(target=lambda: answers.extend(pipe.execute()))
    thread.start()
    time.sleep(0.3)
    assert other.llen("{b}q") == 0  # the RPUSH behind the BLPOP has not run
    other.rpush("{b}q", "theirs")
    thread.join(timeout=10)
    assert answers == [(b"{b}q", b"theirs"), 1, b"mine", True]


def test_a_blocked_client_that_leaves_closes_its_connection(
    mecha: Mecha, shards: list[int]
) -> None:
    watchers = [redis.Redis(port=p) for p in shards]  # (each one of the connections counted)

    def connected() -> int:
        return sum(int(w.info("clients")["connected_clients"]) for w in watchers)

    client(mecha).ping()
    before = connected()
    blocked = socket.create_connection(("127.0.0.1", mecha.port("redis")))
    blocked.sendall(b"*3\r\n$5\r\nBLPOP\r\n$7\r\n{gone}q\r\n$1\r\n0\r\n")
    wait_until(lambda: connected() == before + 1)  # its own connection to the shard
    assert mecha.metric("mecha_redis_pinned_upstream_connections", listener="redis") == 1
    blocked.close()
    wait_until(lambda: connected() == before)
    assert mecha.metric("mecha_redis_pinned_upstream_connections", listener="redis") == 0


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def messages(pubsub: redis.client.PubSub, count: int) -> list[dict[str, object]]:
    received: list[dict[str, object]] = []
    deadline = time.monotonic() + 5
    while len(received) < count and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            received.append(message)
    return received


def test_subscribers_hear_what_is_published_to_the_shard_of_their_channels(
    mecha: Mecha,
) -> None:
    publisher = client(mecha)
    pubsub = client(mecha).pubsub()
    pubsub.subscribe("{news}sport", "{news}weather")
    pubsub.psubscribe("{news}*")
    assert [m["type"] for m in messages(pubsub, 3)] == ["subscribe", "subscribe", "psubscribe"]
    assert publisher.publish("{news}sport", "goal") == 2  # the channel and the pattern
    heard = messages(pubsub, 2)
    assert {(m["type"], m["data"]) for m in heard} == {("message", b"goal"), ("pmessage", b"goal")}
    pubsub.ping()
    assert messages(pubsub, 1)[0]["type"] == "pong"
    pubsub.unsubscribe("{news}sport")
    assert messages(pubsub, 1)[0]["type"] == "unsubscribe"
    assert publisher.publish("{news}sport", "late") == 1  # the pattern still listens
    pubsub.close()


def test_subscribing_refuses_what_cannot_reach_every_message(
    mecha: Mecha, shards: list[int]
) -> None:
    raw = socket.create_connection(("127.0.0.1", mecha.port("redis")), timeout=5)
    raw.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$6\r\nnews.*\r\n")
    assert raw.recv(1024).startswith(b"-ERR PSUBSCRIBE patterns need a fixed {hash tag}")
    raw.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\n{a}x\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
    reply = b""
    while b"allowed in this context" not in reply:
        reply += raw.recv(1024)
    assert reply.startswith(b"*3\r\n$9\r\nsubscribe\r\n$4\r\n{a}x\r\n:1\r\n-ERR Can't execute")
    raw.close()
