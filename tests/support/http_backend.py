"""A scriptable HTTP/1.1 backend (http.server with keep-alive): echoes, fails, delays on request.

Paths:
  /echo...            200, JSON of method, path, headers and body
  /status/<code>      that status, body "status <code>"
  /delay/<ms>         waits, then 200; a client that hangs up first gets no answer
  /bytes/<n>          200 with n bytes
  anything else       200 "hello from <name>"
Every response carries `x-backend: <name>`; `fail_next(n, status)` makes the next n
requests answer `status` whatever their path. `started` lists the paths whose head arrived,
`hangups` those whose client hung up before their answer (inside the body, or during a
delay), so a test can tell that a proxy cancelled a request upstream.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.started: list[str] = []
        self.hangups: list[str] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self.port = 0

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    @property
    def count(self) -> int:
        return len(self.requests)

    def wait_started(self, path: str, timeout: float = 5.0) -> None:
        _wait_for(lambda: path in self.started, timeout, f"{path} never reached {self.name}")

    def wait_hangup(self, path: str, timeout: float = 5.0) -> None:
        _wait_for(lambda: path in self.hangups, timeout,
                  f"{self.name} saw no hang-up during {path}")  # fmt: skip


def _wait_for(check: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure} in {timeout}s")
        time.sleep(0.02)


class _HungUp(Exception):
    """The client went away before its answer."""


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            chunked = "chunked" in (self.headers.get("transfer-encoding") or "").lower()
            length = 0 if chunked else int(self.headers.get("content-length") or 0)
            try:
                body = self._chunked_body() if chunked else self.rfile.read(length)
            except (OSError, ValueError) as exc:  # reset, or a chunk-size line cut short
                raise _HungUp from exc
            if len(body) < length:
                raise _HungUp
            return body

        def _chunked_body(self) -> bytes:
            body = b""
            while size := int(self._line().split(b";")[0], 16):
                body += self.rfile.read(size)
                self._line()
            while self._line() not in (b"\r\n", b"\n"):
                pass  # trailers
            return body

        def _line(self) -> bytes:
            line = self.rfile.readline()
            if not line:
                raise _HungUp
            return line

        def _delay(self, seconds: float) -> None:
            """Wait, watching the connection: the client sends nothing while it waits for
            this answer, so a readable socket with nothing to read means it hung up."""
            sock = self.connection
            if isinstance(sock, ssl.SSLSocket):
                time.sleep(seconds)  # (TLS records cannot be peeked at)
                return
            deadline = time.monotonic() + seconds
            if not select.select([sock], [], [], seconds)[0]:
                return
            try:
                if not sock.recv(1, socket.MSG_PEEK):
                    raise _HungUp
            except OSError as exc:
                raise _HungUp from exc
            time.sleep(max(0.0, deadline - time.monotonic()))  # a pipelined request waits

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("x-backend", backend.name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            backend.started.append(self.path)
            try:
                self._answer()
            except _HungUp:
                backend.hangups.append(self.path)
                self.close_connection = True

        def _answer(self) -> None:
            body = self._body()
            record = {"method": self.command, "path": self.path, "body": body.decode("latin-1"),
                      "headers": {k.lower(): v for k, v in self.headers.items()}}  # fmt: skip
            backend.requests.append(record)
            failure = backend.take_failure()
            if failure is not None:
                self._reply(failure, f"failure {failure}".encode())
            elif self.path.startswith("/echo"):
                self._reply(200, json.dumps(record).encode(), "application/json")
            elif self.path.startswith("/status/"):
                status = int(self.path.split("/")[2])
                self._reply(status, f"status {status}".encode())
            elif self.path.startswith("/delay/"):
                self._delay(int(self.path.split("/")[2].split("?")[0]) / 1000)
                self._reply(200, b"late")
            elif self.path.startswith("/bytes/"):
                self._reply(200, b"x" * int(self.path.split("/")[2]))
            else:
                self._reply(200, f"hello from {backend.name}".encode())

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _serve  # noqa: N815

    return Handler


@contextmanager
def http_backend(
    name: str = "backend", port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[Backend]:
    """Serve on loopback; with `tls`, over TLS (the handshake runs on accept)."""
    backend = Backend(name)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(backend))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    backend.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name=f"http-{name}", daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
