"""The pipelined Redis connection of the state store (runtime/components/redis_pipe.py)
against private redis-server instances: order under concurrency, callers that stop waiting,
the deadline, connection loss and reconnects, AUTH and SELECT, NOSCRIPT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from runtime.components import redis_pipe
from runtime.components.errors import ComponentError
from runtime.components.redis_common import RedisSettings, Script
from runtime.components.redis_pipe import RedisPipe, ReplyError
from tests.support.net import free_port
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration


def settings(port: int, **changes: object) -> RedisSettings:
    base = RedisSettings(hosts=(("127.0.0.1", port),), timeout=1.0)
    return RedisSettings(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


@asynccontextmanager
async def piped(port: int, **changes: object) -> AsyncIterator[RedisPipe]:
    pipe = RedisPipe(settings(port, **changes))
    try:
        yield pipe
    finally:
        await pipe.close()


@asynccontextmanager
async def raw(port: int, **options: object) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=port, **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose()


async def test_concurrent_callers_each_get_their_own_reply(redis_port: int) -> None:
    async with piped(redis_port) as pipe:

        async def one(n: int) -> None:
            assert await pipe.call("SET", f"k{n}", n, what="set") == b"OK"
            assert await pipe.call("GET", f"k{n}", what="get") == str(n).encode()

        await asyncio.gather(*(one(n) for n in range(300)))
        replies = await pipe.calls([("INCR", "c")] * 50, what="incr", idempotent=False)
        assert replies == list(range(1, 51))


async def test_an_error_reply_is_returned_not_raised(redis_port: int) -> None:
    async with piped(redis_port) as pipe:
        await pipe.call("SET", "s", "text", what="set")
        reply = await pipe.call("HGET", "s", "f", what="hget")
        assert isinstance(reply, ReplyError) and str(reply).startswith("WRONGTYPE")
        assert await pipe.call("GET", "s", what="get") == b"text"  # the pipe goes on


async def test_a_caller_that_stops_waiting_leaves_its_reply_behind(redis_port: int) -> None:
    async with piped(redis_port) as pipe, raw(redis_port) as client:
        await pipe.call("SET", "mine", "yours?", what="set")
        await client.execute_command("CLIENT", "PAUSE", "300", "ALL")
        leaving = asyncio.ensure_future(pipe.call("GET", "mine", what="get"))
        await asyncio.sleep(0.05)
        leaving.cancel()
        staying = await pipe.call("ECHO", "mine, really", what="echo")
        assert staying == b"mine, really"
        assert leaving.cancelled()


async def test_a_silent_server_is_an_error_within_the_deadline(redis_port: int) -> None:
    async with piped(redis_port, timeout=0.3) as pipe, raw(redis_port) as client:
        await pipe.call("PING", what="ping")
        await client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        began = time.monotonic()
        with pytest.raises(ComponentError, match=r"redis: get: timed out: no reply for 0.3s"):
            await pipe.call("GET", "k", what="get")
        assert 0.3 <= time.monotonic() - began < 0.9
        await asyncio.sleep(1.3)  # the pause ends: a new connection is made
        assert await pipe.call("PING", what="ping") == b"PONG"


async def test_a_connection_the_server_closed_while_quiet_is_replaced(redis_port: int) -> None:
    async with piped(redis_port) as pipe, raw(redis_port) as client:
        assert await pipe.call("PING", what="ping") == b"PONG"
        await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert await pipe.call("SET", "k", "v", what="set") == b"OK"
        assert await client.get("k") == b"v"


async def test_a_write_after_a_quiet_spell_outlives_the_servers_close() -> None:
    """The server closes the connection as the write arrives, before the pipe hears of it:
    the write goes again on a new connection."""
    async with breaking_server(answer_first=1) as port, piped(port) as pipe:
        assert await pipe.call("SET", "a", "1", what="set") == b"OK"
        assert await pipe.call("SET", "b", "2", what="set") == b"OK"


async def test_commands_behind_another_when_the_connection_breaks() -> None:
    """Only reads are tried again: a write behind another command may have run."""
    async with breaking_server(answer_first=1) as port, piped(port) as pipe:
        assert await pipe.call("SET", "a", "1", what="set") == b"OK"
        first = asyncio.ensure_future(pipe.call("PING", what="ping"))
        read = asyncio.ensure_future(pipe.call("GET", "a", what="get", idempotent=True))
        write = asyncio.ensure_future(pipe.call("SET", "b", "2", what="set"))
        assert await first == b"OK" and await read == b"OK"  # (+OK to anything, later)
        with pytest.raises(ComponentError, match="redis: set: connection"):
            await write


@asynccontextmanager
async def breaking_server(answer_first: int) -> AsyncIterator[int]:
    """A stand-in for Redis: on its first connection it answers `answer_first` commands
    with +OK and closes the connection on the next bytes; later connections get +OK to
    every command."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        budget = answer_first if connections == 1 else 1 << 30
        try:
            while data := await reader.read(65536):
                commands = data.count(b"*")  # (the commands here carry no '*' in their args)
                if commands > budget:
                    break
                budget -= commands
                writer.write(b"+OK\r\n" * commands)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_an_unreachable_server_is_an_error_after_a_few_quick_retries() -> None:
    began = time.monotonic()
    async with piped(free_port(), max_retries=3) as pipe:
        with pytest.raises(ComponentError, match=r"redis: ping: cannot connect to 127.0.0.1:"):
            await pipe.call("PING", what="ping", idempotent=True)
    assert time.monotonic() - began < 2  # 0.05 + 0.1 + 0.2 of backoff


