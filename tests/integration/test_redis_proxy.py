"""redis_proxy in front of real redis-server shards, driven by redis-py and redis-cli."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from tests.support.mecha import Mecha, redis_proxy_config, run_mecha
from tests.support.net import recv_all
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[int]]:
    with ExitStack() as stack:
        yield [stack.enter_context(redis_server(tmp_path / f"s{i}")) for i in range(3)]


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"s{i}").mkdir(exist_ok=True)


def client(mecha: Mecha, **options: object) -> redis.Redis:
    return redis.Redis(port=mecha.port("redis"), socket_timeout=10, **options)  # type: ignore[arg-type]


def test_keys_are_sharded_and_found_again(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        proxy = client(mecha)
        for i in range(300):
            assert proxy.set(f"key:{i}", f"value {i}")
        expected = [f"value {i}".encode() for i in range(300)]
        assert [proxy.get(f"key:{i}") for i in range(300)] == expected
        counts = [redis.Redis(port=port).dbsize() for port in shards]
        assert sum(counts) == 300 and all(count > 40 for count in counts), counts
        assert mecha.metric("mecha_redis_commands_total", listener="redis", command="set") == 300


def test_pipelines_answer_in_order(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        pipe = client(mecha).pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"p:{i}", i)
            pipe.incr(f"p:{i}")
            pipe.get(f"p:{i}")
        results = pipe.execute()
        assert results[2::3] == [str(i + 1).encode() for i in range(2000)]


def test_multi_key_commands_split_and_merge(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        proxy = client(mecha)
        mapping = {f"m:{i}": f"v{i}" for i in range(50)}
        assert proxy.mset(mapping)
        keys = [*mapping, "missing"]
        assert proxy.mget(keys) == [*(v.encode() for v in mapping.values()), None]
        assert proxy.exists(*keys) == 50
        assert proxy.touch(*keys) == 50
        assert proxy.delete(*list(mapping)[:20]) == 20
        assert proxy.unlink(*keys) == 30
        assert proxy.mget(keys[:3]) == [None, None, None]


def test_hash_tags_keep_keys_together(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        proxy = client(mecha)
        for i in range(20):
            proxy.sadd(f"{{user7}}:set{i}", "x", str(i))
        members = proxy.sunion([f"{{user7}}:set{i}" for i in range(20)])
        assert members == {b"x", *(str(i).encode() for i in range(20))}
        proxy.set("{user7}:a", 1)
        assert proxy.rename("{user7}:a", "{user7}:b")
        on_one_shard = [redis.Redis(port=port).exists("{user7}:b") for port in shards]
        assert sorted(on_one_shard) == [0, 0, 1]
        proxy.set("a1", 1)
        with pytest.raises(redis.ResponseError, match="hash to the same shard"):
            for i in range(50):  # some pair lands on two shards
                proxy.rename("a1", f"b{i}")
                proxy.rename(f"b{i}", "a1")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["KEYS", "*"], "KEYS is not supported by the proxy: it spans every shard"),
        (["WAIT", "0", "0"], "WAIT is not supported by the proxy: it spans every shard"),
        (["EXEC"], "EXEC without MULTI"),
        (["FLUSHALL"], "FLUSHALL is not supported by the proxy"),
        (["NOSUCHCOMMAND", "x"], "unknown command 'NOSUCHCOMMAND', with args beginning with: 'x'"),
        (["SELECT", "1"], "SELECT is not allowed"),
        (["GET"], "wrong number of arguments for 'get' command"),
    ],
)
def test_refusals_are_clear_and_keep_the_connection(
    tmp_path: Path, shards: list[int], command: list[str], message: str
) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        proxy = client(mecha, single_connection_client=True)
        with pytest.raises(redis.ResponseError, match=message):
            proxy.execute_command(*command)
        assert proxy.ping()


def test_local_commands(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        proxy = client(mecha, single_connection_client=True)
        assert proxy.echo("hi") == b"hi"
        assert proxy.execute_command("SELECT", 0) is True
        assert proxy.client_setname("tester") and proxy.client_getname() == "tester"
        assert "mecha" in str(proxy.info()["proxy"])
        assert proxy.command_count() > 100  # forwarded to a shard
        resp3 = client(mecha, protocol=3, single_connection_client=True)
        resp3.hset("h", mapping={"a": "1", "b": "2"})
        assert resp3.hgetall("h") == {b"a": b"1", b"b": b"2"}


def test_downstream_auth(tmp_path: Path, shards: list[int]) -> None:
    config = redis_proxy_config(shards, {"password": "s3cret"})
    with run_mecha(tmp_path, config) as mecha:
        with pytest.raises(redis.AuthenticationError):
            client(mecha).get("x")
        with pytest.raises(redis.AuthenticationError):
            client(mecha, password="wrong").get("x")
        authed = client(mecha, password="s3cret")
        assert authed.set("x", 1) and authed.get("x") == b"1"


def test_upstream_credentials(tmp_path: Path) -> None:
    with ExitStack() as stack:
        ports = [stack.enter_context(redis_server(tmp_path / f"s{i}", "--requirepass", "up"))
                 for i in range(2)]  # fmt: skip
        config = redis_proxy_config(ports, {"upstream_auth": {"password": "up"}})
        mecha = stack.enter_context(run_mecha(tmp_path, config))
        proxy = client(mecha)
        for i in range(20):
            proxy.set(f"k{i}", i)
        assert proxy.mget([f"k{i}" for i in range(20)]) == [str(i).encode() for i in range(20)]


def test_malformed_frame_is_a_protocol_error_then_close(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("redis")), timeout=5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n*2\r\n$x\r\n")
            answer = recv_all(sock)
        assert answer.startswith(b"+PONG\r\n-ERR Protocol error: ")
        assert mecha.metric("mecha_redis_protocol_errors_total", listener="redis") == 1


def test_oversized_bulk_is_refused_on_its_header(tmp_path: Path, shards: list[int]) -> None:
    config = redis_proxy_config(shards, {"limits": {"max_bulk": "1KiB"}})
    with run_mecha(tmp_path, config) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("redis")), timeout=5) as sock:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n")  # no payload sent
            answer = recv_all(sock)
        assert answer.startswith(b"-ERR Protocol error: invalid bulk length")


def test_a_down_shard_fails_only_its_keys(tmp_path: Path, shards: list[int]) -> None:
    down = shards[1]
    with run_mecha(tmp_path, redis_proxy_config(shards, {"timeout": "1s"})) as mecha:
        proxy = client(mecha)
        for i in range(100):
            proxy.set(f"d:{i}", i)
        owners = {
            i: next(p for p in shards if redis.Redis(port=p).exists(f"d:{i}")) for i in range(100)
        }
        subprocess.run(["redis-cli", "-p", str(down), "shutdown", "nosave"], capture_output=True)
        time.sleep(0.3)
        for i in range(100):
            if owners[i] == down:
                with pytest.raises(redis.ResponseError, match=r"unavailable|connection"):
                    proxy.get(f"d:{i}")
            else:
                assert proxy.get(f"d:{i}") == str(i).encode()
        with redis_server(tmp_path / "s1", port=down):
            deadline = time.monotonic() + 5
            while True:
                try:
                    proxy.set("d:back", 1)
                    assert all(proxy.set(f"d:{i}", i) for i in range(100))
                    break
                except redis.ResponseError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)


def test_replies_never_cross_clients(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        seed = client(mecha)
        seed.mset({f"c{c}:{i}": f"{c}-{i}" for c in range(8) for i in range(200)})
        failures: list[str] = []

        def worker(c: int) -> None:
            own = client(mecha)
            for _ in range(5):
                pipe = own.pipeline(transaction=False)
                for i in range(200):
                    pipe.get(f"c{c}:{i}")
                got = pipe.execute()
                if got != [f"{c}-{i}".encode() for i in range(200)]:
                    failures.append(f"client {c} got someone else's replies")

        threads = [threading.Thread(target=worker, args=(c,)) for c in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []


def test_redis_cli(tmp_path: Path, shards: list[int]) -> None:
    with run_mecha(tmp_path, redis_proxy_config(shards)) as mecha:
        port = str(mecha.port("redis"))

        def cli(*args: str, stdin: str | None = None) -> str:
            result = subprocess.run(["redis-cli", "-p", port, *args], input=stdin,
                                    capture_output=True, text=True, timeout=20)  # fmt: skip
            return result.stdout.strip()

        assert cli("ping") == "PONG"
        assert cli("set", "cli-key", "hello") == "OK"
        assert cli("get", "cli-key") == "hello"
        piped = "".join(f"SET pipe:{i} {i}\r\n" for i in range(500))
        assert "errors: 0, replies: 500" in cli("--pipe", stdin=piped)
        assert cli("get", "pipe:499") == "499"


BUSY = "local i = 0 while i < 100000000 do i = i + 1 end return i"
"""About a second of Lua: Redis reads nothing else meanwhile, so what follows queues up."""


def test_a_command_redis_refuses_by_closing_costs_only_its_own_client(tmp_path: Path) -> None:
    """The server's proto-max-bulk-len is below the proxy's max_bulk: Redis answers the big
    SET with a protocol error and closes the shared connection, dropping everything queued
    behind it. Those commands are sent again; the client that sent the SET is closed."""
    (tmp_path / "s").mkdir()
    server = redis_server(tmp_path / "s", "--proto-max-bulk-len", "1mb")
    with server as port, run_mecha(tmp_path, redis_proxy_config([port])) as mecha:
        resp2 = {"protocol": 2}  # the culprit's: one shared connection per protocol
        slow = threading.Thread(target=lambda: client(mecha, **resp2).eval(BUSY, 0))
        slow.start()
        time.sleep(0.2)  # Redis is busy with the script
        culprit = socket.create_connection(("127.0.0.1", mecha.port("redis")), timeout=10)
        culprit.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2000000\r\n" + b"x" * 2_000_000
                        + b"\r\n")  # fmt: skip
        time.sleep(0.2)
        victims = [client(mecha, **resp2) for _ in range(20)]
        answers: list[object] = [None] * 20

        def incr(i: int) -> None:
            answers[i] = victims[i].incr(f"victim:{i}")

        threads = [threading.Thread(target=incr, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in [slow, *threads]:
            thread.join(10)
        assert recv_all(culprit).startswith(b"-ERR Protocol error: invalid bulk length")
        culprit.close()  # recv_all read to the end: mecha closed it
        assert answers == [1] * 20
        assert "20 commands sent after it go out again" in mecha.logs()
        assert client(mecha, **resp2).incr("after") == 1  # and no backoff: the server is up
        assert mecha.metric("mecha_redis_protocol_errors_total", listener="redis") == 1
