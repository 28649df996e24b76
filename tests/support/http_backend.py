"""A scriptable HTTP/1.1 backend (http.server with keep-alive): echoes, fails, delays on request.

Paths:
  /echo...            200, JSON of method, path, headers and body
  /status/<code>      that status, body "status <code>"
  /delay/<ms>         sleeps, then 200
  /bytes/<n>          200 with n bytes
  anything else       200 "hello from <name>"
Every response carries `x-backend: <name>`; `fail_next(n, status)` makes the next n
requests answer `status` whatever their path.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
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


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                return self._chunked_body()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def _chunked_body(self) -> bytes:
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("x-backend", backend.name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
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
                time.sleep(int(self.path.split("/")[2]) / 1000)
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
