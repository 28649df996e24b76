"""Ports and sockets on loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different free ports (each held while the next is picked)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def recv_all(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    """Everything the peer sends until it closes its side."""
    chunks = []
    size = 0
    while size < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def is_closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closed (EOF or reset) within timeout, with no data first."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def local_address() -> str | None:
    """An IPv4 address of this host that is not loopback (the one its default route leaves
    from), for a peer that loopback-only checks must refuse; None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent over UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING"}  # fmt: skip
"""/proc/net/tcp's `st` column (include/net/tcp_states.h)."""


@dataclass(frozen=True, slots=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str


def open_fds(pid: int) -> int:
    """How many file descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_sockets(pid: int) -> list[TcpSocket]:
    """The TCP sockets the process holds open (IPv4 and IPv6), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                if fields[9] in inodes:
                    found.append(_tcp_socket(fields))
    return found


def _tcp_socket(fields: list[str]) -> TcpSocket:
    local, remote, state = fields[1], fields[2], int(fields[3], 16)
    return TcpSocket(_port(local), _port(remote), TCP_STATES.get(state, str(state)))


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def connections_to(pid: int, port: int) -> int:
    """The process's established connections to `port` (its upstream connections there)."""
    return sum(1 for s in tcp_sockets(pid) if s.remote_port == port and s.state == "ESTABLISHED")


def connections_at(pid: int, port: int) -> int:
    """Connections a server in process `pid` has accepted on `port` and not closed."""
    return sum(1 for s in tcp_sockets(pid) if s.local_port == port and s.state != "LISTEN")


def close_wait(pid: int) -> list[TcpSocket]:
    """The process's sockets whose peer has closed and that it has not closed itself."""
    return [s for s in tcp_sockets(pid) if s.state == "CLOSE_WAIT"]


def wait_until(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still false after {timeout}s")
        time.sleep(0.05)
