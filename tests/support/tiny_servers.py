"""Servers for another process or namespace: `python -m tests.support.tiny_servers KIND HOST PORT`.

  http   answers every GET with `<name> <host>:<port> <path>` (the name is the 4th argument)
  echo   sends back whatever it receives, per connection

Prints `ready` on stdout once listening.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def http_server(host: str, port: int, name: str) -> socketserver.BaseServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = f"{name} {host}:{port} {self.path}\n".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ThreadingHTTPServer((host, port), Handler)


def echo_server(host: str, port: int) -> socketserver.BaseServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            while data := sock.recv(65536):
                sock.sendall(data)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    return Server((host, port), Handler)


def main(argv: list[str]) -> int:
    kind, host, port = argv[0], argv[1], int(argv[2])
    server = http_server(host, port, argv[3] if len(argv) > 3 else "peer") if kind == "http" \
        else echo_server(host, port)  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
