"""Open-loop, paced per-call latency of one state read, by one caller or by several at once.

    python -m benchmarks.load.state_latency http --port 3500 --path /v1.0/state/s/k
    python -m benchmarks.load.state_latency redis-hget --port 6379 --key 'app||k'
    python -m benchmarks.load.state_latency grpc --port 50001 --store s --key k -c 16

Targets:

  http        GET `--path` on a keep-alive HTTP/1.1 connection (mecha's state API, or any
              HTTP server as a client-cost baseline); a call is good on 200
  grpc        Dapr's GetState (`--store`, `--key`) with a grpcio stub (DaprStub), a channel
              of its own per caller; a call is good on OK with data
  redis-hget  `HGET key data` with redis-py: what an application reading Dapr's Redis
              layout directly would do
  redis-eval  the same Lua script mecha's `state.redis` runs for a get, with redis-py's
              `eval` (script text on every call, as mecha sends it)

With `--concurrency 1` (the default) calls are made one at a time on one connection with the
synchronous clients (http.client, grpcio, redis-py). With `-c N` they are made by N asyncio
callers in this process (a raw HTTP/1.1 client, grpc.aio, redis.asyncio), one connection
each, like fortio's `-c N -qps R`: the callers share the `--rate` and take their slots in
turn.

Calls start on a fixed schedule (`--rate` per second, after `--warmup` unrecorded calls);
the latency of a call is from just before its request is written to when its whole answer
has been read and checked, in this process (Python client-side costs included). The
schedule is not coordinated-omission corrected: a call that starts late is counted in `late`
(more than 1 ms after its slot) and timed from its actual start. A call is an error when it
raises, answers a non-200 status, or answers anything but what the first call answered. GC
is off while measuring. Prints one JSON object:

    {"target", "concurrency", "calls", "rate", "seconds", "p50_ms", "p90_ms", "p99_ms",
     "mean_ms", "max_ms", "late", "errors", "error_kinds", "error_sample"}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis
import redis.asyncio
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

from runtime.components.state.redis import _READ as READ_SCRIPT

Call = Callable[[], bytes]
"""One request and its whole answer; raises on a transport or status error."""
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
"""A connection per channel: grpcio shares one between channels to the same address."""
LATE = 1e-3


class BadStatus(Exception):
    pass


# -- one caller, synchronous clients ---------------------------------------------------------------


def http_call(port: int, path: str) -> Call:
    state: dict[str, http.client.HTTPConnection] = {}

    def call() -> bytes:
        connection = state.get("connection")
        if connection is None:
            connection = state["connection"] = http.client.HTTPConnection("127.0.0.1", port)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            del state["connection"]
            raise
        if response.status != 200:
            raise BadStatus(f"HTTP {response.status}: {body[:100]!r}")
        return body

    return call


def grpc_call(port: int, store: str, key: str) -> Call:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    stub = dapr_stub(channel)
    request = state_pb2.GetStateRequest(store_name=store, key=key)

    def call() -> bytes:
        return _state_data(stub.GetState(request, timeout=5), key)

    return call


def dapr_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """Dapr's generated client stub (the generated module has no type hints)."""
    return dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]


def _state_data(reply: state_pb2.GetStateResponse, key: str) -> bytes:
    if not reply.data:
        raise BadStatus(f"GetState found nothing at {key!r}")
    return bytes(reply.data)


def redis_call(port: int, key: str, script: bool) -> Call:
    client = redis.Redis(host="127.0.0.1", port=port)

    def hget() -> bytes:
        value: Any = client.hget(key, "data")
        if value is None:
            raise BadStatus(f"no field data at {key!r}")
        return bytes(value)

    def evaluate() -> bytes:
        reply: Any = client.eval(READ_SCRIPT.source, 1, key)
        if not reply:
            raise BadStatus(f"script found nothing at {key!r}")
        return bytes(reply[0])

    return evaluate if script else hget


# -- several callers, asyncio clients --------------------------------------------------------------


