"""rpc: msgpack-RPC calls from 50 closed-loop callers, direct to a backend and through mecha's
rpc_proxy; the backend and the callers are the programs in benchmarks/load/."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from benchmarks.harness import (
    ROOT,
    Processes,
    Table,
    Tally,
    free_port,
    mecha_command,
    metric_total,
    module_env,
    processes,
    publish,
    rss_bytes,
    run_json,
    wait_for_port,
    wait_for_ready,
)

CONNECTIONS = 50
SECONDS = 8
WARMUP = 1
WORKLOADS = {
    "add(a, b)": ["--method", "add"],
    "echo(1 KiB bin)": ["--method", "echo", "--size", "1024"],
}
ROWS = {"calls/s": ",.0f", "latency p50 (ms)": ".2f", "latency p99 (ms)": ".2f"}
SYSTEMS = ["mecha", "direct"]
COUNTERS = ("mecha_rpc_calls_total", "mecha_rpc_call_errors_total", "mecha_rpc_call_timeouts_total")


def start_backend(procs: Processes) -> tuple[int, int]:
    """benchmarks/load/rpc_server.py; returns (port, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.load.rpc_server", "--port", str(port)]
    process = procs.start("rpc-backend", argv, module_env())
    wait_for_port(port)
    return port, process.pid


def start_mecha(procs: Processes, upstream: int) -> tuple[int, int, int]:
    """mecha on the example config configs/rpc-proxy.yaml; returns (port, admin port, pid)."""
    port, admin = free_port(), free_port()
    env = {"MECHA_LISTEN": f"127.0.0.1:{port}", "MECHA_UPSTREAM": f"127.0.0.1:{upstream}",
           "MECHA_ADMIN": f"127.0.0.1:{admin}", "MECHA_ACCESS_LOG": "off"}  # fmt: skip
    process = procs.start("mecha", [*mecha_command(), str(ROOT / "configs/rpc-proxy.yaml")], env)
    wait_for_ready(admin)
    return port, admin, process.pid


def callers(port: int, workload: list[str], watch: dict[str, int]) -> dict[str, Any]:
    args = ["--port", str(port), "--connections", str(CONNECTIONS), "--seconds", str(SECONDS),
            "--warmup", str(WARMUP), *workload,
            *(f"--watch={name}={pid}" for name, pid in watch.items())]  # fmt: skip
    return run_json("benchmarks.load.rpc_client", args, timeout=SECONDS + 90)


def rotated(systems: list[str], round_: int) -> list[str]:
    shift = round_ % len(systems)
    return systems[shift:] + systems[:shift]


def run(args: argparse.Namespace) -> str:
    title = "msgpack-RPC {}: {} callers (connections with one call in flight each), {}s"
    tables = {}
    for name in WORKLOADS:
        heading = title.format(name, CONNECTIONS, SECONDS)
        tables[name] = Table(heading, "", list(SYSTEMS), label="metric", formats=ROWS)
    tallies = {name: Tally() for name in WORKLOADS}
    answered_through_mecha = 0
    with processes() as procs:
        backend, backend_pid = start_backend(procs)
        mecha, admin, mecha_pid = start_mecha(procs, backend)
        ports = {"mecha": mecha, "direct": backend}
        watches = {"mecha": {"mecha": mecha_pid, "backend": backend_pid},
                   "direct": {"backend": backend_pid}}  # fmt: skip
        time.sleep(1.0)
        idle_rss = rss_bytes(mecha_pid)
        before = {name: metric_total(admin, name) for name in COUNTERS}
        for round_ in range(args.rounds):
            for name, workload in WORKLOADS.items():
                for system in rotated(SYSTEMS, round_):
                    result = callers(ports[system], workload, watches[system])
                    table = tables[name]
                    table.add("calls/s", system, result["calls_per_s"])
                    table.add("latency p50 (ms)", system, result["p50_ms"])
                    table.add("latency p99 (ms)", system, result["p99_ms"])
                    tallies[name].add(system, result)
                    if system == "mecha":
                        answered_through_mecha += result["answered"]
        loaded_rss = rss_bytes(mecha_pid)
        counted = {name: metric_total(admin, name) - before[name] for name in COUNTERS}
        mecha_log = (procs.workdir / "mecha.log").read_text().splitlines()
    common = (
        f"Median of {args.rounds} interleaved rounds; each run counts the calls answered in "
        f"{SECONDS}s after a {WARMUP}s warm-up. Callers: benchmarks/load/rpc_client.py (one "
        "uvloop process, msgpack); backend: benchmarks/load/rpc_server.py (one uvloop process). "
        "mecha: configs/rpc-proxy.yaml (access log off), which multiplexes all callers over one "
        "upstream connection. Ratios are mecha / direct: above 1.00x is better for calls/s, "
        f"worse for latency. All processes share the host's {os.cpu_count()} cores."
    )
    for name, table in tables.items():
        table.notes += [
            common,
            tallies[name].cpu_note() + ".",
            tallies[name].error_note(
                "every answer carried the msgid sent, a nil error and the expected result; "
                "no connection lost, no call left unanswered",
                "not counted as calls",
            ),
            "Target: calls/s >= 0.6x direct.",
        ]
    calls, errors, timeouts = (int(counted[name]) for name in COUNTERS)
    log_note = "mecha log (warning level): " + (
        f"{len(mecha_log)} lines, first: `{mecha_log[0]}`" if mecha_log else "empty"
    )
    extra = (
        f"\nmecha RSS: {idle_rss / 2**20:.1f} MiB idle, {loaded_rss / 2**20:.1f} MiB after load. "
        f"mecha's counters over the runs through it: {calls:,} calls answered, {errors:,} with "
        f"an error, {timeouts:,} timed out; the callers received {answered_through_mecha:,} "
        f"answers through it (warm-ups and drains included). {log_note}.\n"
    )
    return publish("rpc", list(tables.values()), extra)
