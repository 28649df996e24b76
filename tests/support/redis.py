"""A private redis-server on a free port, stopped when the test ends."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, wait_for_port


@contextmanager
def redis_server(workdir: Path, *extra: str, port: int | None = None) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed; scripts/setup.sh --test installs it")
    port = port or free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), *extra]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def free_cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too."""
    import socket

    while True:
        port = free_port()
        if port >= 55000:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class ClusterNodes:
    def __init__(self, ports: list[int], processes: list[subprocess.Popen[bytes]]) -> None:
        self.ports = ports
        self.processes = dict(zip(ports, processes, strict=True))

    def kill(self, port: int) -> None:
        process = self.processes[port]
        process.kill()
        process.wait(timeout=10)

    def masters(self) -> list[int]:
        return [p for p in self.ports if self.processes[p].poll() is None and _role(p) == "master"]


def _role(port: int) -> str:
    info = subprocess.run(["redis-cli", "-p", str(port), "role"], capture_output=True, text=True,
                          timeout=5).stdout  # fmt: skip
    return info.split("\n", 1)[0].strip()


@contextmanager
def redis_cluster(workdir: Path, masters: int = 3, replicas: int = 1) -> Iterator[ClusterNodes]:
    """A real Redis Cluster of masters * (1 + replicas) nodes made by redis-cli --cluster create."""
    import time

    ports = [free_cluster_port() for _ in range(masters * (1 + replicas))]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = workdir / f"node-{port}"
            node_dir.mkdir()
            processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(node_dir), "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                 "--logfile", str(node_dir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        for port in ports:
            wait_for_port(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        # Ready means every slot served and every replica synced (it can then take over).
        while not all(_cluster_ok(port) and _replicas_online(port, replicas) for port in ports):
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster never got ready")
            time.sleep(0.2)
        yield ClusterNodes(ports, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _replicas_online(port: int, replicas: int) -> bool:
    info = subprocess.run(["redis-cli", "-p", str(port), "info", "replication"],
                          capture_output=True, text=True, timeout=5).stdout  # fmt: skip
    if "role:master" not in info:
        return "master_link_status:up" in info
    return info.count("state=online") >= replicas


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"],
                          capture_output=True, text=True, timeout=5).stdout  # fmt: skip
    return "cluster_state:ok" in info
