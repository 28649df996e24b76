"""Cluster behaviour seen from outside: balancing, health checks, breakers, DNS, limits."""

from __future__ import annotations

import socket
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.mecha import Mecha, run_mecha, tcp_proxy_config
from tests.support.net import free_port, is_closed_by_peer
from tests.support.peers import echo, identify, tcp_server

pytestmark = pytest.mark.integration


def who_answers(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(16).decode()


def endpoint_health(mecha: Mecha) -> dict[str, str]:
    clusters = mecha.json("/clusters?format=json")["clusters"]
    return {e["address"]: e["health"] for c in clusters for e in c["endpoints"]}


def wait_health(mecha: Mecha, address: str, health: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while endpoint_health(mecha).get(address) != health:
        assert time.monotonic() < deadline, f"{address} never became {health}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("policy", "weights", "expected"),
    [
        ("round_robin", (1, 1), {"a": 6, "b": 6}),
        ("round_robin", (2, 1), {"a": 8, "b": 4}),
    ],
)
def test_load_balancing_spreads_connections(
    tmp_path: Path, policy: str, weights: tuple[int, int], expected: dict[str, int]
) -> None:
    with ExitStack() as stack:
        ports = [stack.enter_context(tcp_server(identify(name))) for name in ("a", "b")]
        endpoints = [
            {"address": f"127.0.0.1:{p}", "weight": w} for p, w in zip(ports, weights, strict=True)
        ]
        config = tcp_proxy_config([], cluster={"endpoints": endpoints, "lb_policy": policy})
        mecha = stack.enter_context(run_mecha(tmp_path, config))
        port = mecha.port("tcp")
        assert Counter(who_answers(port) for _ in range(12)) == expected


def test_least_request_prefers_the_idle_endpoint(tmp_path: Path) -> None:
    with ExitStack() as stack:
        ports = [stack.enter_context(tcp_server(identify(name))) for name in ("a", "b")]
        config = tcp_proxy_config(ports, cluster={"lb_policy": "least_request"})
        mecha = stack.enter_context(run_mecha(tmp_path, config))
        port = mecha.port("tcp")
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        busy = Counter(sock.recv(16).decode() for sock in held)
        # Power of two choices keeps the two endpoints within one connection of each other.
        assert abs(busy["a"] - busy["b"]) <= 2
        for sock in held:
            sock.close()


def test_health_check_ejects_and_restores_an_endpoint(tmp_path: Path) -> None:
    late_port = free_port()
    health = {
        "interval": "100ms",
        "timeout": "200ms",
        "healthy_threshold": 2,
        "unhealthy_threshold": 1,
    }
    with tcp_server(identify("up")) as up_port:
        config = tcp_proxy_config([up_port, late_port], cluster={"health_check": health})
        with run_mecha(tmp_path, config) as mecha:
            assert endpoint_health(mecha) == {
                f"127.0.0.1:{up_port}": "healthy",
                f"127.0.0.1:{late_port}": "unhealthy",
            }
            port = mecha.port("tcp")
            assert {who_answers(port) for _ in range(6)} == {"up"}
            with tcp_server(identify("late"), port=late_port):
                wait_health(mecha, f"127.0.0.1:{late_port}", "healthy")
                assert {who_answers(port) for _ in range(6)} == {"up", "late"}
            wait_health(mecha, f"127.0.0.1:{late_port}", "unhealthy")
            assert (
                mecha.metric(
                    "mecha_cluster_health_check_total", cluster="upstream", result="failure"
                )
                >= 2
            )
            assert (
                mecha.metric(
                    "mecha_endpoint_healthy", cluster="upstream", endpoint=f"127.0.0.1:{up_port}"
                )
                == 1
            )


def test_payload_health_check_with_expect(tmp_path: Path, redis_port: int) -> None:
    health = {"interval": "100ms", "send": "PING\r\n", "expect": "+PONG"}
    with tcp_server(echo) as echo_port:
        config = tcp_proxy_config([redis_port, echo_port], cluster={"health_check": health})
        with run_mecha(tmp_path, config) as mecha:
            assert endpoint_health(mecha) == {
                f"127.0.0.1:{redis_port}": "healthy",
                f"127.0.0.1:{echo_port}": "unhealthy",  # echoes PING, never says +PONG
            }


def test_no_healthy_upstream(tmp_path: Path) -> None:
    config = tcp_proxy_config([free_port()], cluster={"health_check": {"interval": "1s"}})
    with run_mecha(tmp_path, config) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("tcp"))) as sock:
            assert is_closed_by_peer(sock)
        line = mecha.wait_access_log(1)[-1]
        assert "flags=UH" in line and "upstream=-" in line


