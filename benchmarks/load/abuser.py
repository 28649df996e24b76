"""An abusive HTTP/1.1 peer, for as long as asked, then one JSON line of what it saw.

    python -m benchmarks.load.abuser slowloris --port 8080 --connections 500 --seconds 10
    python -m benchmarks.load.abuser idle --port 8080 --connections 200 --seconds 10

slowloris  `--connections` connections, each sending a request head one byte every
           `--every` seconds (2 by default) and never finishing it; one closed by the server
           is opened again at once.
idle       `--connections` kept-alive connections that each make one request and then sit
           idle; one closed by the server is opened again at once (and makes its request).

Prints {"mode", "connections", "seconds", "opened", "closed_by_server", "answers"}: how many
connections it opened, how many the server closed, and the status codes it got, by code.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import time
from collections import Counter

HEAD = b"GET / HTTP/1.1\r\nhost: abuser\r\nuser-agent: slowloris\r\nx-padding: " + b"x" * 64


class Abuser:
    def __init__(self, port: int, mode: str, every: float) -> None:
        self.port = port
        self.mode = mode
        self.every = every
        self.selector = selectors.DefaultSelector()
        self.sent: dict[socket.socket, int] = {}
        self.opened = 0
        self.closed = 0
        self.answers: Counter[str] = Counter()

    def open(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return
        sock.setblocking(False)
        self.opened += 1
        self.sent[sock] = 0
        self.selector.register(sock, selectors.EVENT_READ)
        if self.mode == "idle":
            sock.send(b"GET / HTTP/1.1\r\nhost: abuser\r\n\r\n")

    def trickle(self) -> None:
        for sock, sent in list(self.sent.items()):
            if sent < len(HEAD):
                try:
                    sock.send(HEAD[sent : sent + 1])
                except OSError:
                    continue
                self.sent[sock] = sent + 1

    def read(self, sock: socket.socket) -> bool:
        """False when the server closed it."""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if data.startswith(b"HTTP/1.1 "):
            self.answers[data[9:12].decode()] += 1
        if data:
            return True
        self.selector.unregister(sock)
        sock.close()
        del self.sent[sock]
        self.closed += 1
        return False

    def run(self, connections: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        next_byte = time.monotonic()
        while time.monotonic() < deadline:
            while len(self.sent) < connections:
                self.open()
            now = time.monotonic()
            if self.mode == "slowloris" and now >= next_byte:
                self.trickle()
                next_byte = now + self.every
            for key, _ in self.selector.select(timeout=0.05):
                self.read(key.fileobj)  # type: ignore[arg-type]
        for sock in self.sent:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["slowloris", "idle"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()
    abuser = Abuser(args.port, args.mode, args.every)
    abuser.run(args.connections, args.seconds)
    report = {"mode": args.mode, "connections": args.connections, "seconds": args.seconds,
              "opened": abuser.opened, "closed_by_server": abuser.closed,
              "answers": dict(abuser.answers)}  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
