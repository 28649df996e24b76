"""One sniffing port serving HTTP/1.1, HTTP/2, Redis, MQTT, msgpack-RPC and TLS (by SNI)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.http_backend import http_backend
from tests.support.mecha import run_mecha
from tests.support.mqtt import Client, mosquitto
from tests.support.msgpack_rpc_peer import call, start_server
from tests.support.net import is_closed_by_peer
from tests.support.peers import identify, tcp_server
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration


def sniffing_config(ports: dict[str, int]) -> dict[str, Any]:
    def chain(name: str, protocols: list[str], filters: list[dict[str, Any]], **match: Any
              ) -> dict[str, Any]:  # fmt: skip
        return {"name": name, "match": {"protocol": protocols, **match}, "filters": filters}

    route = {
        "virtual_hosts": [{"routes": [{"match": {"prefix": "/"}, "route": {"cluster": "web"}}]}]
    }
    return {
        "listeners": [{
            "name": "any", "address": "127.0.0.1:0",
            "listener_filters": [{"name": "protocol_sniffer"}],
            "listener_filters_timeout": "1s",
            "filter_chains": [
                chain("http", ["http1", "http2"],
                      [{"name": "http", "config": {"route_config": route}}]),
                chain("redis", ["redis"],
                      [{"name": "redis_proxy", "config": {"cluster": "redis"}}]),
                chain("mqtt", ["mqtt"], [{"name": "mqtt_proxy", "config": {"cluster": "mqtt"}}]),
                chain("rpc", ["msgpack_rpc"], [{"name": "rpc_proxy", "config": {
                    "routes": [{"match": {"prefix": ""}, "cluster": "rpc"}]}}]),
                chain("tls-a", ["tls"], [{"name": "tcp_proxy", "config": {"cluster": "tls_a"}}],
                      server_names=["a.example.com"]),
                chain("tls-any", ["tls"], [{"name": "tcp_proxy", "config": {"cluster": "tls_b"}}]),
            ],
        }],
        "clusters": [
            {"name": "web", "endpoints": [f"127.0.0.1:{ports['web']}"]},
            {"name": "redis", "lb_policy": "ketama", "endpoints": [f"127.0.0.1:{ports['redis']}"]},
            {"name": "mqtt", "endpoints": [f"127.0.0.1:{ports['mqtt']}"]},
            {"name": "rpc", "endpoints": [f"127.0.0.1:{ports['rpc']}"]},
            {"name": "tls_a", "endpoints": [f"127.0.0.1:{ports['tls_a']}"]},
            {"name": "tls_b", "endpoints": [f"127.0.0.1:{ports['tls_b']}"]},
        ],
    }  # fmt: skip


def client_hello_reaches(port: int, server_name: str) -> bytes:
    """Start a TLS handshake for server_name; the TCP peer behind answers with its name."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    tls = context.wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=server_name
    )
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for a ServerHello
        tls.do_handshake()
    sock.sendall(outgoing.read())
    answer = sock.recv(16)
    sock.close()
    return answer


def test_every_protocol_through_one_port(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    with (
        http_backend("web") as web, redis_server(tmp_path / "r") as redis_port,
        mosquitto(tmp_path) as broker, start_server() as rpc,
        tcp_server(identify("tls-a")) as tls_a, tcp_server(identify("tls-b")) as tls_b,
    ):  # fmt: skip
        ports = {"web": web.port, "redis": redis_port, "mqtt": broker, "rpc": rpc.port,
                 "tls_a": tls_a, "tls_b": tls_b}  # fmt: skip
        with run_mecha(tmp_path, sniffing_config(ports)) as mecha:
            port = mecha.port("any")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/hello")
            assert connection.getresponse().read() == b"hello from web"
            connection.close()
            url = f"http://127.0.0.1:{port}/echo"
            h2 = subprocess.run(["curl", "-s", "--http2-prior-knowledge", url],
                                capture_output=True, timeout=10)  # fmt: skip
            assert json.loads(h2.stdout)["path"] == "/echo"
            cache = redis.Redis(port=port)
            assert cache.set("sniffed", 1) and cache.get("sniffed") == b"1"
            cache.close()
            mqtt_client = Client(port, "sniffed")
            mqtt_client.wait_connected()
            assert int(mqtt_client.connack.value) == 0
            mqtt_client.close()
            assert call(port, "add", 1, 2) == 3
            assert client_hello_reaches(port, "a.example.com").startswith(b"tls-a")
            assert client_hello_reaches(port, "other.example.com").startswith(b"tls-b")


def test_unknown_protocols_are_closed_after_bounded_bytes_and_time(tmp_path: Path) -> None:
    with tcp_server(identify("x")) as anything:
        ports = dict.fromkeys(("web", "redis", "mqtt", "rpc", "tls_a", "tls_b"), anything)
        with run_mecha(tmp_path, sniffing_config(ports)) as mecha:
            port = mecha.port("any")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as garbage:
                garbage.sendall(b"\x00\x01\x02 not a protocol anyone speaks")
                assert is_closed_by_peer(garbage, timeout=3)
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
                assert is_closed_by_peer(silent, timeout=5)  # says nothing: closed on timeout
            assert 0.9 < time.monotonic() - started < 3
            stats = mecha.json("/listeners")
            assert stats[0]["name"] == "any"
            assert mecha.metric("mecha_listener_no_filter_chain_total", listener="any") == 2
            assert (
                mecha.metric("mecha_listener_listener_filter_timeouts_total", listener="any") == 1
            )
