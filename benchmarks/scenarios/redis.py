"""redis: redis-benchmark direct to one redis-server, and over two shards through
twemproxy (nutcracker, ketama) and through mecha's redis_proxy (ketama)."""

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

TWEMPROXY = """\
shards:
  listen: 127.0.0.1:{listen}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  preconnect: true
  auto_eject_hosts: false
  timeout: 5000
  servers:
{servers}
"""

CLIENTS = 50


def start_twemproxy(procs: Processes, shards: list[int]) -> int:
    port = free_port()
    servers = "\n".join(f"    - 127.0.0.1:{shard}:1" for shard in shards)
    config = procs.write("twemproxy.yml", TWEMPROXY.format(listen=port, servers=servers))
    procs.start("twemproxy", ["nutcracker", "-c", str(config), "-s", str(free_port()),
                              "-a", "127.0.0.1", "-o", str(procs.workdir / "twemproxy.log"),
                              "-p", str(procs.workdir / "twemproxy.pid")])  # fmt: skip
    wait_for_port(port)
    return port


def start_mecha(procs: Processes, shards: list[int]) -> tuple[int, int]:
    """mecha on the example config configs/redis-proxy.yaml; returns (port, pid)."""
    port, admin = free_port(), free_port()
    env = {"MECHA_LISTEN": f"127.0.0.1:{port}", "MECHA_ADMIN": f"127.0.0.1:{admin}",
           "MECHA_REDIS_SHARDS": ",".join(f"127.0.0.1:{s}" for s in shards)}  # fmt: skip
    process = procs.start("mecha", [*mecha_command(), str(ROOT / "configs/redis-proxy.yaml")], env)
    wait_for_ready(admin)
    return port, process.pid


def run(args: argparse.Namespace) -> str:
    ensure_commands({**REDIS_COMMANDS, "nutcracker": "nutcracker"})
    requests = args.requests or 200_000
    table = Table(f"redis-benchmark -c {CLIENTS}, two shards behind each proxy", "req/s",
                  ["mecha", "twemproxy", "direct"])  # fmt: skip
    with processes() as procs:
        shards = [start_redis(procs, f"shard{i}") for i in range(2)]
        ports = {"twemproxy": start_twemproxy(procs, shards), "direct": shards[0]}
        ports["mecha"], mecha_pid = start_mecha(procs, shards)
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
        loaded_rss = rss_bytes(mecha_pid)
    table.notes.append(
        f"Median of {args.rounds} interleaved rounds; -n {requests:,} (x10 with -P 16); "
        "direct is one redis-server, the proxies shard over two. "
        f"mecha RSS: {idle_rss / 2**20:.1f} MiB idle, {loaded_rss / 2**20:.1f} MiB after load. "
        "Targets: mecha / twemproxy >= 0.90x plain, >= 0.60x with -P 16."
    )
    return publish("redis", [table])
