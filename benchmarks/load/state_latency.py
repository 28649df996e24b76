"""Open-loop, paced per-call latency of one state read: one connection, one call at a time.

    python -m benchmarks.load.state_latency http --port 3500 --path /v1.0/state/s/k
    python -m benchmarks.load.state_latency redis-hget --port 6379 --key 'app||k'

Targets:

  http        GET `--path` on a keep-alive `http.client` connection (mecha's state API, or
              any HTTP server as a client-cost baseline); a call is good on 200
  redis-hget  `HGET key data` with the sync redis-py client: what an application reading
              Dapr's Redis layout directly would do
  redis-eval  the same Lua script mecha's `state.redis` runs for a get, with redis-py's
              `eval` (script text on every call, as mecha sends it)

Calls start on a fixed schedule (`--rate` per second, after `--warmup` unrecorded calls),
sequentially on one connection; the latency of a call is from just before its request is
written to when its whole answer has been read and checked, in this process (Python
client-side costs included). The schedule is not coordinated-omission corrected: a call
that starts late is counted in `late` (more than 1 ms after its slot) and timed from its
actual start. A call is an error when it raises, answers a non-200 status, or answers
anything but what the first call answered. GC is off while measuring. Prints one JSON
object:

    {"target", "calls", "rate", "seconds", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
     "max_ms", "late", "errors", "error_kinds", "error_sample"}
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from runtime.components.state.redis import _READ as READ_SCRIPT

Call = Callable[[], bytes]
"""One request and its whole answer; raises on a transport or status error."""


class BadStatus(Exception):
    pass


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


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def measure(call: Call, rate: float, calls: int, warmup: int) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    sample: str | None = None
    reference: bytes | None = None
    latencies: list[float] = []
    late = 0
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
            answer = call()
            if reference is None:
                reference = answer
            elif answer != reference:
                kind, detail = "different answer", repr(answer[:100])
        except Exception as exc:  # every failure is counted, by kind
            kind, detail = type(exc).__name__, str(exc)
        ended = time.perf_counter()
        if index < warmup:
            continue
        if kind:
            errors[kind] += 1
            sample = sample or f"{kind}: {detail}"[:200]
            continue
        latencies.append((ended - began) * 1e3)
        late += began - slot > 1e-3
    seconds = time.perf_counter() - start - warmup * interval
    gc.enable()
    ordered = sorted(latencies) or [float("nan")]
    return {
        "calls": len(latencies), "rate": rate, "seconds": round(seconds, 3),
        **{f"p{p}_ms": percentile(ordered, p) for p in (50, 90, 99)},
        "mean_ms": statistics.fmean(ordered), "max_ms": ordered[-1], "late": late,
        "errors": sum(errors.values()), "error_kinds": dict(errors), "error_sample": sample,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=("http", "redis-hget", "redis-eval"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/", help="http: the path to GET")
    parser.add_argument("--key", default="", help="redis-*: the key of the item")
    parser.add_argument("--rate", type=float, default=1000.0, help="calls per second")
    parser.add_argument("--calls", type=int, default=2000, help="recorded calls")
    parser.add_argument("--warmup", type=int, default=200, help="unrecorded calls first")
    args = parser.parse_args(argv)
    if args.target == "http":
        call = http_call(args.port, args.path)
    else:
        call = redis_call(args.port, args.key, script=args.target == "redis-eval")
    result = measure(call, args.rate, args.calls, args.warmup)
    print(json.dumps({"target": args.target, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
