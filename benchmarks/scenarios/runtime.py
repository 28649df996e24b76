"""runtime: Dapr's state API through mecha's `runtime_api` and `runtime_grpc` — wrk GET/POST on an
in-memory and a Redis state store (Redis against redis-benchmark direct), paced per-call latency
of a state GET over HTTP and over gRPC (a grpcio stub) against redis-py direct, one caller and 16
concurrent callers, and mecha's RSS with every component loaded."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from benchmarks.harness import (
    ROOT,
    Processes,
    Table,
    ensure_commands,
    free_port,
    mecha_command,
    processes,
    publish,
    rss_bytes,
    wait_for_ready,
)
from benchmarks.http_load import LOAD_COMMANDS, LoadResult, post_script, wrk
from benchmarks.nginx_tools import NGINX_COMMANDS, start_backend
from benchmarks.redis_tools import REDIS_COMMANDS, start_redis
from benchmarks.scenarios.http import error_note

CONNECTIONS = 50
SECONDS = 8
REDIS_REQUESTS = 100_000
RATE = 1000
CALLS = 2000
CONCURRENCY = 16
"""Concurrent callers, one connection each, sharing RATE (as Dapr's perf tests run fortio)."""
CONCURRENT_CALLS = 4000
APP_ID = "bench"
KEY = "bench-key"
POST_KEY = "bench-post"
VALUE = {"user": "bench", "count": 42, "tags": ["a", "b", "c"], "active": True}
STORES = {"in-memory": "memstore", "redis": "redisstore"}
WORKLOADS = [(store, op) for store in STORES for op in ("GET", "POST")]
PERCENTILES = ("p50", "p90", "p99")
GRPC_TARGET = 0.12
"""ms: the p50 overhead of a gRPC state GET against Redis (Dapr v1.17 reports about 0.12)."""

T = TypeVar("T")


def rotate(items: list[T], round_: int) -> list[T]:
    """`items` started at a different place every round, so no system always goes first."""
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


def components(redis_host: str) -> list[dict[str, Any]]:
    """Every component type that needs no service beyond the private redis-server."""
    on_redis = {"redisHost": redis_host}
    return [
        {"name": "memstore", "type": "state.in-memory"},
        {"name": "redisstore", "type": "state.redis", "metadata": on_redis},
        {"name": "pubsub", "type": "pubsub.in-memory"},
        {"name": "redispubsub", "type": "pubsub.redis", "metadata": on_redis},
        {"name": "lockstore", "type": "lock.in-memory"},
        {"name": "redislock", "type": "lock.redis", "metadata": on_redis},
        {"name": "sequencer", "type": "sequencer.in-memory"},
        {"name": "configstore", "type": "configuration.in-memory"},
        {"name": "secretstore", "type": "secretstores.local.env",
         "metadata": {"prefix": "SECRET_"}},
    ]  # fmt: skip


def start_mecha(procs: Processes, name: str, config: dict[str, Any]) -> int:
    """mecha on `config` (written as JSON, which is YAML) with a free admin port; returns pid."""
    admin = free_port()
    path = procs.write(f"{name}.yaml", json.dumps({"admin": {"address": f"127.0.0.1:{admin}"},
                                                  **config}, indent=2))  # fmt: skip
    process = procs.start(name, [*mecha_command(), str(path)])
    wait_for_ready(admin)
    return process.pid


def start_runtime(procs: Processes, redis_port: int) -> tuple[int, int, int]:
    """mecha serving the HTTP and gRPC runtime APIs with every component loaded; returns
    (HTTP port, gRPC port, pid)."""
    port, grpc_port = free_port(), free_port()
    config = {
        "listeners": [{"name": "api", "address": f"127.0.0.1:{port}",
                       "filters": [{"name": "runtime_api"}]},
                      {"name": "grpc", "address": f"127.0.0.1:{grpc_port}",
                       "filters": [{"name": "runtime_grpc"}]}],
        "clusters": [],
        "runtime": {"app_id": APP_ID, "components": components(f"127.0.0.1:{redis_port}")},
    }  # fmt: skip
    return port, grpc_port, start_mecha(procs, "mecha", config)


def seed(port: int, redis_port: int) -> str:
    """Save KEY in both stores and check every path reads the same bytes; returns them."""
    body = json.dumps([{"key": KEY, "value": VALUE}]).encode()
    answers: list[bytes] = []
    for store in STORES.values():
        url = f"http://127.0.0.1:{port}/v1.0/state/{store}"
        request = urllib.request.Request(url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status != 204:
                raise RuntimeError(f"POST {url} answered {response.status}")
        with urllib.request.urlopen(f"{url}/{KEY}", timeout=5) as response:
            answers.append(response.read())
    direct = redis.Redis(port=redis_port).hget(f"{APP_ID}||{KEY}", "data")
    if len(set(answers)) != 1 or answers[0] != direct or json.loads(answers[0]) != VALUE:
        raise RuntimeError(f"stores answer {answers!r}, redis holds {direct!r}")
    return answers[0].decode()


def redis_benchmark(port: int) -> dict[str, dict[str, float]]:
    """redis-benchmark GET and SET: {"GET": {"rps", "p50", "p99"}, "SET": {...}}."""
    argv = ["redis-benchmark", "-p", str(port), "-c", str(CONNECTIONS), "-n", str(REDIS_REQUESTS),
            "-t", "get,set", "--csv"]  # fmt: skip
    output = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300).stdout
    lines = [[f.strip('"') for f in line.split(",")] for line in output.splitlines()]
    header = lines[0]
    results = {}
    for fields in lines[1:]:
        row = dict(zip(header, fields, strict=True))
        results[row["test"]] = {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
                                "p99": float(row["p99_latency_ms"])}  # fmt: skip
    if set(results) != {"GET", "SET"}:
        raise RuntimeError(f"redis-benchmark printed {output!r}")
    return results


def state_latency(target: str, port: int, calls: int, *, path: str = "", key: str = "",
                  concurrency: int = 1) -> Any:  # fmt: skip
    """Run benchmarks/load/state_latency.py in its own process; its JSON result. For gRPC,
    `path` is the store's name."""
    argv = [sys.executable, "-m", "benchmarks.load.state_latency", target, "--port", str(port),
            "--rate", str(RATE), "--calls", str(calls), "-c", str(concurrency)]  # fmt: skip
    if target == "grpc":
        argv += ["--store", path, "--key", KEY]
    else:
        argv += ["--path", path] if path else ["--key", key]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"state_latency {target} exited {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout)


@dataclass
class Grid(Table):
    """A table whose columns are not systems: no subject, no ratio columns."""

    def markdown(self, subject: str = "mecha") -> str:
        lines = ["| " + " | ".join([self.label, *self.systems]) + " |",
                 "|" + "---|" * (len(self.systems) + 1)]  # fmt: skip
        for row in self.rows:
            spec = self.formats.get(row, ",.0f")
            cells = [row, *[format(self.median(row, column), spec) for column in self.systems]]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join([f"### {self.title}", "", *lines, "", "\n\n".join(self.notes)])


@dataclass
class LatencyGrid:
    """Rows of state_latency runs (target, where) and difference rows, filled round by round."""

    grid: Grid
    targets: dict[str, tuple[str, str]]
    differences: dict[str, tuple[str, str]]
    calls: int
    concurrency: int = 1
    late: Counter[str] = field(default_factory=Counter)
    errors: dict[str, Counter[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in [*self.targets, *self.differences]:
            self.grid.formats[row] = ".3f"

    def round(self, round_: int, where: dict[str, tuple[int, str]], item: str) -> None:
        figures_by_row: dict[str, dict[str, Any]] = {}
        for row in rotate(list(self.targets), round_):
            target, at = self.targets[row]
            port, path = where[at]
            figures = state_latency(target, port, self.calls, path=path, key=item,
                                    concurrency=self.concurrency)  # fmt: skip
            figures_by_row[row] = figures
            self.late[row] += figures["late"]
            for pct in PERCENTILES:
                self.grid.add(row, f"{pct} (ms)", figures[f"{pct}_ms"])
            if figures["errors"]:
                self.errors.setdefault(row, Counter()).update(figures["error_kinds"])
        for row, (minuend, subtrahend) in self.differences.items():
            for pct in PERCENTILES:
                ms = f"{pct}_ms"
                difference = figures_by_row[minuend][ms] - figures_by_row[subtrahend][ms]
                self.grid.add(row, f"{pct} (ms)", difference)

    def late_note(self, rounds: int) -> str:
        return (
            f"Calls started more than 1 ms after their slot (the client fell behind; of "
            f"{self.calls * rounds:,} per row): "
            + "; ".join(f"{row}: {self.late[row]:,}" for row in self.targets)
            + "."
        )


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def run(args: argparse.Namespace) -> str:
    ensure_commands({**REDIS_COMMANDS, **NGINX_COMMANDS, "wrk": LOAD_COMMANDS["wrk"]})
    calls = args.requests or CALLS
    load_before = os.getloadavg()
    wrk_title = f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s --latency"
    memory = Table(f"In-memory state store: {wrk_title} through mecha's runtime API", "",
                   ["mecha"], label="metric")  # fmt: skip
    on_redis = Table(
        f"Redis state store: {wrk_title} through mecha vs redis-benchmark -c {CONNECTIONS} "
        "direct (RESP, not HTTP)", "", ["mecha", "redis direct"], label="metric",
    )  # fmt: skip
    columns = [f"{p} (ms)" for p in PERCENTILES]
    latency = Grid(
        f"Per-call latency of state GET: one Python client process, one connection, "
        f"{RATE:,} calls/s paced, {calls:,} calls", "", columns, label="call",
    )  # fmt: skip
    rss = Table("mecha RSS", "MiB", ["mecha"], label="process")
    errors: dict[str, Counter[str]] = {}
    mecha_row = "GET via mecha, state.redis (http.client)"
    grpc_row = "GetState via mecha gRPC, state.redis (grpcio stub)"
    direct_row = "redis-py HGET, same item (direct)"
    memory_row = "GET via mecha, state.in-memory (http.client)"
    nginx_row = "GET nginx `return 200` (http.client baseline)"
    overhead_row = "difference: mecha state.redis - redis-py HGET"
    grpc_overhead_row = "difference: mecha gRPC state.redis - redis-py HGET"
    paced = LatencyGrid(
        latency,
        {
            mecha_row: ("http", "mecha"),
            grpc_row: ("grpc", "mecha-grpc"),
            direct_row: ("redis-hget", "redis"),
            "redis-py EVAL of mecha's read script (direct)": ("redis-eval", "redis"),
            memory_row: ("http", "mecha-memory"),
            nginx_row: ("http", "nginx"),
        },
        {
            overhead_row: (mecha_row, direct_row),
            grpc_overhead_row: (grpc_row, direct_row),
            "difference: mecha state.in-memory - nginx": (memory_row, nginx_row),
        },
        calls,
    )
    concurrent_calls = args.requests or CONCURRENT_CALLS
    c_grpc_row = "GetState via mecha gRPC, state.redis (grpc.aio stubs)"
    c_http_row = "GET via mecha HTTP, state.redis (asyncio HTTP/1.1)"
    c_direct_row = "redis-py asyncio HGET, same item (direct)"
    c_grpc_overhead = "difference: mecha gRPC - redis-py HGET"
    concurrent = LatencyGrid(
        Grid(
            f"Per-call latency of state GET against Redis, {CONCURRENCY} concurrent callers "
            f"(one connection each) in one Python client process, {RATE:,} calls/s in all, "
            f"paced, {concurrent_calls:,} calls",
            "",
            columns,
            label="call",
        ),
        {
            c_grpc_row: ("grpc", "mecha-grpc"),
            c_http_row: ("http", "mecha"),
            c_direct_row: ("redis-hget", "redis"),
            "redis-py asyncio EVAL of mecha's read script (direct)": ("redis-eval", "redis"),
        },
        {
            c_grpc_overhead: (c_grpc_row, c_direct_row),
            "difference: mecha HTTP - redis-py HGET": (c_http_row, c_direct_row),
        },
        concurrent_calls,
        CONCURRENCY,
    )
    with processes() as procs:
        redis_port = start_redis(procs)
        nginx_port, _ = start_backend(procs)
        port, grpc_port, pid = start_runtime(procs, redis_port)
        bare_pid = start_mecha(procs, "mecha-bare", {"listeners": [], "clusters": []})
        time.sleep(1.0)
        rss.add("every component, idle after startup", "mecha", rss_bytes(pid) / 2**20)
        rss.add("bare mecha (admin only, no listener, no runtime), idle", "mecha",
                rss_bytes(bare_pid) / 2**20)  # fmt: skip
        value = seed(port, redis_port)
        body = json.dumps([{"key": POST_KEY, "value": VALUE}])
        script = post_script(procs.workdir / "post.lua", body)
        paths = {store: f"/v1.0/state/{name}" for store, name in STORES.items()}
        item = f"{APP_ID}||{KEY}"
        where = {"mecha": (port, f"{paths['redis']}/{KEY}"), "redis": (redis_port, ""),
                 "mecha-memory": (port, f"{paths['in-memory']}/{KEY}"),
                 "mecha-grpc": (grpc_port, STORES["redis"]),
                 "nginx": (nginx_port, "/")}  # fmt: skip

        def load(store: str, op: str, seconds: int) -> LoadResult:
            get = op == "GET"
            path = f"{paths[store]}/{KEY}" if get else paths[store]
            return wrk(port, CONNECTIONS, seconds, path, None if get else script)

        for store, op in WORKLOADS:  # warm up connections, pools and caches; not recorded
            load(store, op, 1)
        for round_ in range(args.rounds):
            for store, op in rotate([*WORKLOADS, ("redis", "direct")], round_):
                if op == "direct":
                    for test, figures in redis_benchmark(redis_port).items():
                        name = "GET" if test == "GET" else "POST / SET"
                        on_redis.add(f"{name} requests/s", "redis direct", figures["rps"])
                        for pct in ("p50", "p99"):
                            on_redis.add(f"{name} latency {pct} (ms)", "redis direct", figures[pct])
                    continue
                result = load(store, op, SECONDS)
                table = memory if store == "in-memory" else on_redis
                name = op if store == "in-memory" or op == "GET" else "POST / SET"
                table.add(f"{name} requests/s", "mecha", result.rps)
                for pct in ("p50", "p99"):
                    table.add(f"{name} latency {pct} (ms)", "mecha", result.latency_ms[pct])
                errors.setdefault(f"{store} {op}", Counter()).update(result.errors)
            paced.round(round_, where, item)
            concurrent.round(round_, where, item)
        rss.add("every component, after the load", "mecha", rss_bytes(pid) / 2**20)
        mecha_log = (procs.workdir / "mecha.log").read_text().splitlines()
    load_after = os.getloadavg()
    for table in (memory, on_redis):
        table.formats.update({row: ".2f" for row in table.rows if "latency" in row})
    for row in rss.rows:
        rss.formats[row] = ".1f"
    rounds = f"Median of {args.rounds} interleaved rounds."
    memory_get = memory.median("GET requests/s", "mecha")
    memory.notes += [
        f"{rounds} mecha: one process (one event loop), listener filter `runtime_api`, every "
        f"component of the RSS table loaded; GET reads one {len(value)}-byte JSON value, POST "
        f"saves `{body}` ({len(body)} bytes) with last-write concurrency.",
        error_note({k: v for k, v in errors.items() if k.startswith("in-memory")}),
        f"Target: >= 15,000 requests/s for in-memory state GET with one worker: "
        f"{verdict(memory_get >= 15_000)} ({memory_get:,.0f}).",
    ]
    on_redis.notes += [
        f"{rounds} mecha: state.redis on a private redis-server (Dapr's layout: a hash per item); "
        "a GET is one EVAL of a Lua script (TYPE, HMGET, PTTL), a POST one EVAL of the write "
        "script (version check, HSET, PERSIST). redis direct: redis-benchmark (C client, RESP, "
        f"-c {CONNECTIONS} -n {REDIS_REQUESTS:,}, plain GET/SET of a 3-byte string): the Redis "
        "ceiling, not the same work, so the ratio is the price of the HTTP API, Python and the "
        "script, not a like-for-like comparison. Latency p50/p99 are wrk's / redis-benchmark's.",
        error_note({k: v for k, v in errors.items() if k.startswith("redis")}),
    ]
    overhead = latency.median(overhead_row, "p50 (ms)")
    grpc_overhead = latency.median(grpc_overhead_row, "p50 (ms)")
    c_grpc_overhead_p50 = concurrent.grid.median(c_grpc_overhead, "p50 (ms)")
    latency.notes += [
        f"{rounds} Each row is a fresh `python -m benchmarks.load.state_latency` process (not the "
        "harness's): sequential calls on one keep-alive connection, started on a fixed schedule "
        f"after 200 unrecorded calls, GC off; a call is timed in the client from writing the "
        "request to having read and checked the whole answer, so every row includes the Python "
        "client's own cost (http.client's request formatting and header parsing is heavier than "
        "redis-py's RESP) and loopback. The nginx row is that HTTP client cost with a trivial C "
        "server; the EVAL row is Redis running mecha's read script without mecha. The gRPC row "
        "calls Dapr's GetState with the generated DaprStub on a grpcio channel (C core; HTTP/2 "
        "to mecha's `runtime_grpc` listener). Difference rows are per round, per percentile (a "
        "difference of percentiles, not a percentile of differences).",
        f"Overhead of mecha for a state GET against Redis, p50 = GET via mecha - redis-py HGET = "
        f"{overhead:.3f} ms. Target < 0.15 ms: {verdict(overhead < 0.15)}. Reference: Dapr "
        "v1.17's published HTTP state get p50 overhead is about 0.28 ms (their setup, not "
        "measured here). It includes the HTTP client's extra cost over redis-py's (compare "
        "the nginx and HGET rows) and mecha's EVAL instead of a plain HGET.",
        f"Over gRPC, p50 = GetState via mecha - redis-py HGET = {grpc_overhead:.3f} ms. Target "
        f"< {GRPC_TARGET} ms: {verdict(grpc_overhead < GRPC_TARGET)}.",
        error_note(paced.errors),
        paced.late_note(args.rounds),
    ]
    concurrent.grid.notes += [
        f"{rounds} Each row is a fresh `python -m benchmarks.load.state_latency -c "
        f"{CONCURRENCY}` process: {CONCURRENCY} asyncio callers, one connection each (gRPC: a "
        "grpc.aio channel each, with DaprStub; HTTP: a minimal keep-alive HTTP/1.1 client; "
        "redis: redis.asyncio, one connection each), taking the slots of one schedule in turn "
        f"({RATE:,} calls/s in all, after 200 unrecorded calls), as Dapr's perf tests drive "
        "fortio (`-c 16 -qps 1000`). Latency is timed in the client and includes its event "
        "loop's queueing: all callers share one Python process.",
        f"Overhead of mecha for a gRPC state GET against Redis, p50 = GetState via mecha - "
        f"redis-py HGET = {c_grpc_overhead_p50:.3f} ms. Target < {GRPC_TARGET} ms: "
        f"{verdict(c_grpc_overhead_p50 < GRPC_TARGET)}. Reference: Dapr v1.17's published gRPC "
        "state get p50 overhead is about 0.12 ms (their setup: Go sidecar, fortio, a Redis "
        "store; not measured here).",
        error_note(concurrent.errors),
        concurrent.late_note(args.rounds),
    ]
    idle = rss.median("every component, idle after startup", "mecha")
    log_errors = sum("error" in line.lower() or "traceback" in line.lower() for line in mecha_log)
    log_note = "empty"
    if mecha_log:
        log_note = f"{len(mecha_log)} lines ({log_errors} mentioning error or traceback), first: "
        log_note += f"`{mecha_log[0]}`"
    loaded = ", ".join(component["type"] for component in components(""))
    rss.notes += [
        f"Components loaded: {loaded} (the redis ones on the private redis-server). "
        "Not loaded: the types that need "
        "another service or a file (sqlite, jetstream, mqtt3, bindings, secretstores.local.file, "
        "the Redis sequencer and configuration store). After the load: after every run above, "
        "with wrk's connections closed.",
        f"Target: idle RSS < 50 MB with every component loaded: {verdict(idle * 2**20 < 50e6)} "
        f"({idle * 2**20 / 1e6:.1f} MB). Reference: Dapr's published sidecar memory is about "
        f"50 MB. mecha log (warning level): {log_note}.",
    ]  # fmt: skip
    extra = (
        f"\nLoad average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {' / '.join(f'{x:.2f}' for x in load_after)} — other work on this machine "
        "skews every figure."
    )
    return publish("runtime", [memory, on_redis, latency, concurrent.grid, rss], extra)
