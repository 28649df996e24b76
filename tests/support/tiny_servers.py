"""Servers for another process or namespace: `python -m tests.support.tiny_servers KIND HOST PORT`.

  http   answers every GET with `<name> <host>:<port> <path>` (the name is the 4th argument)
  echo   sends back whatever it receives, per connection
  rpc    msgpack-RPC: answers every request with `<host>:<port> <method>`

Prints `ready` on stdout once listening.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgpack


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

    return _threading_tcp(host, port, Handler)


def rpc_server(host: str, port: int) -> socketserver.BaseServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            unpacker = msgpack.Unpacker()
            while data := sock.recv(65536):
                unpacker.feed(data)
                for kind, msgid, method, _params in unpacker:
                    if kind == 0:  # a request; notifications get no answer
                        sock.sendall(msgpack.packb([1, msgid, None, f"{host}:{port} {method}"]))

    return _threading_tcp(host, port, Handler)


def _threading_tcp(
    host: str, port: int, handler: type[socketserver.BaseRequestHandler]
) -> socketserver.BaseServer:
    class Server(socketserver.ThreadingTCPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        allow_reuse_address = True
        daemon_threads = True

    return Server((host, port), handler)


SERVERS: dict[str, Callable[[str, int, list[str]], socketserver.BaseServer]] = {
    "http": lambda host, port, rest: http_server(host, port, rest[0] if rest else "peer"),
    "echo": lambda host, port, _: echo_server(host, port),
    "rpc": lambda host, port, _: rpc_server(host, port),
}


def main(argv: list[str]) -> int:
    kind, host, port = argv[0], argv[1], int(argv[2])
    server = SERVERS[kind](host, port, argv[3:])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
