"""Reloads leave nothing behind: upstream connections and file descriptors stay flat.

Every protocol that pools upstream connections (HTTP/1, HTTP/2, RESP, msgpack-RPC) sits
behind one mecha, each in front of a real backend. Each reload changes the filters (a new
pool setting: the issue's Redis `timeout`) or the clusters (a new connect timeout), and
each round sends one request per protocol on a fresh client connection that is closed
afterwards; then the backends must see as many connections from mecha as before the first
reload, and mecha must hold as many file descriptors.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from tests.support import msgpack_rpc_peer
from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.http_backend import http_backend
from tests.support.mecha import Mecha, redis_proxy_config, run_mecha, write_config
from tests.support.net import connections_at, open_fds, wait_until
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration

RELOADS = 10


def routed(cluster: str, timeout: str) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": timeout}}
    return {"route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                "routes": [route]}]}}  # fmt: skip


def config(ports: dict[str, int], round_: int) -> dict[str, Any]:
    """Even rounds change a setting of every filter; odd ones every cluster as well."""
    step = f"{round_ + 1}s"
    connect = f"{500 + round_ // 2}ms"
    return {
        "listeners": [
            {"name": "redis", "address": "127.0.0.1:0", "filters": [
                {"name": "redis_proxy", "config": {"cluster": "shards", "timeout": step}}]},
            {"name": "rpc", "address": "127.0.0.1:0", "filters": [
                {"name": "rpc_proxy", "config": {
                    "codec": "msgpack_rpc", "max_message_size": 4096 + round_,
                    "routes": [{"cluster": "rpc", "timeout": step}]}}]},
            {"name": "web", "address": "127.0.0.1:0", "filters": [
                {"name": "http", "config": {**routed("web", step), "access_log": False}}]},
            {"name": "grpc", "address": "127.0.0.1:0", "filters": [
                {"name": "http", "config": {**routed("grpc", step), "access_log": False}}]},
        ],
        "clusters": [
            {"name": "shards", "lb_policy": "ketama", "connect_timeout": connect,
             "endpoints": [f"127.0.0.1:{ports['redis']}"]},
            {"name": "rpc", "connect_timeout": connect,
             "endpoints": [f"127.0.0.1:{ports['rpc']}"]},
            {"name": "web", "connect_timeout": connect,
             "endpoints": [f"127.0.0.1:{ports['web']}"]},
            {"name": "grpc", "connect_timeout": connect, "protocol": "http2",
             "endpoints": [f"127.0.0.1:{ports['grpc']}"]},
        ],
    }  # fmt: skip


def use_every_protocol(mecha: Mecha) -> None:
    """One request per protocol, each on a client connection closed right after."""
    with redis.Redis(port=mecha.port("redis"), socket_timeout=5, protocol=2) as client:
        assert client.set("k", "v") and client.get("k") == b"v"
    assert msgpack_rpc_peer.call(mecha.port("rpc"), "add", 1, 2) == 3
    with redis.Redis(port=mecha.port("redis"), socket_timeout=5, protocol=3) as client:
        assert client.get("k") == b"v"  # (HELLO 3: the RESP3 pool)
    with grpc.insecure_channel(f"127.0.0.1:{mecha.port('grpc')}") as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Unary")
        assert unary(b"hi", timeout=5).startswith(b"echo:hi")
    web = http.client.HTTPConnection("127.0.0.1", mecha.port("web"), timeout=5)
    try:
        web.request("GET", "/")  # keep-alive: mecha's upstream connection stays pooled
        assert web.getresponse().read() == b"hello from web"
    finally:
        web.close()


def redis_clients(port: int) -> int:
    """Connections Redis sees, less the one asking (CLIENT LIST, as an operator would)."""
    with redis.Redis(port=port, socket_timeout=5) as direct:
        return len(direct.client_list()) - 1


def counts(mecha: Mecha, ports: dict[str, int]) -> dict[str, int]:
    here = os.getpid()  # the HTTP, gRPC and RPC backends run in the test process
    return {
        "redis": redis_clients(ports["redis"]),
        "rpc": connections_at(here, ports["rpc"]),
        "web": connections_at(here, ports["web"]),
        "grpc": connections_at(here, ports["grpc"]),
        "fds": open_fds(mecha.process.pid),
    }


def steady(current: Callable[[], dict[str, int]]) -> dict[str, int]:
    """The counts once the same ones are seen over half a second (closed clients gone)."""
    seen = [current()]

    def unchanged() -> bool:
        time.sleep(0.1)
        seen.append(current())
        return len(seen) > 5 and all(counted == seen[-1] for counted in seen[-5:])

    wait_until(unchanged, timeout=10, what="counts that hold still")
    return seen[-1]


def settles_at(expected: dict[str, int], current: Callable[[], dict[str, int]]) -> None:
    seen: list[dict[str, int]] = []

    def flat() -> bool:
        seen.append(current())
        return seen[-1] == expected

    try:
        wait_until(flat, timeout=10, what="connections and fds back to where they were")
    except AssertionError:
        raise AssertionError(f"expected {expected}, last seen {seen[-1]}") from None


def test_reloads_leak_no_upstream_connection_and_no_fd(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path) as redis_port,
        msgpack_rpc_peer.start_server() as rpc,
        http_backend("web") as web,
        grpc_backend() as grpc_port,
    ):
        ports = {"redis": redis_port, "rpc": rpc.port, "web": web.port, "grpc": grpc_port}
        with run_mecha(tmp_path, config(ports, 0)) as mecha:
            use_every_protocol(mecha)
            baseline = steady(lambda: counts(mecha, ports))
            # One pooled connection per backend (Redis: RESP2 and RESP3 pools).
            assert {k: v for k, v in baseline.items() if k != "fds"} == {
                "redis": 2, "rpc": 1, "web": 1, "grpc": 1}  # fmt: skip
            for round_ in range(1, RELOADS + 1):
                before = mecha.metric("mecha_config_reload_total", result="applied")
                write_config(mecha.workdir, config(ports, round_), mecha.admin_port)
                mecha.signal(signal.SIGHUP)
                mecha.wait_metric("mecha_config_reload_total", before + 1, result="applied")
                use_every_protocol(mecha)
                settles_at(baseline, lambda: counts(mecha, ports))


def resp(sock: socket.socket, *args: bytes, lines: int = 1) -> bytes:
    """Send one command, return its reply of `lines` lines (short once mecha has closed)."""
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    reply = b""
    while reply.count(b"\r\n") < lines:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply


def test_a_client_left_on_a_replaced_cluster_is_told_and_disconnected(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis_port:
        document = redis_proxy_config([redis_port])
        document["drain_timeout"] = "1s"
        with run_mecha(tmp_path, document) as mecha:
            port = mecha.port("redis")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as old:
                assert resp(old, b"SET", b"k", b"v") == b"+OK\r\n"
                document["clusters"][0]["connect_timeout"] = "400ms"  # a new cluster
                before = mecha.metric("mecha_config_reload_total", result="applied")
                write_config(mecha.workdir, document, mecha.admin_port)
                mecha.signal(signal.SIGHUP)
                mecha.wait_metric("mecha_config_reload_total", before + 1, result="applied")
                assert resp(old, b"GET", b"k", lines=2) == b"$1\r\nv\r\n"  # the old cluster
                wait_until(
                    lambda: redis_clients(redis_port) == 0,
                    timeout=5,
                    what="the old cluster's connection closed after drain_timeout",
                )
                error = resp(old, b"GET", b"k")
                assert error.startswith(b"-ERR upstream 127.0.0.1:")
                assert b"cluster 'shards' was removed or replaced by a reload" in error
                assert old.recv(16) == b""  # and disconnected
            with redis.Redis(port=port, socket_timeout=5, protocol=2) as client:
                assert client.get("k") == b"v"  # a new connection gets the new cluster
            assert redis_clients(redis_port) == 1
