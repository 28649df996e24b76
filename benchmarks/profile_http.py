"""In-process CPU cost of mecha's HTTP/1.1 proxy path, for profiling one change at a time.

One uvloop loop runs everything: mecha's `Server` (one HTTP listener, one route to one
cluster, access log off), a backend that answers every request with an nginx-like
response, and CLIENTS keep-alive client connections that send GET / back to back.
Nothing crosses a process boundary, so the figure is stable enough to compare
before/after on a noisy machine, and a profiler sees only Python:

    python -m benchmarks.profile_http 30000              # µs per request
    python -m benchmarks.profile_http 30000 tottime      # + cProfile table by that key
    python -m benchmarks.profile_http 30000 --h2         # h2c clients, STREAMS streams each
    py-spy record --native -- python -m benchmarks.profile_http 100000

CPU µs/request (process time: user + kernel) is the figure to compare; wall time also
counts waiting for a CPU on a busy machine. It also prints the Python function calls per
request (from a separate, profiled run). Deterministic instruction counts, which a busy
machine does not skew: `valgrind --tool=callgrind` over two runs with different request
counts; the difference over the difference in requests is the cost of one request. All of
these include the clients' and the backend's (small) share of the work; `python -m benchmarks
http` measures the real thing against nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import cast

import uvloop

from proxy.config.parse import parse_config
from proxy.server import Server

CLIENTS = 10
STREAMS = 10
WARMUP = 2000
CALL_COUNT_REQUESTS = 2000
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n"
BODY = b"hello world\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n" + BODY
)


class Backend(asyncio.Protocol):
    """Answers each complete request head with RESPONSE (requests carry no body)."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(RESPONSE * data.count(b"\r\n\r\n"))


class Client(asyncio.Protocol):
    """Sends REQUEST, waits for the response body, repeats until the shared budget is spent."""

    transport: asyncio.Transport

    def __init__(self, budget: list[int], done: asyncio.Future[None]) -> None:
        self.budget = budget
        self.done = done
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while BODY in self.buffer:
            self.buffer = self.buffer.split(BODY, 1)[1]
            self.budget[0] -= 1
            if self.budget[0] <= 0:
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.transport.write(REQUEST)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# GET http://127.0.0.1:18080/ in HPACK: static-table entries, :authority as a literal without
# indexing, so every request encodes the same (no encoder state in the client).
H2_BLOCK = b"\x82\x86\x84\x01\x0f127.0.0.1:18080"
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4


def h2_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes((kind, flags))
        + stream_id.to_bytes(4, "big")
        + payload
    )


class H2Client(asyncio.Protocol):
    """Keeps STREAMS GET / streams open on one h2c connection until the budget is spent.

    Frames are built and read by hand (no h2 in the client), so that a profile of this
    process is mostly mecha's HTTP/2 path.
    """

    transport: asyncio.Transport

    def __init__(self, budget: list[int], done: asyncio.Future[None]) -> None:
        self.budget = budget
        self.done = done
        self.buffer = b""
        self.next_id = 1
        self.unacked = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        out = [H2_PREFACE, h2_frame(SETTINGS, 0, 0)]
        out += [self._request() for _ in range(STREAMS)]
        self.transport.write(b"".join(out))

    def _request(self) -> bytes:
        stream_id, self.next_id = self.next_id, self.next_id + 2
        return h2_frame(HEADERS, END_STREAM | END_HEADERS, stream_id, H2_BLOCK)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        out: list[bytes] = []
        pos = 0
        while len(buffer) - pos >= 9:
            size = int.from_bytes(buffer[pos : pos + 3], "big")
            if len(buffer) - pos < 9 + size:
                break
            kind, flags = buffer[pos + 3], buffer[pos + 4]
            pos += 9 + size
            if kind == SETTINGS and not flags & ACK:
                out.append(h2_frame(SETTINGS, ACK, 0))
            elif kind == DATA:
                self.unacked += size
            if kind in (DATA, HEADERS) and flags & END_STREAM:
                self.budget[0] -= 1
                if self.budget[0] <= 0:
                    if not self.done.done():
                        self.done.set_result(None)
                    return
                out.append(self._request())
        self.buffer = buffer[pos:]
        if self.unacked > 1 << 15:  # give the connection window back
            out.append(h2_frame(0x8, 0, 0, self.unacked.to_bytes(4, "big")))
            self.unacked = 0
        if out:
            self.transport.write(b"".join(out))


def mecha_config(backend_port: int) -> dict[str, object]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": "up"}}
    http = {"access_log": "off", "route_config": {"virtual_hosts": [{"routes": [route]}]}}
    listener = {
        "name": "http",
        "address": "127.0.0.1:0",
        "filters": [{"name": "http", "config": http}],
    }
    return {
        "admin": False,
        "listeners": [listener],
        "clusters": [{"name": "up", "endpoints": [f"127.0.0.1:{backend_port}"]}],
    }


async def run_clients(
    port: int, requests: int, profile: cProfile.Profile | None, h2: bool
) -> tuple[float, float]:
    """(wall, CPU) seconds for CLIENTS connections to complete `requests` exchanges."""
    loop = asyncio.get_running_loop()
    budget = [requests]
    done: asyncio.Future[None] = loop.create_future()
    transports = []
    client = H2Client if h2 else Client
    for _ in range(CLIENTS):
        transport, _ = await loop.create_connection(lambda: client(budget, done), "127.0.0.1", port)
        transports.append(transport)
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    await done
    if profile is not None:
        profile.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for transport in transports:
        transport.close()
    return elapsed, cpu


async def main(requests: int, sort: str | None, h2: bool) -> None:
    loop = asyncio.get_running_loop()
    backend = await loop.create_server(Backend, "127.0.0.1", 0)
    server = Server(parse_config(mecha_config(backend.sockets[0].getsockname()[1])))
    await server.start()
    try:
        bound = server.listeners[0].bound
        assert bound is not None
        port = bound.port
        await run_clients(port, WARMUP, None, h2)
        elapsed, cpu = await run_clients(port, requests, None, h2)
        profile = cProfile.Profile()  # a second run, counted: calls distort its timing
        await run_clients(port, CALL_COUNT_REQUESTS, profile, h2)
    finally:
        await server.stop()
        backend.close()
    stats = pstats.Stats(profile)
    calls = python_calls(stats) / CALL_COUNT_REQUESTS
    print(
        f"{requests} requests in {elapsed:.2f}s = {requests / elapsed:,.0f} req/s: "
        f"{cpu / requests * 1e6:.1f} µs CPU, {elapsed / requests * 1e6:.1f} µs wall per request; "
        f"{calls:.0f} Python function calls per request (clients and backend included)"
    )
    if sort:
        stats.sort_stats(sort).print_stats(60)


def python_calls(stats: pstats.Stats) -> int:
    """Calls of functions written in Python (builtins and C methods left out)."""
    table = stats.stats  # type: ignore[attr-defined]
    return sum(entry[1] for (path, _, _), entry in table.items() if path != "~")


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_http",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("requests", type=int, nargs="?", default=30000)
    parser.add_argument("sort", nargs="?", help="print a cProfile table sorted by this key")
    parser.add_argument("--h2", action="store_true", help="h2c clients instead of HTTP/1.1")
    args = parser.parse_args()
    uvloop.run(main(args.requests, args.sort, args.h2))


if __name__ == "__main__":
    cli()