async def test_the_pipe_reconnects_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    async with piped(port) as pipe:
        with redis_server(tmp_path, port=port):
            assert await pipe.call("SET", "k", "before", what="set") == b"OK"
        with redis_server(tmp_path, port=port):
            assert await pipe.call("SET", "k", "after", what="set") == b"OK"


async def test_auth_and_select_come_first(tmp_path: Path) -> None:
    with redis_server(tmp_path, "--requirepass", "s3cret") as port:
        async with piped(port, password="s3cret", db=3) as pipe:
            assert await pipe.call("SET", "in3", "yes", what="set") == b"OK"
        async with raw(port, password="s3cret", db=3) as client:
            assert await client.get("in3") == b"yes"
        async with piped(port, password="wrong", max_retries=0) as pipe:
            with pytest.raises(ComponentError, match="redis: AUTH refused: WRONGPASS"):
                await pipe.call("PING", what="ping")


async def test_a_script_is_sent_whole_only_when_redis_lacks_it(redis_port: int) -> None:
    script = Script("return ARGV[1] .. KEYS[1]")
    async with piped(redis_port) as pipe, raw(redis_port) as client:
        assert await pipe.script(script, ["k"], ["v"], "script") == b"vk"
        await client.script_flush()
        assert await pipe.script(script, ["k2"], ["v"], "script") == b"vk2"
        assert (await client.script_exists(script.sha)) == [True]
        failing = Script("return redis.error_reply('READONLY not now')")
        with pytest.raises(ComponentError, match="redis: failing: READONLY not now") as caught:
            await pipe.script(failing, [], [], "failing")
        assert caught.value.retryable


async def test_closing_fails_what_is_in_flight_and_what_comes_after(redis_port: int) -> None:
    async with piped(redis_port) as pipe, raw(redis_port) as client:
        await pipe.call("PING", what="ping")
        await client.execute_command("CLIENT", "PAUSE", "300", "ALL")
        waiting = asyncio.ensure_future(pipe.call("PING", what="ping", idempotent=True))
        await asyncio.sleep(0.05)
        await pipe.close()
        with pytest.raises(ComponentError, match="redis: ping: closed"):
            await waiting
        with pytest.raises(ComponentError, match="closed"):
            await pipe.call("PING", what="ping")


async def test_calls_in_flight_are_bounded(
    redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_pipe, "MAX_IN_FLIGHT", 10)
    async with piped(redis_port) as pipe:
        with pytest.raises(ComponentError, match="over 10 commands in flight"):
            await pipe.calls([("PING",)] * 11, what="pings")
        assert await pipe.calls([("PING",)] * 10, what="pings") == [b"PONG"] * 10
