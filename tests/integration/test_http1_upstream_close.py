"""HTTP/1.1 upstreams close connections all the time; a client never pays for it.

Every test runs on the three HTTP/1 paths: forwarded as bytes, forwarded from the parsed
head (a route that adds a header), and through the stream filters (an extra HTTP filter).

- A peer that reads a request on a kept-alive connection and closes without answering (a
  close that crossed the request on the wire): an idempotent request goes again on a fresh
  connection, any other is answered 503 UC, never 502 as if the upstream had sent garbage.
- A response the upstream cuts short ends with the client's connection closed (HTTP/1 has
  no other way to say it), and the next connection is served.
"""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest

from tests.support.mecha import HTTP1_PATHS, Mecha, http1_paths_config, run_mecha
from tests.support.net import recv_all
from tests.support.peers import tcp_server

pytestmark = pytest.mark.integration


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
