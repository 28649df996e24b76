"""In-process CPU cost of mecha's Dapr HTTP API, for profiling one change at a time.

One uvloop loop runs everything: mecha's `Server` (one `runtime_api` listener, access log
off, a `state.in-memory` store, or `state.redis` on a private redis-server with --redis) and
CLIENTS keep-alive client connections that send GET /v1.0/state/<store>/<key> back to back.
Nothing else crosses a process boundary (but redis-server with --redis), so the figure is
stable enough to compare before/after on a noisy machine, and a profiler sees only Python:

    python -m benchmarks.profile_runtime 30000              # µs per request
    python -m benchmarks.profile_runtime 30000 tottime      # + cProfile table by that key
    python -m benchmarks.profile_runtime 30000 --redis      # state.redis on redis-server
    python -m benchmarks.profile_runtime 10000 --clients 1  # one connection: round trips
    valgrind --tool=callgrind python -m benchmarks.profile_runtime 20000

CPU µs/request (process time: user + kernel) is the figure to compare; wall time also
counts waiting for a CPU on a busy machine. Both include the client's (small) share of the
work. For instruction counts, run callgrind twice with different request counts and divide
the difference by the difference in requests (start-up cancels out).
`python -m benchmarks runtime` measures the real thing with wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any, cast

import uvloop

from benchmarks.harness import ensure_commands, processes
from benchmarks.redis_tools import REDIS_COMMANDS, start_redis
from proxy.config.parse import parse_config
from proxy.server import Server

CLIENTS = 10
WARMUP = 2000
APP_ID = "bench"
KEY = "bench-key"
VALUE = b'{"user":"bench","count":42,"tags":["a","b","c"],"active":true}'


def request(store: str) -> bytes:
    return f"GET /v1.0/state/{store}/{KEY} HTTP/1.1\r\nHost: 127.0.0.1:3500\r\n\r\n".encode()


class Client(asyncio.Protocol):
    """Sends one GET, reads its whole answer (Content-Length framed), repeats until the shared
    budget is spent; any answer but a 200 with VALUE stops the run with an error. The run is
    done when every client has its last answer (none is left in flight at the end)."""

    transport: asyncio.Transport

    def __init__(self, request: bytes, state: list[int], done: asyncio.Future[None]) -> None:
        self.request = request
        self.state = state
        """[requests left to send, clients still waiting for an answer]"""
        self.done = done
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.state[1] += 1
        self._send()

    def _send(self) -> None:
        state = self.state
        if state[0] > 0:
            state[0] -= 1
            self.transport.write(self.request)
            return
        state[1] -= 1
        if not state[1]:
            self._finish(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (answer := self._answer()) is not None:
            if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(VALUE):
                self._finish(RuntimeError(f"unexpected answer {answer!r}"))
                return
            self._send()

    def _answer(self) -> bytes | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = 0 if at < 0 else int(head[at + 15 :].split(b"\r\n", 1)[0])
        size = end + 4 + length
        if len(self.buffer) < size:
            return None
        answer, self.buffer = self.buffer[:size], self.buffer[size:]
        return answer

    def _finish(self, error: Exception | None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


def mecha_config(redis_port: int | None) -> dict[str, Any]:
    components: list[dict[str, Any]] = [{"name": "memstore", "type": "state.in-memory"}]
    if redis_port is not None:
        metadata = {"redisHost": f"127.0.0.1:{redis_port}"}
        components.append({"name": "redisstore", "type": "state.redis", "metadata": metadata})
    listener = {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]}
    return {
        "admin": False,
        "listeners": [listener],
        "clusters": [],
        "runtime": {"app_id": APP_ID, "components": components},
    }


async def seed(port: int, store: str) -> None:
    """Save KEY with VALUE through the API (so the store holds it as the API writes it)."""
    body = b'[{"key":"%s","value":%s}]' % (KEY.encode(), VALUE)
    head = (
        f"POST /v1.0/state/{store} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    answer = await reader.read()
    writer.close()
    if not answer.startswith(b"HTTP/1.1 204 "):
        raise RuntimeError(f"seeding {store} answered {answer!r}")


async def run_clients(
    port: int, store: str, requests: int, profile: cProfile.Profile | None, clients: int
) -> tuple[float, float]:
    """(wall, CPU) seconds for `clients` connections to complete `requests` exchanges."""
    loop = asyncio.get_running_loop()
    state = [requests, 0]
    done: asyncio.Future[None] = loop.create_future()
    transports = []
    get = request(store)
    for _ in range(clients):
        transport, _ = await loop.create_connection(
            lambda: Client(get, state, done), "127.0.0.1", port
        )
        transports.append(transport)
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    try:
        await done
    finally:
        if profile is not None:
            profile.disable()
        for transport in transports:
            transport.close()
    return time.perf_counter() - started, time.process_time() - cpu_started


async def main(requests: int, sort: str | None, redis_port: int | None, clients: int) -> None:
    server = Server(parse_config(mecha_config(redis_port)))
    await server.start()
    store = "memstore" if redis_port is None else "redisstore"
    try:
        bound = server.listeners[0].bound
        assert bound is not None
        await seed(bound.port, store)
        await run_clients(bound.port, store, WARMUP, None, clients)
        profile = cProfile.Profile() if sort else None
        elapsed, cpu = await run_clients(bound.port, store, requests, profile, clients)
    finally:
        await server.stop()
    print(
        f"{requests} requests ({store}) in {elapsed:.2f}s = {requests / elapsed:,.0f} req/s: "
        f"{cpu / requests * 1e6:.1f} µs CPU, {elapsed / requests * 1e6:.1f} µs wall per request"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats(sort or "tottime").print_stats(60)


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_runtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("requests", type=int, nargs="?", default=30000)
    parser.add_argument("sort", nargs="?", help="print a cProfile table sorted by this key")
    parser.add_argument("--redis", action="store_true", help="state.redis on a redis-server")
    parser.add_argument(
        "--clients", type=int, default=CLIENTS, help="connections (1: wall time = round trip)"
    )
    args = parser.parse_args()
    if not args.redis:
        uvloop.run(main(args.requests, args.sort, None, args.clients))
        return
    ensure_commands({"redis-server": REDIS_COMMANDS["redis-server"]})
    with processes() as procs:
        uvloop.run(main(args.requests, args.sort, start_redis(procs), args.clients))


if __name__ == "__main__":
    cli()
