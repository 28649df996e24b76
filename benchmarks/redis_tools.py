"""Peers and load for Redis-protocol scenarios: a private redis-server, redis-benchmark."""

from __future__ import annotations

import subprocess

from benchmarks.harness import Processes, free_port, wait_for_port

REDIS_COMMANDS = {"redis-server": "redis-server", "redis-benchmark": "redis-tools"}


def start_redis(procs: Processes, name: str = "redis") -> int:
    port = free_port()
    procs.start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no"])  # fmt: skip
    wait_for_port(port)
    return port


def redis_benchmark(
    port: int, clients: int, requests: int, tests: str, pipeline: int = 1
) -> dict[str, float]:
    """Requests per second per test name, e.g. {"SET": 51234.0, "GET": 53012.0}."""
    argv = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests),
            "-t", tests, "-P", str(pipeline), "--csv"]  # fmt: skip
    output = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
    results: dict[str, float] = {}
    for line in output.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if len(fields) >= 2 and fields[0] != "test":
            results[fields[0]] = float(fields[1])
    if not results:
        raise RuntimeError(f"redis-benchmark printed no results: {output!r}")
    return results
