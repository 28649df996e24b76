"""Hot restart: a new mecha process takes over the listening sockets of the running one.

The running process serves a unix socket (the handover socket). A new process started with
`--hot-restart-from PATH` connects, asks for the listening sockets and receives them with
SCM_RIGHTS; it serves on those it has a listener for (binding none of them), then asks the
old process to drain and exit. Until then both accept from the same kernel queue, so no
connection is refused in between (Envoy's hot restart, without the shared memory).

Requests and replies are one JSON object per line:
  {"op": "sockets"} -> {"sockets": [{"name", "address", "bound"}, ...]} with one fd each
  {"op": "drain"}   -> {"draining": true}; the old process stops accepting and drains
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.admin import AdminServer
from proxy.config.model import Config
from proxy.config.units import Address
from proxy.server import Server

log = logging.getLogger("mecha.hot_restart")

MAX_SOCKETS = 250
MAX_LINE = 64 * 1024
HANDOVER_TIMEOUT = 10.0
ADMIN_SOCKET = "@admin"
HEALTH_SOCKET = "@health"
"""The admin's and the health listener's sockets, in the list of handed-over sockets."""


class HotRestartError(Exception):
    """The handover could not happen; the message is one line for the operator."""


def default_socket_path(config: Config) -> Path | None:
    """The handover socket of an instance with a fixed admin port; None without one."""
    if config.admin is None or config.admin.address.port == 0:
        return None
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(
        tempfile.gettempdir(), f"mecha-{os.getuid()}"
    )
    return Path(base) / "mecha" / f"hot-restart-{config.admin.address.port}.sock"


# -- the running process: hands its sockets over ----------------------------------------------


class HandoverServer:
    def __init__(self, server: Server, path: Path) -> None:
        self.server = server
        self.path = path
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Serve handovers; a path that cannot be used is logged, and mecha runs without."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _is_served(self.path):
                log.warning("hot restart socket %s is in use: not serving handovers", self.path)
                return
            sock = self._listen()
        except OSError as exc:
            log.warning("hot restart socket %s: %s: not serving handovers", self.path, exc)
            return
        self._sock, self._inode = sock, self.path.stat().st_ino
        loop = asyncio.get_running_loop()
        self._acceptor = loop.create_task(self._accept(sock), name="hot-restart-accept")
        log.info("hot restart: handing sockets over on %s", self.path)

    def _listen(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)  # whoever connects can take the listeners
            sock.listen(4)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        self._close_socket()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _close_socket(self) -> None:
        if self._acceptor is not None:
            self._acceptor.cancel()  # before the close, so the loop forgets the fd first
            self._acceptor = None
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(sock)
            self._spawn(self._serve(conn), "hot-restart-peer")

    async def _serve(self, conn: socket.socket) -> None:
        with conn:
            if not _same_user(conn):
                log.warning("hot restart: refused a peer of another user")
                return
            try:
                async for request in _lines(conn):
                    if not await self._answer(conn, request):
                        return
            except (OSError, ValueError) as exc:
                log.warning("hot restart: peer failed: %s", exc)

    async def _answer(self, conn: socket.socket, request: dict[str, Any]) -> bool:
        op = request.get("op")
        if op == "sockets":
            entries, fds = self._listening()
            log.info("hot restart: handing over %d listening sockets", len(fds))
            payload = json.dumps({"sockets": entries}).encode() + b"\n"
            await _send(conn, payload, fds)
            return True
        if op == "drain":
            log.info("hot restart: the new process is live; draining")
            self._close_socket()
            for endpoint in (self.server.admin, self.server.health):
                if endpoint is not None:
                    await endpoint.stop()
            await _send(conn, b'{"draining": true}\n')
            self.server.request_stop("hot restart")
            return False
        await _send(conn, json.dumps({"error": f"unknown op {op!r}"}).encode() + b"\n")
        return False

    def _listening(self) -> tuple[list[dict[str, str]], list[int]]:
        entries: list[dict[str, str]] = []
        fds: list[int] = []

        def add(name: str, address: Address, sock: socket.socket | None) -> None:
            if sock is not None and sock.fileno() >= 0:
                bound = Address(*sock.getsockname()[:2])
                entries.append({"name": name, "address": str(address), "bound": str(bound)})
                fds.append(sock.fileno())

        for name, endpoint in ((ADMIN_SOCKET, self.server.admin),
                               (HEALTH_SOCKET, self.server.health)):  # fmt: skip
            if endpoint is not None:
                add(name, endpoint.address, endpoint.socket)
        for listener in self.server.listeners:
            add(listener.name, listener.config.address, listener.socket)
        return entries[:MAX_SOCKETS], fds[:MAX_SOCKETS]


def _same_user(conn: socket.socket) -> bool:
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid in (os.getuid(), 0)


def _is_served(path: Path) -> bool:
    """True when a live process accepts on the unix socket at `path`."""
    try:
        if not stat.S_ISSOCK(path.stat().st_mode):
            return False
    except FileNotFoundError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _lines(conn: socket.socket) -> Any:
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            return
        buffer += chunk
        if len(buffer) > MAX_LINE:
            raise ValueError("request line too long")
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request is not an object")
            yield request


async def _send(conn: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    loop = asyncio.get_running_loop()
    if fds:
        # The fds ride on the first byte; the rest of the line follows as plain data.
        socket.send_fds(conn, [payload[:1]], fds)
        payload = payload[1:]
    await loop.sock_sendall(conn, payload)


# -- the new process: takes the sockets over --------------------------------------------------


@dataclass(slots=True)
class Handed:
    name: str
    address: str
    bound: Address
    sock: socket.socket


class Takeover:
    """The new process's side: the received sockets, then the request to drain."""

    def __init__(self, conn: socket.socket, handed: list[Handed]) -> None:
        self.conn = conn
        self.handed = handed
        self._kept: dict[str, socket.socket] = {}
        """The admin's and health listener's sockets, taken once this process is live."""

    @classmethod
    def connect(cls, path: Path, timeout: float = HANDOVER_TIMEOUT) -> Takeover:
        """Ask the running process at `path` for its listening sockets (before the loop)."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
            conn.sendall(b'{"op": "sockets"}\n')
            handed = _receive_sockets(conn)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            conn.close()
            raise HotRestartError(f"cannot take over from {path}: {exc}") from None
        return cls(conn, handed)

    def adopt(self, server: Server) -> None:
        """Give `server` the sockets it has listeners for; the admin's and the health
        listener's are kept for later."""
        config = server.config
        endpoints = {ADMIN_SOCKET: config.admin, HEALTH_SOCKET: config.health}
        for handed in self.handed:
            if handed.name in endpoints:
                wanted = endpoints[handed.name]
                if wanted is not None and same_address(wanted.address, handed):
                    self._kept[handed.name] = handed.sock
                continue
            for listener in config.listeners:
                if listener.name == handed.name and same_address(listener.address, handed):
                    server.inherited[handed.name] = handed.sock
        taken = len(server.inherited) + len(self._kept)
        log.info("hot restart: serving on %d of %d handed-over sockets", taken, len(self.handed))

    async def finish(
        self, server: Server, admin: AdminServer | None, health: AdminServer | None
    ) -> None:
        """`server` is live: take the admin's and health listener's sockets, then tell the
        old process to drain."""
        if admin is not None:
            server.admin = admin
            await admin.start(self._kept.pop(ADMIN_SOCKET, None))
        if health is not None:
            server.health = health
            await health.start(self._kept.pop(HEALTH_SOCKET, None))
        await self._drain_old()
        self.close(server)

    async def _drain_old(self) -> None:
        loop = asyncio.get_running_loop()
        self.conn.setblocking(False)
        try:
            await loop.sock_sendall(self.conn, b'{"op": "drain"}\n')
            async with asyncio.timeout(HANDOVER_TIMEOUT):
                answer = await loop.sock_recv(self.conn, 4096)
        except (OSError, TimeoutError) as exc:
            log.warning("hot restart: the old process did not confirm draining: %r", exc)
            return
        log.info("hot restart: old process answered %s", answer.decode(errors="replace").strip())

    def close(self, server: Server) -> None:
        """Close the connection and every received socket no listener took (a listener
        owns the socket it serves on, and closes it when it stops)."""
        self.conn.close()
        used = {id(listener.socket) for listener in server.listeners}
        used |= {id(sock) for sock in server.inherited.values()}
        used |= {id(sock) for sock in self._kept.values()}
        for handed in self.handed:
            if id(handed.sock) not in used:
                handed.sock.close()
        server.inherited.clear()
        for sock in self._kept.values():
            sock.close()
        self._kept.clear()
        self.handed = []


