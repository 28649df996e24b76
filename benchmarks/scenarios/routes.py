"""routes: what the size of the route table costs - requests/s, CPU, RSS and start time of
mecha with 1, 100, 1,000 and 5,000 prefix routes, and as many virtual hosts, each against the
one-route figure."""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import yaml

from benchmarks.harness import (
    Processes,
    Table,
    ensure_commands,
    free_port,
    mecha_command,
    processes,
    publish,
    rss_bytes,
)
from benchmarks.http_load import LOAD_COMMANDS, wrk
from benchmarks.nginx_tools import NGINX_COMMANDS, start_backend
from benchmarks.scenarios.http import error_note, measured, per_request_us

SIZES = (1, 100, 1_000, 5_000)
CONNECTIONS = 50
SECONDS = 5
RPS, CPU, RSS_READY, RSS_LOADED, START = (
    "requests/s", "CPU per request (us)", "RSS at ready (MiB)", "RSS after load (MiB)", "start (s)",
)  # fmt: skip
FORMATS = {RPS: ",.0f", CPU: ".1f", RSS_READY: ".1f", RSS_LOADED: ".1f", START: ".2f"}
TARGETS = {RPS: (0.90, "requests/s within 10%"), RSS_LOADED: (2.0, "RSS under 2x")}
START_LIMIT = 1.0


@dataclass(frozen=True)
class Shape:
    """A route table: `size` prefix routes `/svc-i/` in one virtual host, or `size` virtual
    hosts `svc-i.example` with one route each. Requests go to the last one."""

    kind: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.size:,} {self.kind}"

    @property
    def row(self) -> str:
        return f"{self.size:,}"

    def virtual_hosts(self) -> list[dict[str, Any]]:
        route = {"cluster": "upstream", "timeout": "15s"}
        if self.kind == "routes":
            routes = [{"match": {"prefix": f"/svc-{i}/"}, "route": route} for i in range(self.size)]
            return [{"name": "default", "domains": ["*"], "routes": routes}]
        return [{"name": f"svc-{i}", "domains": [f"svc-{i}.example"],
                 "routes": [{"match": {"prefix": "/"}, "route": route}]}
                for i in range(self.size)]  # fmt: skip

    def target(self) -> tuple[str, dict[str, str]]:
        """(path, headers) of the requests: the last route or virtual host."""
        last = self.size - 1
        if self.kind == "routes":
            return f"/svc-{last}/", {}
        return "/", {"Host": f"svc-{last}.example"}

    def miss(self) -> tuple[str, dict[str, str]]:
        """A request that no route matches."""
        if self.kind == "routes":
            return f"/svc-{self.size}/", {}
        return "/", {"Host": f"svc-{self.size}.example"}


SHAPES = [Shape(kind, size) for kind in ("routes", "virtual hosts") for size in SIZES]


def config(shape: Shape, port: int, admin: int, upstream: int) -> dict[str, Any]:
    manager = {"codec": "auto", "access_log": "off",
               "route_config": {"virtual_hosts": shape.virtual_hosts()}}  # fmt: skip
    return {
        "admin": {"address": f"127.0.0.1:{admin}"},
        "listeners": [{"name": "http", "address": f"127.0.0.1:{port}",
                       "filters": [{"name": "http", "config": manager}]}],
        "clusters": [{"name": "upstream", "connect_timeout": "2s",
                      "endpoints": [f"127.0.0.1:{upstream}"]}],
    }  # fmt: skip


@dataclass
class Mecha:
    process: subprocess.Popen[bytes]
    port: int
    start_seconds: float


def start_mecha(procs: Processes, shape: Shape, upstream: int, round_: int) -> Mecha:
    """Start mecha on `shape`'s routes; the start time is from spawning the process until
    /ready answers 200."""
    port, admin = free_port(), free_port()
    stem = f"mecha-{shape.kind.replace(' ', '-')}-{shape.size}-r{round_}"
    path = procs.write(f"{stem}.yaml", yaml.safe_dump(config(shape, port, admin, upstream)))
    began = time.monotonic()
    process = procs.start(stem, [*mecha_command(), str(path)])
    wait_ready(admin, process)
    return Mecha(process, port, time.monotonic() - began)


