"""An application process behind a runtime: `python -m tests.support.dapr_app PORT SUBS_JSON`.

It answers `GET /dapr/subscribe` with SUBS_JSON and records every other request it gets; a
test reads the records back with `GET /_received` (JSON list of method, path, headers,
body). Answers by path:
  /retry...     200 {"status": "RETRY"}
  /drop...      200 {"status": "DROP"}
  /fail...      500
  /slow...      sleeps 2s, then 200
  anything else 200 {"status": "SUCCESS"}, with `x-app: yes`; an `echo` in the path
                answers the request itself (method, path, headers, body) as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.net import free_port, wait_for_port


def _handler(subscriptions: bytes, received: list[dict[str, Any]], lock: threading.Lock) -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/dapr/subscribe":
                self._answer(200, subscriptions)
                return
            if self.path.startswith("/_received"):
                with lock:
                    self._answer(200, json.dumps(received).encode())
                return
            record = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            with lock:
                received.append(record)
            if self.path.startswith("/retry"):
                self._answer(200, b'{"status": "RETRY"}')
            elif self.path.startswith("/drop"):
                self._answer(200, b'{"status": "DROP"}')
            elif self.path.startswith("/fail"):
                self._answer(500, b'{"error": "failing on purpose"}')
            elif "echo" in self.path:
                self._answer(200, json.dumps(record).encode(), {"x-app": "yes"})
            else:
                if self.path.startswith("/slow"):
                    time.sleep(2)
                self._answer(200, b'{"status": "SUCCESS"}', {"x-app": "yes"})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

    return Handler


def serve(port: int, subscriptions: bytes) -> None:
    received: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(
        ("127.0.0.1", port), _handler(subscriptions, received, threading.Lock())
    )
    server.daemon_threads = True
    server.serve_forever()


class App:
    def __init__(self, port: int) -> None:
        self.port = port

    def received(self, prefix: str = "") -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_received", timeout=5) as r:
            records: list[dict[str, Any]] = json.loads(r.read())
        return [r for r in records if r["path"].startswith(prefix)]

    def wait_received(
        self, prefix: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.received(prefix)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} requests to {prefix}, expected {count}")
            time.sleep(0.05)
        return found


@contextmanager
def dapr_app(subscriptions: list[dict[str, Any]]) -> Iterator[App]:
    """The app as a process of its own (as a real application is) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.dapr_app", str(port), json.dumps(subscriptions)]
    process = subprocess.Popen(argv)
    try:
        wait_for_port(port)
        yield App(port)
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2].encode())
