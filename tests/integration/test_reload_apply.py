"""Reloads applied to a Server in this process (real sockets and backends), where the test
can watch what the swap leaves behind: in-flight requests, retired clusters, stats."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.parse import load_config
from proxy.reload import ReloadOutcome
from proxy.server import Server
from tests.support.http_backend import Backend, http_backend
from tests.support.peers import tcp_server

pytestmark = pytest.mark.integration


def routed(clusters: dict[str, int], route_to: str) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": route_to}}
    manager = {"route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                   "routes": [route]}]}}  # fmt: skip
    return {
        "admin": False,
        "listeners": [{"name": "web", "address": "127.0.0.1:0",
                       "filters": [{"name": "http", "config": manager}]}],
        "clusters": [{"name": name, "endpoints": [f"127.0.0.1:{port}"]}
                     for name, port in clusters.items()],
    }  # fmt: skip


@asynccontextmanager
async def serving(tmp_path: Path, document: dict[str, Any]) -> AsyncIterator[Server]:
    path = tmp_path / "mecha.yaml"
    path.write_text(yaml.safe_dump(document))
    server = Server(load_config(path), source=str(path))
    await server.start()
    try:
        yield server
    finally:
        await asyncio.gather(server.drain(0.5), server.reloader.stop(0.5))
        await server.stop()


async def reload(server: Server, document: dict[str, Any]) -> ReloadOutcome:
    assert server.reloader.path is not None
    server.reloader.path.write_text(yaml.safe_dump(document))
    return await server.reloader.reload("test")


def port_of(server: Server, listener: str = "web") -> int:
    bound = next(li.bound for li in server.listeners if li.name == listener)
    assert bound is not None
    return bound.port


async def get(port: int, path: str = "/") -> tuple[int, str, bytes]:
    """Status, the x-backend header and the body of one request on a new connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("x-backend", ""), body


async def test_in_flight_requests_finish_on_the_replaced_cluster(tmp_path: Path) -> None:
    with http_backend("old") as old, http_backend("new") as new:
        async with serving(tmp_path, routed({"app": old.port}, "app")) as server:
            port = port_of(server)
            retired = server.cluster_manager["app"]
            slow = asyncio.ensure_future(get(port, "/delay/700"))
            await arrived(old)
            outcome = await reload(server, routed({"app": new.port}, "app"))
            assert outcome.summary == "clusters: ~app; rebuilt for changed clusters: web"
            assert await get(port) == (200, "new", b"hello from new")
            assert retired.rq_active == 1
            assert await slow == (200, "old", b"late")
            assert server.cluster_manager["app"] is not retired


async def test_a_removed_cluster_stops_health_checking(tmp_path: Path) -> None:
    checks = 0

    def count(conn: socket.socket) -> None:
        nonlocal checks
        checks += 1

    with http_backend("app") as app, tcp_server(count) as checked:
        document = routed({"app": app.port, "checked": checked}, "app")
        document["clusters"][1]["health_check"] = {"interval": "50ms", "timeout": "50ms"}
        async with serving(tmp_path, document) as server:
            await asyncio.sleep(0.3)
            assert checks >= 2
            outcome = await reload(server, routed({"app": app.port}, "app"))
            assert outcome.summary == "clusters: -checked"
            await asyncio.sleep(0.1)  # a check already connecting may still land
            before = checks
            await asyncio.sleep(0.3)
            assert checks == before
            assert [c.name for c in server.cluster_manager] == ["app"]


async def test_rebuilt_filters_do_not_repeat_their_metrics(tmp_path: Path) -> None:
    with http_backend("blue") as blue, http_backend("green") as green:
        clusters = {"blue": blue.port, "green": green.port}
        async with serving(tmp_path, routed(clusters, "blue")) as server:
            port = port_of(server)
            assert (await get(port))[1] == "blue"
            await reload(server, routed(clusters, "green"))
            assert (await get(port))[1] == "green"
            exposition = server.metrics.exposition().decode()
            sample = 'mecha_http_downstream_rq_total{listener="web"}'
            samples = [line for line in exposition.splitlines() if line.startswith(sample)]
            assert samples == [f"{sample} 1.0"]


async def test_a_component_that_fails_to_start_rejects_the_reload(tmp_path: Path) -> None:
    with http_backend("blue") as blue, http_backend("green") as green:
        clusters = {"blue": blue.port, "green": green.port}
        document = routed(clusters, "blue")
        document["runtime"] = {"components": [{"name": "statestore", "type": "state.in-memory"}]}
        async with serving(tmp_path, document) as server:
            version = server.version
            broken = routed(clusters, "green")
            closed_port = _closed_port()
            broken["runtime"] = {"components": [
                {"name": "statestore", "type": "state.in-memory"},
                {"name": "cache", "type": "state.redis", "init_timeout": "1s",
                 "metadata": {"redisHost": f"127.0.0.1:{closed_port}"}},
            ]}  # fmt: skip
            outcome = await reload(server, broken)
            assert outcome.result == "rejected"
            assert "component 'cache'" in outcome.problems[0]
            assert server.version == version
            assert (await get(port_of(server)))[1] == "blue"
            assert server.runtime is not None and "cache" not in server.runtime.components


async def arrived(backend: Backend) -> None:
    """Until the backend has a request (it runs in a thread: polled)."""
    for _ in range(500):
        if backend.count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no request reached {backend.name}")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
