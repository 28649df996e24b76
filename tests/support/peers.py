"""Small threaded TCP servers used as upstreams: each does one thing, visibly."""

from __future__ import annotations

import hashlib
import random
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[socket.socket], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def tcp_server(handle: Handler, port: int = 0) -> Iterator[int]:
    """Serve `handle(conn)` per connection on loopback (a free port by default)."""

    class _Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handle(self.request)

    server = _Server(("127.0.0.1", port), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="tcp-peer", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def hashing_sink(conn: socket.socket) -> None:
    """Read to EOF, then answer with the sha256 hex digest and the byte count, and close."""
    digest = hashlib.sha256()
    size = 0
    while chunk := conn.recv(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    conn.sendall(f"{digest.hexdigest()} {size}".encode())


def deterministic_bytes(size: int, seed: int = 7, chunk: int = 1 << 20) -> Iterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left > 0:
        piece = rng.randbytes(min(chunk, left))
        left -= len(piece)
        yield piece


def source(size: int, seed: int = 7) -> Handler:
    """Send `size` deterministic bytes as fast as the peer takes them, then close."""

    def handle(conn: socket.socket) -> None:
        for piece in deterministic_bytes(size, seed):
            try:
                conn.sendall(piece)
            except OSError:
                return

    return handle


def echo(conn: socket.socket) -> None:
    while chunk := conn.recv(1 << 16):
        conn.sendall(chunk)


def echo_once(port: int, payload: bytes) -> bytes:
    """One connection to an echo server: sends `payload`, returns what came back of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


def slow_sink(delay: float) -> Handler:
    """Read a little at a time, slowly: an upstream that cannot keep up."""

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        while conn.recv(4096):
            time.sleep(delay)

    return handle


def identify(name: str) -> Handler:
    """Say who we are, then echo: tells which endpoint a connection reached."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(name.encode())
        echo(conn)

    return handle
