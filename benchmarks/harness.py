"""Shared machinery for scenarios: packages, ports, processes, tables, RESULTS.md."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def ensure_commands(packages: dict[str, str]) -> None:
    """Install the Debian package of every missing command ({command: package})."""
    missing = sorted({pkg for cmd, pkg in packages.items() if shutil.which(cmd) is None})
    if not missing:
        return
    print(f"installing {' '.join(missing)} ...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_ready(admin_port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{admin_port}/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"mecha on admin port {admin_port} not ready after {timeout}s")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Processes:
    """Background processes of one scenario, all stopped when it ends."""

    workdir: Path
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self.running.append(process)
        return process

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    with tempfile.TemporaryDirectory(prefix="mecha-bench-") as workdir:
        group = Processes(Path(workdir))
        try:
            yield group
        finally:
            group.stop_all()


def mecha_command() -> list[str]:
    return [sys.executable, "-m", "proxy", "run", "-l", "warning", "-c"]


def module_env() -> dict[str, str]:
    """Environment for `python -m benchmarks.load...` from any working directory."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def run_json(module: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run `python -m module args` (a load generator) and parse the JSON it prints last."""
    argv = [sys.executable, "-m", module, *args]
    env = {**os.environ, **module_env()}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{module} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def metric_total(admin_port: int, name: str, **labels: str) -> float:
    """Sum of the samples `name` (e.g. "mecha_rpc_calls_total") on mecha's /metrics whose
    labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return float(sum(sample.value for family in text_string_to_metric_families(text)
                     for sample in family.samples if sample.name == name
                     and all(sample.labels.get(k) == v for k, v in labels.items())))  # fmt: skip


@dataclass
class Table:
    """One scenario's figures: rows are workloads, columns are systems.

    With an empty `unit` the row names carry the units (e.g. "latency p99 (ms)"); `formats`
    gives a row its own format spec (default ",.0f"), `label` names the first column.
    """

    title: str
    unit: str
    systems: list[str]
    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    label: str = "workload"
    formats: dict[str, str] = field(default_factory=dict)

    def add(self, workload: str, system: str, value: float) -> None:
        self.rows.setdefault(workload, {}).setdefault(system, []).append(value)

    def median(self, workload: str, system: str) -> float:
        values = self.rows.get(workload, {}).get(system)
        return statistics.median(values) if values else float("nan")

    def markdown(self, subject: str = "mecha") -> str:
        others = [s for s in self.systems if s != subject]
        header = [
            self.label,
            *[f"{s} ({self.unit})" if self.unit else s for s in self.systems],
            *[f"{subject} / {o}" for o in others],
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for workload in self.rows:
            figures = [self.median(workload, s) for s in self.systems]
            mine = self.median(workload, subject)
            ratios = [mine / theirs if (theirs := self.median(workload, o)) else math.nan
                      for o in others]  # fmt: skip
            spec = self.formats.get(workload, ",.0f")
            cells = [workload, *[format(v, spec) for v in figures], *[f"{r:.2f}x" for r in ratios]]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join([f"### {self.title}", "", *lines, "", "\n\n".join(self.notes)])


class Tally:
    """What benchmarks/load programs report besides their figures, over rounds: error kinds
    (summed), the first error text, CPU use of each process (median)."""

    def __init__(self) -> None:
        self.errors: dict[str, Counter[str]] = defaultdict(Counter)
        self.samples: dict[str, str] = {}
        self.cpu: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, system: str, result: dict[str, Any]) -> None:
        """`result`: the load program's JSON, with error_kinds, error_sample and cpu."""
        self.errors[system].update(result["error_kinds"])
        if result["error_sample"] and system not in self.samples:
            self.samples[system] = result["error_sample"]
        for name, percent in result["cpu"].items():
            self.cpu[system][name].append(percent)

    def error_note(self, clean: str, counted: str) -> str:
        """`clean` says what no error means; `counted` how errors were (not) counted."""
        seen = [f"{system}: " + ", ".join(f"{n:,} {kind}" for kind, n in counts.items())
                + (f" (first: `{self.samples[system]}`)" if system in self.samples else "")
                for system, counts in self.errors.items() if counts]  # fmt: skip
        if not seen:
            return f"Errors: none ({clean})."
        return f"ERRORS (summed over rounds; {counted}): " + "; ".join(seen) + "."

    def has_errors(self) -> bool:
        return any(self.errors.values())

    def cpu_note(self, runs: str = "") -> str:
        """`runs` names the runs, e.g. " of QoS 1"."""
        parts = [f"{system}: " + ", ".join(f"{name} {statistics.median(values):.0f}%"
                                           for name, values in names.items())
                 for system, names in self.cpu.items()]  # fmt: skip
        heading = (
            f"CPU busy over the measured windows{runs} (median, % of one core; load: the load "
            "generator, others: the rest of the host, other processes and kernel work not "
            "charged to one): "
        )
        return heading + "; ".join(parts)


def machine_line() -> str:
    cpus = os.cpu_count()
    return f"{platform.node()}, {cpus} cores, Python {platform.python_version()}"


def publish(scenario: str, tables: Sequence[Table], extra: str = "") -> str:
    """Print the tables and append them to RESULTS.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = "\n\n".join(t.markdown() for t in tables)
    text = f"## {scenario} — {stamp}\n\n{machine_line()}\n\n{body}\n{extra}\n"
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `python -m benchmarks`.\n\n")
    with RESULTS.open("a") as results:
        results.write(text + "\n")
    return text