def _receive_sockets(conn: socket.socket) -> list[Handed]:
    data, fds, _, _ = socket.recv_fds(conn, MAX_LINE, MAX_SOCKETS)
    sockets = [socket.socket(fileno=fd) for fd in fds]
    while not data.endswith(b"\n"):
        chunk = conn.recv(MAX_LINE)
        if not chunk or len(data) > MAX_LINE:
            for sock in sockets:
                sock.close()
            raise ValueError("truncated answer")
        data += chunk
    entries = json.loads(data)["sockets"]
    if len(entries) != len(sockets):
        for sock in sockets:
            sock.close()
        raise ValueError(f"{len(entries)} sockets described, {len(sockets)} received")
    handed = []
    for entry, sock in zip(entries, sockets, strict=True):
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        handed.append(Handed(entry["name"], entry["address"], Address(host, port), sock))
    return handed


def same_address(wanted: Address, handed: Handed) -> bool:
    """The configured address, or an ephemeral port (0) on the same host."""
    if str(wanted) in (handed.address, str(handed.bound)):
        return True
    return wanted.port == 0 and wanted.host == handed.bound.host


async def serve(
    server: Server, handover_path: Path | None, takeover: Takeover | None = None
) -> None:
    """Run `server`; once live, finish a takeover and hand sockets over at `handover_path`.

    The admin's and health listener's sockets of a takeover are taken only when the new
    process is live, so that probes keep reaching a ready process while it warms up.
    """
    admin, health = server.admin, server.health
    if takeover is not None:
        takeover.adopt(server)
        server.admin = server.health = None
    serving = asyncio.create_task(server.run(), name="server")
    live = asyncio.create_task(server.live.wait(), name="server-live")
    handover = HandoverServer(server, handover_path) if handover_path else None
    try:
        await asyncio.wait({serving, live}, return_when=asyncio.FIRST_COMPLETED)
        if server.live.is_set():
            if takeover is not None:
                await takeover.finish(server, admin, health)
            if handover is not None:
                await handover.start()
        await serving
    finally:
        live.cancel()
        if takeover is not None:
            takeover.close(server)
        if handover is not None:
            await handover.stop()
