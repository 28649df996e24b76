"""The overload manager in a real mecha: descriptors made scarce from outside (prlimit) and
memory watermarks below what mecha uses. Each stage starts and stops, is logged and shows
in the metrics; what clients see: idle connections closed, new ones left in the backlog,
new requests refused (503 on HTTP/1.1, REFUSED_STREAM on HTTP/2)."""

from __future__ import annotations

import http.client
import os
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.h2_client import Client as H2Client
from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import Mecha, http_config, run_mecha
from tests.support.net import is_closed_by_peer

pytestmark = pytest.mark.integration

REFUSED_STREAM = 7
CHECK = 0.1


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with http_backend() as running:
        yield running


def start(tmp_path: Path, backend: Backend, overload: dict[str, Any]) -> Any:
    config = http_config({"upstream": [backend.port]}, manager={"access_log": False})
    config["overload"] = {"check_interval": f"{int(CHECK * 1000)}ms", **overload}
    return run_mecha(tmp_path, config)


@contextmanager
def descriptor_pressure(mecha: Mecha, pressure: float) -> Iterator[None]:
    """mecha's soft RLIMIT_NOFILE set so that what it has open is `pressure` of it."""
    pid = mecha.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    opened = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (int(opened / pressure), hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def active(mecha: Mecha, action: str) -> bool:
    return mecha.metric("mecha_overload_action_active", action=action) == 1.0


def wait_until(check: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def connection(stack: ExitStack, port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    stack.callback(conn.close)
    return conn


def get(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/echo")
    response = conn.getresponse()
    response.read()
    return response.status


def test_idle_connections_go_and_new_ones_wait_while_descriptors_are_short(
    tmp_path: Path, backend: Backend
) -> None:
    marks = {"close_idle_connections": 0.5, "stop_accepting": 0.5, "refuse_requests": False}
    with start(tmp_path, backend, {"watermarks": marks}) as mecha, ExitStack() as stack:
        port = mecha.port("http")
        idle = [connection(stack, port) for _ in range(5)]
        assert all(get(conn) == 200 for conn in idle)
        with descriptor_pressure(mecha, 0.7):
            wait_until(lambda: active(mecha, "stop_accepting"))
            assert all(conn.sock is not None and is_closed_by_peer(conn.sock) for conn in idle)
            waiting = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            waiting.sendall(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
            waiting.settimeout(0.5)
            with pytest.raises(TimeoutError):
                waiting.recv(64)  # in the backlog, not accepted
            assert mecha.metric("mecha_overload_pressure", resource="descriptors") >= 0.5
        wait_until(lambda: not active(mecha, "stop_accepting"))
        waiting.settimeout(5)
        assert waiting.recv(64).startswith(b"HTTP/1.1 200 ")
        closed = mecha.metric("mecha_listener_downstream_cx_overload_idle_closed_total",
                              listener="http")  # fmt: skip
        assert closed >= 5
    logs = mecha.logs()
    for action in ("close_idle_connections", "stop_accepting"):
        assert f"{action} starts" in logs and f"{action} stops" in logs


def test_new_requests_are_refused_while_descriptors_are_short(
    tmp_path: Path, backend: Backend
) -> None:
    marks = {"close_idle_connections": False, "stop_accepting": False, "refuse_requests": 0.5}
    with start(tmp_path, backend, {"watermarks": marks}) as mecha, ExitStack() as stack:
        port = mecha.port("http")
        h1 = connection(stack, port)
        h2 = H2Client(port)
        stack.callback(h2.close)
        with descriptor_pressure(mecha, 0.7):
            wait_until(lambda: active(mecha, "refuse_requests"))
            assert get(h1) == 503
            stream = h2.request("GET", [], path="/echo", end_stream=True)
            h2.until_done(stream)
            assert h2.reset_code(stream) == REFUSED_STREAM
        wait_until(lambda: not active(mecha, "refuse_requests"))
        stream = h2.request("GET", [], path="/echo", end_stream=True)
        h2.until_done(stream)
        assert h2.status(stream) == 200  # the same HTTP/2 connection serves again
        assert get(h1) == 200  # (http.client reconnects: the 503 closed the first one)
        refused = "mecha_http_downstream_rq_overload_refused_total"
        assert mecha.metric(refused, listener="http") == 2
    logs = mecha.logs()
    assert "refuse_requests starts" in logs and "refuse_requests stops" in logs


def test_memory_above_max_rss_stops_accepting(tmp_path: Path, backend: Backend) -> None:
    marks = {"close_idle_connections": False, "stop_accepting": 0.9, "refuse_requests": False}
    with start(tmp_path, backend, {"max_rss": "8MiB", "watermarks": marks}) as mecha:
        wait_until(lambda: active(mecha, "stop_accepting"))
        assert mecha.metric("mecha_overload_pressure", resource="memory") > 1.0
        with socket.create_connection(("127.0.0.1", mecha.port("http"))) as waiting:
            waiting.sendall(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
            waiting.settimeout(0.5)
            with pytest.raises(TimeoutError):
                waiting.recv(64)
        assert "overload: memory at" in mecha.logs()
