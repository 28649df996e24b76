"""In-process CPU cost of mecha's HTTP/1.1 proxy path, for profiling one change at a time.

One uvloop loop runs everything: mecha's `Server` (one HTTP listener, one route to one
cluster, access log off), a backend that answers every request with an nginx-like
response, and CLIENTS keep-alive client connections that send GET / back to back.
Nothing crosses a process boundary, so the figure is stable enough to compare
before/after on a noisy machine, and a profiler sees only Python:

    python -m benchmarks.profile_http 30000              # µs per request
    python -m benchmarks.profile_http 30000 tottime      # + cProfile table by that key
    py-spy record --native -- python -m benchmarks.profile_http 100000

CPU µs/request (process time: user + kernel) is the figure to compare; wall time also
counts waiting for a CPU on a busy machine. Both include the client's and the backend's
(small) share of the work;
`python -m benchmarks http` measures the real thing against nginx.
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
WARMUP = 2000
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
    port: int, requests: int, profile: cProfile.Profile | None
) -> tuple[float, float]:
    """(wall, CPU) seconds for CLIENTS connections to complete `requests` exchanges."""
    loop = asyncio.get_running_loop()
    budget = [requests]
    done: asyncio.Future[None] = loop.create_future()
    transports = []
    for _ in range(CLIENTS):
        transport, _ = await loop.create_connection(lambda: Client(budget, done), "127.0.0.1", port)
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


async def main(requests: int, sort: str | None) -> None:
    loop = asyncio.get_running_loop()
    backend = await loop.create_server(Backend, "127.0.0.1", 0)
    server = Server(parse_config(mecha_config(backend.sockets[0].getsockname()[1])))
    await server.start()
    try:
        bound = server.listeners[0].bound
        assert bound is not None
        port = bound.port
        await run_clients(port, WARMUP, None)
        profile = cProfile.Profile() if sort else None
        elapsed, cpu = await run_clients(port, requests, profile)
    finally:
        await server.stop()
        backend.close()
    print(
        f"{requests} requests in {elapsed:.2f}s = {requests / elapsed:,.0f} req/s: "
        f"{cpu / requests * 1e6:.1f} µs CPU, {elapsed / requests * 1e6:.1f} µs wall per request"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats(sort or "tottime").print_stats(60)


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_http",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("requests", type=int, nargs="?", default=30000)
    parser.add_argument("sort", nargs="?", help="print a cProfile table sorted by this key")
    args = parser.parse_args()
    uvloop.run(main(args.requests, args.sort))


if __name__ == "__main__":
    cli()
