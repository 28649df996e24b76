"""HTTP/1.1 upstreams close connections all the time; a client never pays for it.

Every test runs on the three HTTP/1 paths: forwarded as bytes, forwarded from the parsed
head (a route that adds a header), and through the stream filters (an extra HTTP filter).

- A peer that reads a request on a kept-alive connection and closes without answering (a
  close that crossed the request on the wire): an idempotent request goes again on a fresh
  connection, any other is answered 503 UC, never 502 as if the upstream had sent garbage.
- A response the upstream cuts short ends with the client's connection closed (HTTP/1 has
  no other way to say it), and the next connection is served.
- nginx under wrk -c50: graceful reloads (the old worker closes every connection once its
  requests are answered) and a 1s keepalive_timeout with idle gaps between bursts. wrk sees
  no socket error and no non-2xx answer, and mecha logs no error.
"""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from tests.support.mecha import HTTP1_PATHS, Mecha, http1_paths_config, run_mecha
from tests.support.net import recv_all
from tests.support.nginx import nginx_server
from tests.support.peers import tcp_server
from tests.support.wrk import Wrk

pytestmark = pytest.mark.integration

CONNECTIONS = 50


def assert_quiet(mecha: Mecha) -> None:
    logs = mecha.logs()
    assert " ERROR " not in logs and "Traceback" not in logs, logs[-4000:]


# -- a close that crosses a request ---------------------------------------------------------


class SecondRequestDropped:
    """Answers the first request on each connection, reads the second and closes unanswered."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        for answer in (True, False):
            request_line = reader.readline().decode().strip()
            if not request_line:
                return
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            reader.read(length)
            self.seen.append(request_line.split()[0])
            if answer:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_a_request_on_a_connection_closed_under_it_is_retried_only_when_safe(
    tmp_path: Path, path: str
) -> None:
    peer = SecondRequestDropped()
    with tcp_server(peer) as port, run_mecha(tmp_path, http1_paths_config(port)) as mecha:
        client = http.client.HTTPConnection("127.0.0.1", mecha.port(path), timeout=5)
        answers = []
        for method in ("GET", "GET", "POST"):
            client.request(method, "/", body=b"data" if method == "POST" else None)
            response = client.getresponse()
            answers.append((response.status, response.read()))
        client.close()
        log = mecha.wait_access_log(3)
    assert answers[:2] == [(200, b"ok"), (200, b"ok")]
    assert answers[2][0] == 503, answers
    # GET; GET (dropped on the reused connection, sent again on a new one); POST (dropped:
    # the upstream may have acted on it, so it is not sent twice).
    assert peer.seen == ["GET", "GET", "GET", "POST"]
    assert " 503 UC " in log[2], log
    assert_quiet(mecha)


# -- a response cut short -------------------------------------------------------------------

CUT_SHORT = {
    "content-length": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
    "chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n64\r\n0123456789",
}


def cut_short(conn: socket.socket) -> None:
    """/full gets a whole answer; /<framing> a tenth of its body, then a close."""
    request = conn.recv(4096)
    if request.startswith(b"GET /full "):
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        return
    conn.sendall(CUT_SHORT[request.split()[1].decode().strip("/")])


@pytest.mark.parametrize("framing", CUT_SHORT)
@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_a_response_cut_short_closes_the_client_connection(
    tmp_path: Path, path: str, framing: str
) -> None:
    with tcp_server(cut_short) as port, run_mecha(tmp_path, http1_paths_config(port)) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port(path)), timeout=5) as sock:
            sock.sendall(f"GET /{framing} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
            received = recv_all(sock)  # (a timeout if mecha left the client waiting)
        client = http.client.HTTPConnection("127.0.0.1", mecha.port(path), timeout=5)
        client.request("GET", "/full")
        assert client.getresponse().read() == b"ok"
        client.close()
        log = mecha.wait_access_log(2)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"0123456789" in received
    assert " 200 UC " in log[0], log
    assert_quiet(mecha)


# -- nginx under load ---------------------------------------------------------------------------


def url(mecha: Mecha, path: str) -> str:
    return f"http://127.0.0.1:{mecha.port(path)}/"


def upstream_connections(mecha: Mecha) -> float:
    return mecha.metric("mecha_cluster_upstream_cx_total", cluster="upstream")


@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_graceful_nginx_reloads_under_load(tmp_path: Path, path: str) -> None:
    with (
        nginx_server(tmp_path) as nginx,
        run_mecha(tmp_path, http1_paths_config(nginx.port, access_log=False)) as mecha,
    ):
        load = Wrk(url(mecha, path), CONNECTIONS, seconds=3)
        time.sleep(0.3)
        for _ in range(5):
            nginx.reload()  # the old worker closes every connection it answered on
            time.sleep(0.35)
        report = load.report()
        opened = upstream_connections(mecha)
    report.assert_clean()
    assert opened > CONNECTIONS, f"nginx closed no upstream connection: {opened} opened"
    assert_quiet(mecha)


@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_nginx_keepalive_timeout_between_bursts(tmp_path: Path, path: str) -> None:
    """Idle gaps around nginx's 1s keepalive_timeout: each burst starts while nginx is
    closing the connections the last one left idle, or just after."""
    with (
        nginx_server(tmp_path, keepalive_timeout="1s") as nginx,
        run_mecha(tmp_path, http1_paths_config(nginx.port, access_log=False)) as mecha,
    ):
        reports = []
        for gap in (0.98, 1.02):
            reports.append(Wrk(url(mecha, path), CONNECTIONS, seconds=1).report())
            time.sleep(gap)
        reports.append(Wrk(url(mecha, path), CONNECTIONS, seconds=1).report())
        opened = upstream_connections(mecha)
    for report in reports:
        report.assert_clean()
    assert opened > CONNECTIONS, f"nginx closed no idle upstream connection: {opened} opened"
    assert_quiet(mecha)
