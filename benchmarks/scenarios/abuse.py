"""abuse: a bystander's requests/s and latency through mecha with an abusive peer next to
it and without: slowloris (connections trickling a request head a byte at a time) and idle
connections that fill the listener's max_connections."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from benchmarks.harness import (
    Processes,
    Table,
    ensure_commands,
    free_port,
    mecha_command,
    module_env,
    processes,
    publish,
    wait_for_ready,
)
from benchmarks.http_load import LOAD_COMMANDS, wrk
from benchmarks.nginx_tools import NGINX_COMMANDS, start_backend
from benchmarks.scenarios.http import error_note, record, rotated

SECONDS = 5
BYSTANDERS = 10
SETTLE = 2.0
"""Seconds the abuser has before the bystander starts (to open its connections)."""
WITH, QUIET = "with the abuser", "quiet"


@dataclass(frozen=True)
class Case:
    name: str
    listener: dict[str, Any]
    manager: dict[str, Any]
    abuser: list[str]
    bystander_headers: dict[str, str] = field(default_factory=dict)
    text: str = ""


CASES = [
    Case("slowloris", {}, {"request_headers_timeout": "3s"},
         ["slowloris", "--connections", "500", "--every", "1"],
         text="500 connections each send a request head one byte a second and never finish it "
              "(reopened when closed); mecha's `request_headers_timeout` is 3 s (10 s by "
              "default): each gets 408 and is closed. The bystander: wrk, keep-alive."),
    Case("idle connections", {"max_connections": 200}, {},
         ["idle", "--connections", "200"],
         {"Connection": "close"},
         text="The listener's `max_connections` is 200; the abuser holds 200 kept-alive "
              "connections idle after one request each (reopened when closed). The bystander: "
              "wrk with `Connection: close`, so every request needs a new connection, which "
              "mecha makes room for by closing the oldest idle one."),
]  # fmt: skip


def config(case: Case, port: int, admin: int, upstream: int) -> dict[str, Any]:
    manager = {"access_log": "off", **case.manager, "route_config": {"virtual_hosts": [
        {"name": "all", "domains": ["*"],
         "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]}}  # fmt: skip
    return {
        "admin": {"address": f"127.0.0.1:{admin}"},
        "listeners": [{"name": "http", "address": f"127.0.0.1:{port}", **case.listener,
                       "filters": [{"name": "http", "config": manager}]}],
        "clusters": [{"name": "upstream", "connect_timeout": "2s",
                      "endpoints": [f"127.0.0.1:{upstream}"]}],
    }  # fmt: skip


def start_abuser(case: Case, port: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "benchmarks.load.abuser", *case.abuser, "--port", str(port),
            "--seconds", str(SETTLE + SECONDS + 1)]  # fmt: skip
    env = {**os.environ, **module_env()}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)


@dataclass
class Results:
    table: Table
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    abuser: list[dict[str, Any]] = field(default_factory=list)
    """What the abuser reported, one entry per run."""


class Bystander(Table):
    """Columns: with the abuser, quiet; the ratio is the first over the second."""

    def markdown(self, subject: str = WITH) -> str:
        return super().markdown(subject)


def measure(procs: Processes, case: Case, condition: str, upstream: int, round_: int,
            results: Results) -> None:  # fmt: skip
    port, admin = free_port(), free_port()
    stem = f"mecha-{case.name.replace(' ', '-')}-{condition.replace(' ', '-')}-r{round_}"
    path = procs.write(f"{stem}.yaml", yaml.safe_dump(config(case, port, admin, upstream)))
    mecha = procs.start(stem, [*mecha_command(), str(path)])
    try:
        wait_for_ready(admin)
        abuser = start_abuser(case, port) if condition == WITH else None
        time.sleep(SETTLE if abuser is not None else 0)
        result = wrk(port, BYSTANDERS, SECONDS, headers=case.bystander_headers)
        record(results.table, condition, result, results.errors)
        if abuser is not None:
            out, _ = abuser.communicate(timeout=30)
            results.abuser.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        mecha.terminate()
        mecha.wait(timeout=10)


def abuser_note(seen: list[dict[str, Any]]) -> str:
    if not seen:
        return ""
    opened = sum(s["opened"] for s in seen) / len(seen)
    closed = sum(s["closed_by_server"] for s in seen) / len(seen)
    answers: Counter[str] = Counter()
    for s in seen:
        answers.update(s["answers"])
    codes = ", ".join(f"{code} x{n / len(seen):,.0f}" for code, n in sorted(answers.items()))
    return (f"The abuser, per run (mean): {opened:,.0f} connections opened, {closed:,.0f} closed "
            f"by mecha; answers: {codes or 'none'}.")  # fmt: skip


LATENCY_FORMATS = {f"latency {p} (ms)": ".2f" for p in ("p50", "p90", "p99")}
METHOD = (
    "Median of {rounds} interleaved rounds, a fresh mecha for each run. Backend: nginx, one "
    "worker, `return 200`. The abuser (benchmarks/load/abuser.py) starts {settle:.0f} s before "
    "the bystander and runs through its {seconds} s."
)


def run(args: argparse.Namespace) -> str:
    ensure_commands({**NGINX_COMMANDS, **LOAD_COMMANDS})
    tables = []
    with processes() as procs:
        upstream, _ = start_backend(procs)
        for case in CASES:
            title = f"{case.name}: wrk -t1 -c{BYSTANDERS} -d{SECONDS}s --latency, the bystander"
            results = Results(Bystander(title, "", [WITH, QUIET], label="bystander",
                                        formats=LATENCY_FORMATS))  # fmt: skip
            for round_ in range(args.rounds):
                for condition in rotated([WITH, QUIET], round_):
                    measure(procs, case, condition, upstream, round_, results)
            results.table.notes += [case.text, abuser_note(results.abuser),
                                    error_note(results.errors)]  # fmt: skip
            tables.append(results.table)
    tables[-1].notes.append(METHOD.format(rounds=args.rounds, settle=SETTLE, seconds=SECONDS))
    return publish("abuse", tables)
