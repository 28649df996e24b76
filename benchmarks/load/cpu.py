"""CPU time of processes over a load generator's measured window, from /proc."""

from __future__ import annotations

import math
import os
import time

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (0 for this process's own pid too)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def host_seconds() -> float:
    """CPU seconds all cores of the host spent busy so far (from /proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / _TICK


class CpuWatch:
    """`start()` then `busy()`: percent of one core each process used in between.

    `watched` maps a name to a pid; this process itself is reported as "load", and
    "others" is what the rest of the host used (other work on the machine skews figures).
    """

    def __init__(self, watched: dict[str, int]) -> None:
        self.watched = watched
        self._wall = 0.0
        self._own = 0.0
        self._host = 0.0
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._own = time.process_time()
        self._host = host_seconds()
        self._start = {name: cpu_seconds(pid) for name, pid in self.watched.items()}

    def busy(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        busy = {"load": (time.process_time() - self._own) / wall * 100}
        for name, pid in self.watched.items():
            try:
                busy[name] = (cpu_seconds(pid) - self._start[name]) / wall * 100
            except OSError:  # it exited meanwhile
                busy[name] = float("nan")
        host = (host_seconds() - self._host) / wall * 100
        busy["others"] = max(0.0, host - sum(p for p in busy.values() if not math.isnan(p)))
        return {name: round(percent, 1) for name, percent in busy.items()}


def parse_watch(specs: list[str]) -> dict[str, int]:
    """["mecha=123", "backend=456"] -> {"mecha": 123, "backend": 456}."""
    watched = {}
    for spec in specs:
        name, _, pid = spec.partition("=")
        watched[name] = int(pid)
    return watched