def wait_ready(admin: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll /ready every 10 ms (the start times are a fraction of a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mecha exited {process.returncode} before it was ready")
        if status(admin, "/ready", {}) == 200:
            return
        time.sleep(0.01)
    raise TimeoutError(f"mecha on admin port {admin} not ready after {timeout}s")


def status(port: int, path: str, headers: dict[str, str]) -> int:
    """The status of GET `path` (0: no answer)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def check_routing(mecha: Mecha, shape: Shape) -> None:
    """The last route answers through the backend and a request past it finds no route: the
    load really goes through the whole table."""
    answers = (status(mecha.port, *shape.target()), status(mecha.port, *shape.miss()))
    if answers != (200, 404):
        raise RuntimeError(f"{shape.name}: target / miss answered {answers}, not (200, 404)")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure_one(
    procs: Processes, shape: Shape, upstream: int, round_: int, table: Table,
    errors: Counter[str],
) -> None:  # fmt: skip
    """Start mecha on `shape`, check its routing, load it with wrk, record, stop it."""
    mecha = start_mecha(procs, shape, upstream, round_)
    pid = mecha.process.pid
    try:
        check_routing(mecha, shape)
        table.add(shape.row, START, mecha.start_seconds)
        table.add(shape.row, RSS_READY, rss_bytes(pid) / 2**20)
        path, headers = shape.target()
        load = partial(wrk, mecha.port, CONNECTIONS, SECONDS, path, headers=headers)
        wrk(mecha.port, CONNECTIONS, 1, path, headers=headers)  # warm up; not recorded
        result, cpu = measured(pid, load)
        table.add(shape.row, RPS, result.rps)
        table.add(shape.row, CPU, per_request_us(cpu, result.rps * SECONDS))
        table.add(shape.row, RSS_LOADED, rss_bytes(pid) / 2**20)
        errors.update(result.errors)
    finally:
        stop(mecha.process)


class Sweep(Table):
    """Rows are table sizes, columns the metrics, each followed by its ratio to the first
    row (the one-route figure)."""

    def markdown(self, subject: str = "") -> str:
        first = next(iter(self.rows))
        header = [self.label]
        for metric in self.systems:
            header += [metric, f"vs {first}"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [row]
            for metric in self.systems:
                value, base = self.median(row, metric), self.median(first, metric)
                ratio = value / base if base else math.nan
                cells += [format(value, FORMATS[metric]), f"{ratio:.2f}x"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join([f"### {self.title}", "", *lines, "", "\n\n".join(self.notes)])

    def verdict(self) -> str:
        """The largest table against the targets."""
        first, last = next(iter(self.rows)), list(self.rows)[-1]
        last_name = f"{last} {self.label}"
        parts = []
        for metric, (limit, text) in TARGETS.items():
            ratio = self.median(last, metric) / self.median(first, metric)
            met = ratio >= limit if metric == RPS else ratio < limit
            parts.append(f"{text}: {ratio:.2f}x, {'met' if met else 'MISSED'}")
        start = self.median(last, START)
        parts.append(f"start under {START_LIMIT:.0f} s: {start:.2f} s, "
                     f"{'met' if start < START_LIMIT else 'MISSED'}")  # fmt: skip
        return f"Targets at {last_name}: " + "; ".join(parts) + "."


TABLES = {
    "routes": (
        "N prefix routes",
        "One virtual host `*` with the prefix routes `/svc-0/` ... `/svc-(N-1)/`; wrk asks for "
        "the last one.",
    ),
    "virtual hosts": (
        "N virtual hosts",
        "N virtual hosts with the exact domains `svc-0.example` ... `svc-(N-1).example`, one "
        "route `/` each; wrk sends the last one's Host.",
    ),
}
METHOD = (
    "Median of {rounds} interleaved rounds, a fresh mecha for every measurement. Backend: "
    "nginx, one worker, `return 200`; mecha: one listener, the router, access log off. Before "
    "the load the request wrk sends answers 200 and one past the table 404, so the load goes "
    "through the whole table. Start: from spawning `mecha run` until /ready answers 200. CPU "
    "per request: mecha's user + system CPU time over the run divided by its good responses "
    "(what the shared cores skew least). Targets (at 5,000): requests/s within 10% of the "
    "one-route figure, RSS under 2x, start under 1 s."
)


def run(args: argparse.Namespace) -> str:
    ensure_commands({**NGINX_COMMANDS, **LOAD_COMMANDS})
    metrics = [RPS, CPU, RSS_READY, RSS_LOADED, START]
    tables = {
        kind: Sweep(f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s through {title}, to the last one",
                    "", metrics, notes=[text], label=kind)
        for kind, (title, text) in TABLES.items()
    }  # fmt: skip
    errors: dict[str, Counter[str]] = {shape.name: Counter() for shape in SHAPES}
    with processes() as procs:
        upstream, _ = start_backend(procs)
        for round_ in range(args.rounds):
            shift = round_ % len(SHAPES)
            for shape in SHAPES[shift:] + SHAPES[:shift]:
                measure_one(procs, shape, upstream, round_, tables[shape.kind], errors[shape.name])
    for table in tables.values():
        table.notes.append(table.verdict())
    last = list(tables.values())[-1]
    last.notes += [
        METHOD.format(rounds=args.rounds),
        error_note({name: counts for name, counts in errors.items() if counts}),
    ]
    return publish("routes", list(tables.values()))