def test_circuit_breaker_max_connections(tmp_path: Path) -> None:
    with tcp_server(echo) as upstream:
        config = tcp_proxy_config([upstream], cluster={"circuit_breakers": {"max_connections": 2}})
        with run_mecha(tmp_path, config) as mecha:
            port = mecha.port("tcp")
            held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
            for sock in held:
                sock.sendall(b"ping")
                assert sock.recv(4) == b"ping"
            with socket.create_connection(("127.0.0.1", port)) as third:
                assert is_closed_by_peer(third)
            assert mecha.metric("mecha_cluster_upstream_cx_overflow_total", cluster="upstream") == 1
            assert "flags=UO" in mecha.wait_access_log(1)[-1]
            held[0].close()
            mecha.wait_metric("mecha_cluster_upstream_cx_active", 1, cluster="upstream")
            with socket.create_connection(("127.0.0.1", port)) as again:
                again.sendall(b"pong")
                assert again.recv(4) == b"pong"
            held[1].close()


def test_strict_dns_cluster_resolves_names(tmp_path: Path) -> None:
    with tcp_server(identify("dns")) as upstream:
        cluster = {"type": "strict_dns", "dns_lookup_family": "v4_only"}
        config = tcp_proxy_config(f"localhost:{upstream}", cluster=cluster)
        with run_mecha(tmp_path, config) as mecha:
            clusters = mecha.json("/clusters?format=json")["clusters"]
            endpoints = clusters[0]["endpoints"]
            assert [(e["address"], e["hostname"]) for e in endpoints] == [
                (f"127.0.0.1:{upstream}", "localhost")
            ]
            assert who_answers(mecha.port("tcp")) == "dns"


def test_listener_max_connections(tmp_path: Path) -> None:
    with tcp_server(echo) as upstream:
        config = tcp_proxy_config([upstream], listener={"max_connections": 1})
        with run_mecha(tmp_path, config) as mecha:
            port = mecha.port("tcp")
            with socket.create_connection(("127.0.0.1", port)) as first:
                first.sendall(b"hi")
                assert first.recv(2) == b"hi"
                with socket.create_connection(("127.0.0.1", port)) as second:
                    assert is_closed_by_peer(second)
                first.sendall(b"ok")
                assert first.recv(2) == b"ok"
            assert mecha.metric("mecha_listener_downstream_cx_overflow_total", listener="tcp") == 1


def test_idle_timeout_closes_quiet_connections(tmp_path: Path) -> None:
    with tcp_server(echo) as upstream:
        config = tcp_proxy_config([upstream], tcp_proxy={"idle_timeout": "400ms"})
        with run_mecha(tmp_path, config) as mecha:
            with socket.create_connection(("127.0.0.1", mecha.port("tcp"))) as sock:
                for _ in range(4):  # traffic keeps it alive past the timeout
                    time.sleep(0.2)
                    sock.sendall(b"x")
                    assert sock.recv(1) == b"x"
                started = time.monotonic()
                assert is_closed_by_peer(sock, timeout=3)
                assert 0.35 < time.monotonic() - started < 1.5
            line = mecha.wait_access_log(1)[-1]
            assert "flags=SI" in line and 'reason="idle timeout"' in line
