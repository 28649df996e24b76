"""l4: redis-benchmark through mecha's tcp_proxy, through haproxy (tcp mode, one thread), direct."""

from __future__ import annotations

import argparse
import time

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
    wait_for_port,
    wait_for_ready,
)
from benchmarks.redis_tools import REDIS_COMMANDS, redis_benchmark, start_redis

HAPROXY = """\
global
    nbthread {threads}
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend l4
    bind 127.0.0.1:{listen}
    default_backend redis
backend redis
    server redis 127.0.0.1:{upstream}
"""

CLIENTS = 50


def start_haproxy(procs: Processes, upstream: int, threads: int = 1) -> int:
    port = free_port()
    name = "haproxy" if threads == 1 else f"haproxy-{threads}t"
    text = HAPROXY.format(listen=port, upstream=upstream, threads=threads)
    config = procs.write(f"{name}.cfg", text)
    procs.start(name, ["haproxy", "-f", str(config)])
    wait_for_port(port)
    return port


def start_mecha(procs: Processes, upstream: int, workers: int = 1) -> tuple[int, int]:
    """mecha on the example config configs/tcp-proxy.yaml; returns (port, pid)."""
    port, admin = free_port(), free_port()
    env = {"MECHA_LISTEN": f"127.0.0.1:{port}", "MECHA_UPSTREAM": f"127.0.0.1:{upstream}",
           "MECHA_ADMIN": f"127.0.0.1:{admin}", "MECHA_ACCESS_LOG": "off"}  # fmt: skip
    argv = [*mecha_command(), str(ROOT / "configs/tcp-proxy.yaml")]
    name = "mecha" if workers == 1 else f"mecha-{workers}w"
    if workers > 1:
        argv += ["--workers", str(workers)]
    process = procs.start(name, argv, env)
    wait_for_ready(admin)
    return port, process.pid


def run(args: argparse.Namespace) -> str:
    ensure_commands({**REDIS_COMMANDS, "haproxy": "haproxy"})
    requests = args.requests or 200_000
    table = Table(f"redis-benchmark -c {CLIENTS} through an L4 proxy", "req/s",
                  ["mecha", "haproxy", "direct"])  # fmt: skip
    two_table = Table(f"redis-benchmark -c {CLIENTS}, two workers each: mecha --workers 2, "
                      "haproxy nbthread 2", "req/s", ["mecha", "haproxy"])  # fmt: skip
    with processes() as procs:
        redis = start_redis(procs)
        ports = {"haproxy": start_haproxy(procs, redis), "direct": redis}
        ports["mecha"], mecha_pid = start_mecha(procs, redis)
        two = {"mecha": start_mecha(procs, redis, workers=2)[0],
               "haproxy": start_haproxy(procs, redis, threads=2)}  # fmt: skip
        time.sleep(1.0)
        idle_rss = rss_bytes(mecha_pid)
        for round_ in range(args.rounds):
            order = list(ports)[round_ % 3 :] + list(ports)[: round_ % 3]
            for system in order:
                for pipeline, count in ((1, requests), (16, requests * 10)):
                    figures = redis_benchmark(ports[system], CLIENTS, count, "set,get", pipeline)
                    suffix = "" if pipeline == 1 else f" -P {pipeline}"
                    for test, rps in figures.items():
                        table.add(test + suffix, system, rps)
            for system in list(two)[round_ % 2 :] + list(two)[: round_ % 2]:
                figures = redis_benchmark(two[system], CLIENTS, requests, "set,get", 1)
                for test, rps in figures.items():
                    two_table.add(test, system, rps)
        loaded_rss = rss_bytes(mecha_pid)
    table.notes.append(
        f"Median of {args.rounds} interleaved rounds; -n {requests:,} (x10 with -P 16). "
        f"mecha RSS: {idle_rss / 2**20:.1f} MiB idle, {loaded_rss / 2**20:.1f} MiB after load. "
        "Targets: mecha / haproxy >= 0.90x in both modes, idle RSS < 40 MiB."
    )
    two_table.notes.append(
        f"Median of {args.rounds} interleaved rounds; -n {requests:,}, no pipelining. mecha: a "
        "supervisor and two worker processes on SO_REUSEPORT; redis-server and "
        "redis-benchmark share the same two cores."
    )
    return publish("l4", [table, two_table])
