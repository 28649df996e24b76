"""Abusive peers and the bystander who must not notice them, for tests of mecha's limits.

A `Bystander` sends one small HTTP/1.1 request after another on a kept-alive connection and
records each round trip; `Trickler` holds many connections that send a request head one
byte at a time (slowloris) and notes when mecha answers or closes each.
"""

from __future__ import annotations

import http.client
import selectors
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Bystander:
    """A well-behaved client in a thread: GET `path` in a loop until stopped."""

    port: int
    path: str = "/echo"
    pause: float = 0.01
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Bystander:
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            self.latencies.append(time.monotonic() - started)
            time.sleep(self.pause)
        conn.close()

    def summary(self) -> tuple[float, float]:
        """(median, 99th percentile) round trip, in seconds."""
        ordered = sorted(self.latencies)
        assert len(ordered) >= 10, f"the bystander made {len(ordered)} requests"
        return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


@dataclass
class Trickled:
    sock: socket.socket
    first_byte_at: float = 0.0
    answer: bytes = b""
    closed_at: float | None = None


class Trickler:
    """`count` connections to `port`, each sending `head` one byte every `every` seconds
    until mecha answers or closes it."""

    def __init__(self, port: int, count: int, head: bytes, every: float) -> None:
        self.port = port
        self.head = head
        self.every = every
        self.peers = [Trickled(socket.create_connection(("127.0.0.1", port))) for _ in range(count)]

    def run(self, seconds: float) -> None:
        """Trickle for `seconds` (or until every connection was closed by mecha)."""
        selector = selectors.DefaultSelector()
        for peer in self.peers:
            peer.sock.setblocking(False)
            selector.register(peer.sock, selectors.EVENT_READ, peer)
        deadline = time.monotonic() + seconds
        sent = 0
        next_byte = time.monotonic()
        while time.monotonic() < deadline and not self.all_closed:
            now = time.monotonic()
            if now >= next_byte and sent < len(self.head):
                self._send_byte(sent, now)
                sent += 1
                next_byte = now + self.every
            for key, _ in selector.select(timeout=min(0.05, max(0.0, next_byte - now))):
                self._read(key.data, selector)
        selector.close()

    def _send_byte(self, index: int, now: float) -> None:
        for peer in self.peers:
            if peer.closed_at is None:
                try:
                    peer.sock.send(self.head[index : index + 1])
                except OSError:
                    continue
                if index == 0:
                    peer.first_byte_at = now

    def _read(self, peer: Trickled, selector: selectors.BaseSelector) -> None:
        try:
            data = peer.sock.recv(4096)
        except OSError:
            data = b""
        peer.answer += data
        if not data:
            peer.closed_at = time.monotonic()
            selector.unregister(peer.sock)

    @property
    def all_closed(self) -> bool:
        return all(peer.closed_at is not None for peer in self.peers)

    def close(self) -> None:
        for peer in self.peers:
            peer.sock.close()
