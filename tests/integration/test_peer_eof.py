"""Every protocol closes its side when the client closes: no socket left in CLOSE-WAIT.

Real clients connect through one mecha, do one exchange and close (FIN, no GOAWAY or
DISCONNECT unless the client sends one itself); afterwards mecha must hold no socket on
that listener whose peer has gone. Before, HTTP/2 connections (curl, grpcio channels) sat in
CLOSE-WAIT until the idle timeout, one per client.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis

from tests.support import msgpack_rpc_peer
from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.mecha import Mecha, run_mecha
from tests.support.mqtt import Client, mosquitto
from tests.support.net import tcp_sockets, wait_until
from tests.support.peers import echo, echo_once, tcp_server
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration

CLIENTS = 10
METADATA = "/dapr.proto.runtime.v1.Dapr/GetMetadata"


def direct(body: str) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}
    return {"access_log": False, "route_config": {"virtual_hosts": [
        {"name": "vh", "domains": ["*"], "routes": [route]}]}}  # fmt: skip


def to_cluster(cluster: str) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
    return {"access_log": False, "route_config": {"virtual_hosts": [
        {"name": "vh", "domains": ["*"], "routes": [route]}]}}  # fmt: skip


def listener(name: str, filter_name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": filter_name}
    if config is not None:
        entry["config"] = config
    return {"name": name, "address": "127.0.0.1:0", "filters": [entry]}


def cluster(name: str, port: int, **options: Any) -> dict[str, Any]:
    return {"name": name, "connect_timeout": "1s", "endpoints": [f"127.0.0.1:{port}"], **options}


@dataclass
class Running:
    mecha: Mecha

    def port(self, listener: str) -> int:
        return self.mecha.port(listener)

    def left_open(self, listener: str) -> list[Any]:
        """mecha's sockets on the listener whose client has closed its side."""
        port = self.port(listener)
        return [s for s in tcp_sockets(self.mecha.process.pid)
                if s.local_port == port and s.state == "CLOSE_WAIT"]  # fmt: skip

    def closes_after(self, listener: str, clients: Callable[[], None]) -> None:
        clients()
        wait_until(lambda: not self.left_open(listener), timeout=5,
                   what=f"{listener}: sockets in CLOSE-WAIT")  # fmt: skip


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("eof")
    with (
        redis_server(workdir) as redis_port,
        msgpack_rpc_peer.start_server() as rpc,
        mosquitto(workdir) as broker,
        grpc_backend() as grpc_port,
        tcp_server(echo) as echo_port,
    ):
        config = {
            "listeners": [
                listener("http", "http", direct("hello")),
                listener("grpc", "http", to_cluster("grpc")),
                listener("runtime-grpc", "runtime_grpc"),
                listener("redis", "redis_proxy", {"cluster": "redis"}),
                listener("rpc", "rpc_proxy", {"codec": "msgpack_rpc",
                                              "routes": [{"cluster": "rpc"}]}),
                listener("mqtt", "mqtt_proxy", {"cluster": "mqtt"}),
                listener("tcp", "tcp_proxy", {"cluster": "echo", "access_log": "off"}),
            ],
            "clusters": [
                cluster("grpc", grpc_port, protocol="http2"),
                cluster("redis", redis_port, lb_policy="ketama"),
                cluster("rpc", rpc.port),
                cluster("mqtt", broker),
                cluster("echo", echo_port),
            ],
            "runtime": {"app_id": "eof", "components": [
                {"name": "statestore", "type": "state.in-memory"}]},
        }  # fmt: skip
        with run_mecha(workdir, config) as mecha:
            yield Running(mecha)


def curl(*args: str) -> None:
    result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args],
                            capture_output=True, text=True, timeout=10)  # fmt: skip
    assert result.stdout == "200", result


def test_http1_clients(running: Running) -> None:
    url = f"http://127.0.0.1:{running.port('http')}/"

    def clients() -> None:
        for _ in range(CLIENTS):
            curl(url)
        with socket.create_connection(("127.0.0.1", running.port("http")), timeout=5) as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200")
            idle.shutdown(socket.SHUT_WR)  # a kept-alive connection the client ends

    running.closes_after("http", clients)


def test_http2_prior_knowledge_clients(running: Running) -> None:
    url = f"http://127.0.0.1:{running.port('http')}/"

    def clients() -> None:
        for _ in range(CLIENTS):
            curl("--http2-prior-knowledge", url)

    running.closes_after("http", clients)


def grpc_channels(port: int, method: str, request: bytes) -> None:
    for _ in range(CLIENTS * 2):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            channel.unary_unary(method)(request, timeout=5)


def test_grpc_channels_through_the_proxy(running: Running) -> None:
    port = running.port("grpc")
    running.closes_after("grpc", lambda: grpc_channels(port, f"/{SERVICE}/Unary", b"hi"))


def test_grpc_channels_on_the_runtime_api(running: Running) -> None:
    port = running.port("runtime-grpc")
    running.closes_after("runtime-grpc", lambda: grpc_channels(port, METADATA, b""))


def test_redis_clients(running: Running) -> None:
    def clients() -> None:
        for index in range(CLIENTS):
            with redis.Redis(port=running.port("redis"), socket_timeout=5) as client:
                assert client.set(f"k{index}", "v")

    running.closes_after("redis", clients)


def test_rpc_callers(running: Running) -> None:
    def clients() -> None:
        for index in range(CLIENTS):
            assert msgpack_rpc_peer.call(running.port("rpc"), "add", index, 1) == index + 1

    running.closes_after("rpc", clients)


def test_mqtt_clients(running: Running) -> None:
    """Half the clients end with DISCONNECT, half just close their socket."""

    def clients() -> None:
        for index in range(CLIENTS):
            client = Client(running.port("mqtt"), f"eof-{index}", version=4)
            client.wait_connected()
            client.client.publish("eof/t", b"x", qos=1).wait_for_publish(timeout=5)  # PUBACK
            if index % 2:
                client.close()
            else:
                client.client.loop_stop()
                client.client.socket().close()  # type: ignore[union-attr]

    running.closes_after("mqtt", clients)


def test_tcp_clients(running: Running) -> None:
    def clients() -> None:
        for _ in range(CLIENTS):
            assert echo_once(running.port("tcp"), b"ping") == b"ping"

    running.closes_after("tcp", clients)
