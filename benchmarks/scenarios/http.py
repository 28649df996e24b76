"""http: wrk via mecha, nginx and haproxy (one worker each) to an nginx backend; h2load over
h2c through the same three (HTTP/1.1 behind) and to the backend directly."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

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
from benchmarks.http_load import LOAD_COMMANDS, LoadResult, h2load, wrk
from benchmarks.load.cpu import cpu_seconds
from benchmarks.nginx_tools import NGINX_COMMANDS, start_backend, start_reverse_proxy

HAPROXY = """\
global
    nbthread {threads}
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend http
    bind 127.0.0.1:{listen}{proto}
    default_backend nginx
backend nginx
    server nginx 127.0.0.1:{upstream}
"""

CONNECTIONS = 50
SECONDS = 8
H2_CLIENTS, H2_STREAMS, H2_REQUESTS = 10, 10, 40_000
WRK_ROWS = {"requests/s": ",.0f", **{f"latency {p} (ms)": ".2f" for p in ("p50", "p90", "p99")}}
H2_ROWS = {"requests/s": ",.0f", "latency mean (ms)": ".2f", "latency max (ms)": ".1f"}
CPU_ROW = "CPU per request (us)"
"""The server's own user + system CPU time per good response: what shared cores skew least."""


def start_haproxy(procs: Processes, upstream: int, threads: int = 1, h2c: bool = False) -> int:
    """haproxy in http mode to `upstream`; with `h2c` its frontend speaks HTTP/2 with prior
    knowledge (`proto h2`)."""
    port = free_port()
    name = ("haproxy" if threads == 1 else f"haproxy-{threads}t") + ("-h2c" if h2c else "")
    proto = " proto h2" if h2c else ""
    text = HAPROXY.format(listen=port, upstream=upstream, threads=threads, proto=proto)
    config = procs.write(f"{name}.cfg", text)
    procs.start(name, ["haproxy", "-f", str(config)])
    wait_for_port(port)
    return port


