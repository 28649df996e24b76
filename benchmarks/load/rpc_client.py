"""Closed-loop msgpack-RPC load: N connections, each with one call in flight.

    python -m benchmarks.load.rpc_client --port 18800 --connections 50 --seconds 8

Each connection sends a request, waits for its answer, checks it and sends the next one.
Calls answered during the first `--warmup` seconds are not counted; after `--seconds`
more no new call is sent and the ones in flight are awaited (not counted either). A call
counts only when its answer carries the msgid sent, a nil error and the expected result;
anything else is an error, by kind. Prints one JSON object:

    {"calls", "seconds", "calls_per_s", "p50_ms", "p99_ms", "errors", "error_kinds",
     "error_sample", "sent", "answered", "cpu"}

`sent` and `answered` cover the whole run, warm-up included. `cpu` is the percentage of
one core this process and each `--watch NAME=PID` process used over the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import time
from collections import Counter
from typing import Any, cast

import msgpack
import uvloop

from benchmarks.load.cpu import CpuWatch, parse_watch

MAX_ID = 0xFFFF_FFFF
WARMUP, MEASURE, DRAIN = 0, 1, 2


class Bench:
    """What all connections share: the phase, the counts, the latencies."""

    def __init__(self, method: str, size: int) -> None:
        self.method = method
        self.blob = os.urandom(size)
        self.phase = WARMUP
        self.calls = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.error_sample: str | None = None
        self.sent = 0
        self.answered = 0
        self.in_flight = 0
        self.idle = asyncio.Event()

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if self.error_sample is None:
            self.error_sample = f"{kind}: {detail}"[:200]


class Caller(asyncio.Protocol):
    def __init__(self, bench: Bench, index: int) -> None:
        self.bench = bench
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        self.packer = msgpack.Packer()
        self.msgid = index << 24  # distinct ids per connection make a crossed answer visible
        self.expected: Any = None
        self.waiting = False
        self.sent_at = 0.0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> None:
        bench = self.bench
        if bench.phase == DRAIN or self.transport is None or self.transport.is_closing():
            return
        self.msgid = (self.msgid + 1) & MAX_ID
        if bench.method == "add":
            a = self.msgid & 0xFFFF
            params: list[Any] = [a, self.index]
            self.expected = a + self.index
        else:
            params = [bench.blob]
            self.expected = bench.blob
        self.waiting = True
        bench.sent += 1
        bench.in_flight += 1
        self.sent_at = time.perf_counter()
        self.transport.write(self.packer.pack([0, self.msgid, bench.method, params]))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.unpacker.feed(data)
        for message in self.unpacker:
            self._answer(message, now)

    def _answer(self, message: Any, now: float) -> None:
        bench = self.bench
        if type(message) is not list or len(message) != 4 or message[0] != 1:
            bench.error("malformed response", repr(message)[:120])
            return
        _, msgid, error, result = message
        if not self.waiting or msgid != self.msgid:
            bench.error("wrong msgid", f"got {msgid!r}, waiting for {self.msgid}")
            return  # the right answer may still come
        self.waiting = False
        bench.answered += 1
        bench.in_flight -= 1
        if error is not None:
            bench.error("error response", repr(error))
        elif result != self.expected:
            bench.error("wrong result", f"{result!r:.60} for msgid {msgid}")
        elif bench.phase == MEASURE:
            bench.calls += 1
            bench.latencies.append(now - self.sent_at)
        if bench.phase == DRAIN:
            if bench.in_flight == 0:
                bench.idle.set()
        else:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.waiting = False
            self.bench.in_flight -= 1
            if self.bench.in_flight == 0 and self.bench.phase == DRAIN:
                self.bench.idle.set()
        if self.bench.phase != DRAIN:
            self.bench.error("connection lost", str(exc or "closed by peer"))
        if not self.lost.done():
            self.lost.set_result(None)


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest rank; NaN for no values."""
    if not ordered:
        return float("nan")
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    bench = Bench(args.method, args.size)
    callers = []
    for index in range(args.connections):
        _, caller = await loop.create_connection(
            functools.partial(Caller, bench, index), args.host, args.port
        )
        callers.append(caller)
    for caller in callers:
        caller.send()
    watch = CpuWatch(parse_watch(args.watch))
    await asyncio.sleep(args.warmup)
    bench.phase = MEASURE
    watch.start()
    started = time.perf_counter()
    await asyncio.sleep(args.seconds)
    bench.phase = DRAIN
    seconds = time.perf_counter() - started
    cpu = watch.busy()
    if bench.in_flight:
        try:
            await asyncio.wait_for(bench.idle.wait(), args.drain_timeout)
        except TimeoutError:
            bench.errors["unanswered"] += bench.in_flight
    for caller in callers:
        if caller.transport is not None:
            caller.transport.close()
    await asyncio.gather(*(caller.lost for caller in callers))
    ordered = sorted(bench.latencies)
    return {
        "calls": bench.calls,
        "seconds": round(seconds, 4),
        "calls_per_s": bench.calls / seconds,
        "p50_ms": percentile(ordered, 50) * 1e3,
        "p99_ms": percentile(ordered, 99) * 1e3,
        "errors": sum(bench.errors.values()),
        "error_kinds": dict(bench.errors),
        "error_sample": bench.error_sample,
        "sent": bench.sent,
        "answered": bench.answered,
        "cpu": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.rpc_client")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    parser.add_argument("--method", choices=("add", "echo"), default="add")
    parser.add_argument("--size", type=int, default=1024, help="echo payload bytes")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                        help="report this process's CPU use over the window too")  # fmt: skip
    args = parser.parse_args()
    json.dump(uvloop.run(run(args)), sys.stdout)
    print()


if __name__ == "__main__":
    main()
