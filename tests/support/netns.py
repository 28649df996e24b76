"""Network namespaces for interception tests: two namespaces joined by a veth pair.

Everything created here is removed when the context ends, whatever happened inside:
processes started in a namespace are killed, then the namespaces are deleted (which takes
the veth pair and every iptables rule in them along).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

COMMAND_TIMEOUT = 20.0


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        self.processes: list[subprocess.Popen[bytes]] = []

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT, check: bool = True,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        done = subprocess.run(self.argv(argv), capture_output=True, timeout=timeout, input=input)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"in {self.name}: {' '.join(argv)} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace')}"
            )
        return done

    def start(
        self, argv: Sequence[str], stdout: IO[bytes] | int = subprocess.DEVNULL,
        stderr: IO[bytes] | int = subprocess.DEVNULL, cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        process = subprocess.Popen(self.argv(argv), stdout=stdout, stderr=stderr, cwd=cwd)
        self.processes.append(process)
        return process

    def wait_for_port(self, host: str, port: int, timeout: float = 15.0) -> None:
        """Poll from inside the namespace until something accepts on host:port."""
        probe = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), 0.5).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(["python3", "-c", probe], check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"nothing listens on {host}:{port} in {self.name} after {timeout}s")

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


def unsupported_reason() -> str | None:
    """Why namespaces + iptables nat cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (ip netns, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh --test installs it)"
    name = f"mecha-probe-{os.getpid()}"
    try:
        added = subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=10)
        if added.returncode != 0:
            return f"ip netns add is not allowed here: {added.stderr.decode().strip()}"
        nat = subprocess.run(
            ["ip", "netns", "exec", name, "iptables", "-t", "nat", "-N", "MECHA_PROBE"],
            capture_output=True, timeout=10,
        )  # fmt: skip
        if nat.returncode != 0:
            return f"iptables nat is not available: {nat.stderr.decode().strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return None


@contextlib.contextmanager
def veth_pair(
    prefix: str, left_addresses: Sequence[str], right_addresses: Sequence[str]
) -> Iterator[tuple[Netns, Netns]]:
    """Two namespaces with loopback up, joined by a veth pair carrying the given
    `address/prefixlen`s on each side."""
    tag = f"{os.getpid() % 100000}"
    left, right = Netns(f"{prefix}-a-{tag}"), Netns(f"{prefix}-b-{tag}")
    veth_left, veth_right = f"mva{tag}", f"mvb{tag}"
    created: list[Netns] = []
    try:
        for namespace in (left, right):
            subprocess.run(["ip", "netns", "add", namespace.name], check=True, timeout=10,
                           capture_output=True)  # fmt: skip
            created.append(namespace)
        _ip("link", "add", veth_left, "netns", left.name, "type", "veth",
            "peer", "name", veth_right, "netns", right.name)  # fmt: skip
        for namespace, device, addresses in ((left, veth_left, left_addresses),
                                             (right, veth_right, right_addresses)):  # fmt: skip
            namespace.run(["ip", "link", "set", "lo", "up"])
            for address in addresses:
                namespace.run(["ip", "addr", "add", address, "dev", device])
            namespace.run(["ip", "link", "set", device, "up"])
        yield left, right
    finally:
        for namespace in created:
            namespace.stop_processes()
        for namespace in created:
            subprocess.run(["ip", "netns", "del", namespace.name], capture_output=True,
                           timeout=10)  # fmt: skip


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)