class AsyncHttp:
    """A keep-alive HTTP/1.1 GET client on one connection, just enough for a small answer."""

    def __init__(self, port: int, path: str) -> None:
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __call__(self) -> bytes:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            return await self._exchange(*self.streams)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await self.close()  # the next call starts on a fresh connection
            raise

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, _, fields = head.partition(b"\r\n")
        length = 0
        for line in fields.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        if status_line.split(b" ", 2)[1] != b"200":
            raise BadStatus(f"{status_line!r}: {body[:100]!r}")
        return body

    async def close(self) -> None:
        if self.streams is not None:
            writer, self.streams = self.streams[1], None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class AsyncGrpc:
    def __init__(self, port: int, store: str, key: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        self.stub = dapr_stub(self.channel)
        self.request = state_pb2.GetStateRequest(store_name=store, key=key)
        self.key = key

    async def __call__(self) -> bytes:
        return _state_data(await self.stub.GetState(self.request, timeout=5), self.key)

    async def close(self) -> None:
        await self.channel.close()


class AsyncRedis:
    def __init__(self, port: int, key: str, script: bool) -> None:
        self.client = redis.asyncio.Redis(
            host="127.0.0.1", port=port, single_connection_client=True
        )
        self.key = key
        self.script = script

    async def __call__(self) -> bytes:
        if self.script:
            reply: Any = await self.client.eval(READ_SCRIPT.source, 1, self.key)
            value = reply[0] if reply else None
        else:
            value = await self.client.hget(self.key, "data")
        if value is None:
            raise BadStatus(f"nothing at {self.key!r}")
        return bytes(value)

    async def close(self) -> None:
        await self.client.aclose()


AsyncCaller = AsyncHttp | AsyncGrpc | AsyncRedis


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the calls of one run came to."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sample: str | None = None
    reference: bytes | None = None
    late: int = 0

    def check(self, answer: bytes) -> tuple[str, str]:
        if self.reference is None:
            self.reference = answer
        elif answer != self.reference:
            return "different answer", repr(answer[:100])
        return "", ""

    def record(self, slot: float, began: float, ended: float, kind: str, detail: str) -> None:
        if kind:
            self.errors[kind] += 1
            self.sample = self.sample or f"{kind}: {detail}"[:200]
            return
        self.latencies.append((ended - began) * 1e3)
        self.late += began - slot > LATE

    def result(self, rate: float, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [float("nan")]
        return {
            "calls": len(self.latencies), "rate": rate, "seconds": round(seconds, 3),
            **{f"p{p}_ms": percentile(ordered, p) for p in (50, 90, 99)},
            "mean_ms": statistics.fmean(ordered), "max_ms": ordered[-1], "late": self.late,
            "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
            "error_sample": self.sample,
        }  # fmt: skip


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def measure(call: Call, rate: float, calls: int, warmup: int) -> dict[str, Any]:
    tally = Tally()
    interval = 1.0 / rate
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    for index in range(warmup + calls):
        slot = start + index * interval
        if (wait := slot - time.perf_counter()) > 0:
            time.sleep(wait)
        began = time.perf_counter()
        kind = detail = ""
        try:
            kind, detail = tally.check(call())
        except Exception as exc:  # every failure is counted, by kind
            kind, detail = type(exc).__name__, str(exc)
        if index >= warmup:
            tally.record(slot, began, time.perf_counter(), kind, detail)
    seconds = time.perf_counter() - start - warmup * interval
    gc.enable()
    return tally.result(rate, seconds)


async def measure_concurrent(
    args: argparse.Namespace, rate: float, calls: int, warmup: int
) -> dict[str, Any]:
    """Slot i of the shared schedule goes to caller i mod N, so each paces at rate / N."""
    callers = async_callers(args)  # in the loop: grpc.aio binds its channels to it
    tally = Tally()
    interval = 1.0 / rate
    count = len(callers)
    loop = asyncio.get_running_loop()

    async def caller(first: int, call: AsyncCaller) -> None:
        for index in range(first, warmup + calls, count):
            slot = start + index * interval
            if (wait := slot - loop.time()) > 0:
                await asyncio.sleep(wait)
            began = loop.time()
            kind = detail = ""
            try:
                kind, detail = tally.check(await call())
            except Exception as exc:  # every failure is counted, by kind
                kind, detail = type(exc).__name__, str(exc)
            if index >= warmup:
                tally.record(slot, began, loop.time(), kind, detail)

    gc.collect()
    gc.disable()
    start = loop.time()
    try:
        await asyncio.gather(*(caller(i, call) for i, call in enumerate(callers)))
    finally:
        gc.enable()
        for call in callers:
            await call.close()
    seconds = loop.time() - start - warmup * interval
    return tally.result(rate, seconds)


def async_callers(args: argparse.Namespace) -> list[AsyncCaller]:
    def one() -> AsyncCaller:
        if args.target == "http":
            return AsyncHttp(args.port, args.path)
        if args.target == "grpc":
            return AsyncGrpc(args.port, args.store, args.key)
        return AsyncRedis(args.port, args.key, script=args.target == "redis-eval")

    return [one() for _ in range(args.concurrency)]


def sync_call(args: argparse.Namespace) -> Call:
    if args.target == "http":
        return http_call(args.port, args.path)
    if args.target == "grpc":
        return grpc_call(args.port, args.store, args.key)
    return redis_call(args.port, args.key, script=args.target == "redis-eval")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=("http", "grpc", "redis-hget", "redis-eval"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/", help="http: the path to GET")
    parser.add_argument("--store", default="", help="grpc: the state store")
    parser.add_argument("--key", default="", help="grpc: the key; redis-*: the item's key")
    parser.add_argument("--rate", type=float, default=1000.0, help="calls per second, in all")
    parser.add_argument("--calls", type=int, default=2000, help="recorded calls, in all")
    parser.add_argument("--warmup", type=int, default=200, help="unrecorded calls first")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="callers at once")
    args = parser.parse_args(argv)
    if args.concurrency > 1:
        result = asyncio.run(measure_concurrent(args, args.rate, args.calls, args.warmup))
    else:
        result = measure(sync_call(args), args.rate, args.calls, args.warmup)
    print(json.dumps({"target": args.target, "concurrency": args.concurrency, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