def start_mecha(procs: Processes, upstream: int, workers: int = 1) -> tuple[int, int]:
    """mecha on the example config configs/http-proxy.yaml; returns (port, pid)."""
    port, admin = free_port(), free_port()
    env = {"MECHA_LISTEN": f"127.0.0.1:{port}", "MECHA_UPSTREAM": f"127.0.0.1:{upstream}",
           "MECHA_ADMIN": f"127.0.0.1:{admin}", "MECHA_ACCESS_LOG": "off"}  # fmt: skip
    argv = [*mecha_command(), str(ROOT / "configs/http-proxy.yaml")]
    name = "mecha" if workers == 1 else f"mecha-{workers}w"
    if workers > 1:
        argv += ["--workers", str(workers)]
    process = procs.start(name, argv, env)
    wait_for_ready(admin)
    return port, process.pid


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its children (an nginx master and its worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def measured(pid: int, load: Callable[[], LoadResult]) -> tuple[LoadResult, float]:
    """Run `load`; its result and the CPU seconds `pid` (and children) spent meanwhile."""
    before = tree_cpu(pid)
    result = load()
    return result, tree_cpu(pid) - before


def per_request_us(cpu: float, served: float) -> float:
    return cpu / served * 1e6 if served else float("nan")


def wrk_verdict(table: Table) -> str:
    """The targets against nginx (one worker each): CPU per request <= 1.5x, requests/s
    >= 0.8x, p99 <= 2x."""

    def ratio(row: str) -> float:
        return table.median(row, "mecha") / table.median(row, "nginx")

    checks = [
        ("CPU per request <= 1.5x nginx", ratio(CPU_ROW), ratio(CPU_ROW) <= 1.5),
        ("requests/s >= 0.8x", ratio("requests/s"), ratio("requests/s") >= 0.8),
        ("p99 <= 2x", ratio("latency p99 (ms)"), ratio("latency p99 (ms)") <= 2.0),
    ]
    parts = [f"{name}: {value:.2f}x, {'met' if ok else 'MISSED'}" for name, value, ok in checks]
    return "Targets against nginx, one worker each: " + "; ".join(parts) + "."


def h2_verdict(table: Table) -> str:
    """Issue 14's targets against nginx doing the same job (h2c in front, HTTP/1.1 behind):
    requests/s >= 0.5x, CPU per request <= 3x."""
    rps = table.median("requests/s", "mecha") / table.median("requests/s", "nginx")
    cpu = table.median(CPU_ROW, "mecha") / table.median(CPU_ROW, "nginx")
    checks = [
        ("requests/s >= 0.5x nginx", rps, rps >= 0.5),
        ("CPU per request <= 3x", cpu, cpu <= 3),
    ]
    parts = [f"{name}: {value:.2f}x, {'met' if ok else 'MISSED'}" for name, value, ok in checks]
    return "Targets against nginx (h2c -> HTTP/1.1): " + "; ".join(parts) + "."


def rotated(systems: list[str], round_: int) -> list[str]:
    shift = round_ % len(systems)
    return systems[shift:] + systems[:shift]


def record(table: Table, system: str, result: LoadResult, errors: dict[str, Counter[str]]) -> None:
    table.add("requests/s", system, result.rps)
    for key, ms in result.latency_ms.items():
        table.add(f"latency {key} (ms)", system, ms)
    errors.setdefault(system, Counter()).update(result.errors)


def error_note(errors: dict[str, Counter[str]]) -> str:
    seen = [f"{system}: " + ", ".join(f"{n:,} {kind}" for kind, n in counts.items())
            for system, counts in errors.items() if counts]  # fmt: skip
    if not seen:
        return "Errors: none (no non-2xx/3xx responses, no socket or stream errors)."
    return "ERRORS (summed over rounds; requests/s counts only 2xx/3xx): " + "; ".join(seen) + "."


def run(args: argparse.Namespace) -> str:
    ensure_commands({**NGINX_COMMANDS, **LOAD_COMMANDS, "haproxy": "haproxy"})
    h2_requests = args.requests or H2_REQUESTS
    wrk_table = Table(
        f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s --latency, keep-alive GET / (12-byte body)",
        "", ["mecha", "nginx", "haproxy", "direct"], label="metric", formats=WRK_ROWS,
    )  # fmt: skip
    workers_table = Table(
        f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s --latency, two workers each: mecha --workers 2, "
        "haproxy nbthread 2", "", ["mecha", "haproxy"], label="metric", formats=WRK_ROWS,
    )  # fmt: skip
    h2_table = Table(
        f"h2load -c{H2_CLIENTS} -m{H2_STREAMS} -n {h2_requests:,}, h2c prior knowledge, GET /",
        "", ["mecha", "nginx", "haproxy", "direct"], label="metric", formats=H2_ROWS,
    )  # fmt: skip
    wrk_errors: dict[str, Counter[str]] = {}
    workers_errors: dict[str, Counter[str]] = {}
    h2_errors: dict[str, Counter[str]] = {}
    with processes() as procs:
        http1, http2 = start_backend(procs)
        pids = {"direct": procs.running[-1].pid}
        ports = {"direct": http1, "nginx": start_reverse_proxy(procs, http1)}
        pids["nginx"] = procs.running[-1].pid
        ports["haproxy"] = start_haproxy(procs, http1)
        pids["haproxy"] = procs.running[-1].pid
        ports["mecha"], pids["mecha"] = start_mecha(procs, http1)
        mecha_pid = pids["mecha"]
        two = {"mecha": start_mecha(procs, http1, workers=2)[0],
               "haproxy": start_haproxy(procs, http1, threads=2)}  # fmt: skip
        h2_ports = {"mecha": ports["mecha"], "direct": http2}
        h2_pids = {"mecha": mecha_pid, "direct": pids["direct"]}
        h2_ports["nginx"] = start_reverse_proxy(procs, http1, "nginx-h2c", http2=True)
        h2_pids["nginx"] = procs.running[-1].pid
        h2_ports["haproxy"] = start_haproxy(procs, http1, h2c=True)
        h2_pids["haproxy"] = procs.running[-1].pid
        time.sleep(1.0)
        idle_rss = rss_bytes(mecha_pid)
        for port in [*ports.values(), *two.values()]:  # warm up pools and caches; not recorded
            wrk(port, CONNECTIONS, 1)
        for port in h2_ports.values():
            h2load(port, H2_CLIENTS, H2_STREAMS, 2_000)
        for round_ in range(args.rounds):
            for system in rotated(wrk_table.systems, round_):
                load = partial(wrk, ports[system], CONNECTIONS, SECONDS)
                result, cpu = measured(pids[system], load)
                record(wrk_table, system, result, wrk_errors)
                wrk_table.add(CPU_ROW, system, per_request_us(cpu, result.rps * SECONDS))
            for system in rotated(workers_table.systems, round_):
                result = wrk(two[system], CONNECTIONS, SECONDS)
                record(workers_table, system, result, workers_errors)
            for system in rotated(h2_table.systems, round_):
                load = partial(h2load, h2_ports[system], H2_CLIENTS, H2_STREAMS, h2_requests)
                result, cpu = measured(h2_pids[system], load)
                record(h2_table, system, result, h2_errors)
                h2_table.add(CPU_ROW, system, per_request_us(cpu, h2_requests))
        loaded_rss = rss_bytes(mecha_pid)
        mecha_log = (procs.workdir / "mecha.log").read_text().splitlines()
    common = (
        f"Median of {args.rounds} interleaved rounds. Ratios are mecha / peer: above 1.00x is "
        "better for requests/s, worse for latency and CPU."
    )
    wrk_table.notes += [
        f"{common} Backend: nginx, one worker, `return 200`. mecha: configs/http-proxy.yaml "
        "(router + metrics, access log off, HTTP/1.1 upstream); nginx: proxy_pass with upstream "
        "keepalive 64; haproxy: http mode, nbthread 1, http-reuse always. Every proxy runs one "
        "worker / thread; direct is wrk straight to the backend. CPU per request: the proxy's "
        "user + system CPU time over the run (nginx: master and worker; direct: the backend) "
        "divided by its good responses; the shared cores skew it least.",
        error_note(wrk_errors),
        wrk_verdict(wrk_table),
    ]
    workers_table.notes += [
        f"{common} The same backend and configs with two workers: mecha's supervisor and two "
        "worker processes on SO_REUSEPORT, haproxy with two threads. wrk and the backend share "
        "the same two cores, so this shows how much a second worker still buys here.",
        error_note(workers_errors),
    ]
    h2_table.notes += [
        f"{common} mecha: HTTP/2 downstream (codec auto, same port), HTTP/1.1 upstream to the "
        "backend; nginx: `listen ... http2` (h2c) with the same proxy_pass and upstream "
        "keepalive, keepalive_requests 1000000; haproxy: `bind ... proto h2`, http-reuse always; "
        "direct: the backend's own h2c listener. Latency is h2load's time for request. CPU per "
        "request: each server's own (nginx: master and worker; direct: the backend's), as for wrk.",
        error_note(h2_errors),
        h2_verdict(h2_table),
    ]
    log_note = "mecha log (warning level): " + (
        f"{len(mecha_log)} lines, first: `{mecha_log[0]}`" if mecha_log else "empty"
    )
    rss_note = (
        f"mecha RSS: {idle_rss / 2**20:.1f} MiB idle, {loaded_rss / 2**20:.1f} MiB after load. "
        f"{log_note}."
    )
    return publish("http", [wrk_table, workers_table, h2_table], "\n" + rss_note)
