"""tcp_proxy end to end: real clients, a real redis-server, real TCP peers, mecha as a process."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.support.mecha import run_mecha, tcp_proxy_config
from tests.support.net import free_port, is_closed_by_peer, recv_all
from tests.support.peers import deterministic_bytes, hashing_sink, source, tcp_server

pytestmark = pytest.mark.integration

MB = 1 << 20


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_redis_py_commands_and_pipeline(tmp_path: Path, redis_port: int) -> None:
    with run_mecha(tmp_path, tcp_proxy_config([redis_port])) as mecha:
        client = redis.Redis(port=mecha.port("tcp"))
        assert client.ping()
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        pipe = client.pipeline(transaction=False)
        for _ in range(1000):
            pipe.incr("counter")
        assert pipe.execute()[-1] == 1000
        client.close()
        line = mecha.wait_access_log(1)[-1]
        assert f"upstream=127.0.0.1:{redis_port}" in line
        assert "cluster=upstream" in line and "flags=-" in line
        mecha.wait_metric("mecha_listener_downstream_cx_active", 0, listener="tcp")
        assert mecha.metric("mecha_listener_downstream_cx_total", listener="tcp") == 1
        assert mecha.metric("mecha_cluster_upstream_cx_total", cluster="upstream") == 1
        received = mecha.metric("mecha_listener_downstream_bytes_received_total", listener="tcp")
        assert received == mecha.metric(
            "mecha_cluster_upstream_bytes_sent_total", cluster="upstream"
        )
        assert received > 1000 * len(b"*2\r\n$4\r\nincr\r\n")


def test_redis_cli_reaches_redis(tmp_path: Path, redis_port: int) -> None:
    with run_mecha(tmp_path, tcp_proxy_config([redis_port])) as mecha:
        port = str(mecha.port("tcp"))

        def cli(*args: str) -> str:
            run = subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, timeout=10)
            return run.stdout.decode().strip()

        assert cli("ping") == "PONG"
        assert cli("set", "k", "v") == "OK"
        assert cli("get", "k") == "v"


def test_100mb_upload_hash_matches_and_half_close_carries_the_answer(tmp_path: Path) -> None:
    size = 100 * MB
    expected = hashlib.sha256()
    with (
        tcp_server(hashing_sink) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream])) as mecha,
    ):
        with connect(mecha.port("tcp")) as sock:
            for piece in deterministic_bytes(size):
                expected.update(piece)
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)  # half-close: the answer must still come back
            answer = recv_all(sock).decode()
        assert answer == f"{expected.hexdigest()} {size}"
        line = mecha.wait_access_log(1)[-1]
        assert f"rx={size} " in line and f"tx={len(answer)} " in line


def test_100mb_download_hash_matches(tmp_path: Path) -> None:
    size = 100 * MB
    expected = hashlib.sha256(b"".join(deterministic_bytes(size))).hexdigest()
    with (
        tcp_server(source(size)) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream])) as mecha,
    ):
        with connect(mecha.port("tcp")) as sock:
            received = recv_all(sock)
        assert len(received) == size
        assert hashlib.sha256(received).hexdigest() == expected


def test_upstream_half_close_keeps_downstream_sending(tmp_path: Path) -> None:
    heard: list[bytes] = []
    done = threading.Event()

    def greet_then_listen(conn: socket.socket) -> None:
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        heard.append(recv_all(conn))
        done.set()

    with (
        tcp_server(greet_then_listen) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream])) as mecha,
    ):
        with connect(mecha.port("tcp")) as sock:
            assert recv_all(sock) == b"hello"  # EOF from the upstream arrived
            sock.sendall(b"still talking")
            sock.shutdown(socket.SHUT_WR)
            assert done.wait(5)
            assert is_closed_by_peer(sock)
        assert heard == [b"still talking"]


def test_slow_downstream_reader_keeps_memory_bounded(tmp_path: Path) -> None:
    size = 300 * MB
    with (
        tcp_server(source(size)) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream])) as mecha,
    ):
        before = mecha.rss()
        with connect(mecha.port("tcp")) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            time.sleep(2.0)  # read nothing while the upstream pushes as fast as it can
            stalled = mecha.rss()
            received = len(recv_all(sock))
        assert received == size
    assert stalled - before < 16 * MB, f"RSS grew {(stalled - before) / MB:.1f} MiB while stalled"


def test_slow_upstream_reader_keeps_memory_bounded(tmp_path: Path) -> None:
    from tests.support.peers import slow_sink

    with (
        tcp_server(slow_sink(0.05)) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream])) as mecha,
    ):
        before = mecha.rss()
        sock = connect(mecha.port("tcp"))
        sock.settimeout(0.5)
        pushed = 0
        chunk = b"x" * 65536
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                pushed += sock.send(chunk)
            except TimeoutError:
                continue  # the proxy stopped reading us: backpressure
        stalled = mecha.rss()
        sock.close()
    assert pushed < 64 * MB, f"{pushed / MB:.0f} MiB went in although the upstream reads slowly"
    assert stalled - before < 16 * MB, f"RSS grew {(stalled - before) / MB:.1f} MiB"


def test_refused_upstream_closes_only_that_connection(tmp_path: Path, redis_port: int) -> None:
    config = tcp_proxy_config([free_port()])
    config["listeners"].append({
        "name": "redis", "address": "127.0.0.1:0",
        "filters": [{"name": "tcp_proxy", "config": {"cluster": "redis"}}],
    })  # fmt: skip
    config["clusters"].append({"name": "redis", "endpoints": [f"127.0.0.1:{redis_port}"]})
    with run_mecha(tmp_path, config) as mecha:
        client = redis.Redis(port=mecha.port("redis"))
        assert client.ping()
        with connect(mecha.port("tcp")) as sock:
            assert is_closed_by_peer(sock)
        assert client.ping()  # the other connection is untouched
        line = next(line for line in mecha.wait_access_log(1) if "cluster=upstream" in line)
        assert "flags=UF" in line and 'reason="connection refused"' in line
        assert mecha.metric("mecha_cluster_upstream_cx_connect_fail_total", cluster="upstream") == 1
        client.close()


def test_connect_timeout(tmp_path: Path) -> None:
    # A listener whose accept queue is full drops SYNs, so connecting to it hangs.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    time.sleep(0.2)
    try:
        config = tcp_proxy_config([port], cluster={"connect_timeout": "300ms"})
        with run_mecha(tmp_path, config) as mecha, connect(mecha.port("tcp")) as sock:
            started = time.monotonic()
            assert is_closed_by_peer(sock, timeout=5)
            assert time.monotonic() - started < 3
            line = mecha.wait_access_log(1)[-1]
            assert "flags=UF" in line and 'reason="connect timeout"' in line
            assert (
                mecha.metric("mecha_cluster_upstream_cx_connect_timeout_total", cluster="upstream")
                == 1
            )
    finally:
        for filler in fillers:
            filler.close()
        blackhole.close()
