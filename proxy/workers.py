"""`mecha run --workers N`: N worker processes under a small supervisor.

Each worker is a whole mecha (its own event loop, clusters, pools) and binds every listener
with SO_REUSEPORT, so the kernel spreads new connections across them. Ephemeral ports
(`:0`) are chosen once by the supervisor, which holds them bound (not listening) so that a
restarted worker gets the same port. The supervisor forwards SIGTERM, SIGINT and SIGHUP,
restarts a worker that dies (with backoff) and exits when all have drained.

Admin: the supervisor alone serves the configured admin address (and the health listener).
Each worker answers on a private unix socket; /metrics sums the workers' expositions, /ready
is 200 when every worker is, and the other views are worker 0's.

The runtime (components, deliveries, input bindings) and every listener that carries
`runtime_api` or `runtime_grpc` live in worker 0 only: in-memory state, pub/sub, locks and
sequencers stay one consistent store instead of one per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvloop
from prometheus_client.parser import text_string_to_metric_families

from proxy.admin import AdminServer, AdminViews, Response, View, admin_servers
from proxy.config.model import Config, ListenerConfig
from proxy.config.parse import load_config
from proxy.config.units import Address
from proxy.listener import BindError
from proxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from proxy.metrics_merge import merge
from proxy.server import Server

log = logging.getLogger("mecha.workers")

RUNTIME_FILTERS = frozenset({"runtime_api", "runtime_grpc"})
STARTUP_TIMEOUT = 30.0
FETCH_TIMEOUT = 2.0
RELOAD_TIMEOUT = 30.0
"""A reload may wait for components to start."""
BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER = 0.5, 30.0, 10.0
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


# -- the worker's side ------------------------------------------------------------------------


def carries_runtime(listener: ListenerConfig) -> bool:
    """True when a chain serves the runtime API (as a network or an HTTP filter)."""
    for chain in listener.filter_chains:
        for entry in chain.filters:
            http_filters = getattr(entry.config, "http_filters", ())
            names = {entry.name, *(getattr(f, "name", "") for f in http_filters)}
            if names & RUNTIME_FILTERS:
                return True
    return False


def worker_config(config: Config, index: int, ports: list[str]) -> Config:
    """Worker `index`'s share of `config`: reuse_port listeners on the supervisor's ports,
    no admin or health listener of its own, and the runtime only in worker 0."""
    assigned = {name: int(port) for name, _, port in (entry.rpartition("=") for entry in ports)}
    listeners = []
    for listener in config.listeners:
        if index != 0 and carries_runtime(listener):
            continue
        address = listener.address
        if listener.name in assigned:
            address = Address(address.host, assigned[listener.name])
        listeners.append(dataclasses.replace(listener, address=address, reuse_port=True))
    runtime = config.runtime if index == 0 else None
    return dataclasses.replace(config, listeners=tuple(listeners), admin=None, health=None,
                               runtime=runtime)  # fmt: skip


async def serve_worker(
    server: Server, admin_path: str | None, index: int, ports: list[str]
) -> None:
    """Run one worker, with its private admin on `admin_path` for the supervisor."""
    _die_with_parent()
    # A reload reads the file again: it gets the same share (ports, runtime pinning).
    server.reloader.load = lambda path: worker_config(load_config(path), index, ports)
    private = AdminServer(Address("127.0.0.1", 0), AdminViews(server))
    if admin_path:
        await private.start_unix(admin_path)
    try:
        await server.run()
    finally:
        await private.stop()


def _die_with_parent() -> None:
    """Drain on SIGTERM if the supervisor dies without stopping us (Linux prctl)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# -- the supervisor ---------------------------------------------------------------------------


def supervise(path: Path, config: Config, args: argparse.Namespace) -> int:
    if args.workers < 1:
        print("mecha: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.hot_restart_from is not None:
        print("mecha: --hot-restart-from does not combine with --workers", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mecha-workers-"))
    reserved: list[socket.socket] = []
    try:
        ports = _reserve_ports(config, reserved)
        supervisor = Supervisor(config, _worker_argv(path, args, ports), args.workers, workdir)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(supervisor.run())
    except BindError as error:
        print(f"mecha: {error}", file=sys.stderr)
        return 1
    finally:
        for sock in reserved:
            sock.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _reserve_ports(config: Config, reserved: list[socket.socket]) -> list[str]:
    """Pick the ephemeral ports once; keep them bound (never listening, so the kernel
    queues no connection on them) so that a restarted worker gets the same port."""
    ports = []
    for listener in config.listeners:
        if listener.address.port == 0:
            sock = _bind_only(listener.address, listener.name)
            reserved.append(sock)
            ports.append(f"{listener.name}={sock.getsockname()[1]}")
    return ports


def _bind_only(address: Address, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, 0))
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot reserve a port on {address} for {name!r}: {exc}") from None
    return sock


def _worker_argv(path: Path, args: argparse.Namespace, ports: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "proxy", "run", "-c", str(path), "-l", args.log_level]
    for entry in ports:
        argv += ["--worker-port", entry]
    return argv


@dataclasses.dataclass(slots=True)
class Worker:
    index: int
    admin_path: str
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    ready_once: bool = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    def __init__(self, config: Config, argv: list[str], count: int, workdir: Path) -> None:
        self.config = config
        self.argv = argv
        self.workers = [Worker(i, str(workdir / f"worker-{i}.sock")) for i in range(count)]
        self.stopping = asyncio.Event()
        self.failed = False
        views = SupervisorViews(self)
        self.admin, self.health = admin_servers(config, views, views.ready)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            for endpoint in (self.admin, self.health):
                if endpoint is not None:
                    await endpoint.start()
        except BindError:
            await self._stop_endpoints()
            raise
        keepers = [
            loop.create_task(self._keep(worker), name=f"worker-{worker.index}")
            for worker in self.workers
        ]
        try:
            if not await self._started():
                self.failed = True
                self._stop(signal.SIGTERM)
            await self.stopping.wait()
            codes = await asyncio.gather(*keepers)
        finally:
            await self._stop_endpoints()
        return 1 if self.failed or any(codes) else 0

    async def _stop_endpoints(self) -> None:
        for endpoint in (self.admin, self.health):
            if endpoint is not None:
                await endpoint.stop()

    async def _started(self) -> bool:
        """Wait until every worker is ready; False when one dies first."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and not self.stopping.is_set():
            if any(w.process is not None and not w.alive for w in self.workers):
                log.error("a worker exited while starting; stopping")
                return False
            if await self.all_ready():
                log.info("%d workers live", len(self.workers))
                return True
            await asyncio.sleep(0.05)
        if not self.stopping.is_set():
            log.error("workers not ready after %.0fs; stopping", STARTUP_TIMEOUT)
        return self.stopping.is_set()

    async def all_ready(self) -> bool:
        states = await asyncio.gather(*(self.fetch(w, "/ready") for w in self.workers))
        ready = [status == 200 for status, _ in states]
        for worker, ok in zip(self.workers, ready, strict=True):
            worker.ready_once |= ok
        return all(ready)

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            log.info("SIGHUP: forwarding to the workers")
            self._forward(sig)
            return
        log.info("%s: stopping the workers", sig.name)
        self._stop(sig)

    def _stop(self, sig: signal.Signals) -> None:
        self.stopping.set()
        self._forward(sig)

    def _forward(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                worker.process.send_signal(sig)

    async def _keep(self, worker: Worker) -> int:
        """Run one worker slot until stopping; restart it when it dies, with backoff."""
        backoff = BACKOFF_FIRST
        while True:
            code = await self._run_once(worker)
            if self.stopping.is_set() or not worker.ready_once:
                return code
            lived = time.monotonic() - worker.started_at
            backoff = BACKOFF_FIRST if lived > STABLE_AFTER else min(backoff * 2, BACKOFF_MAX)
            log.warning("worker %d exited with %s after %.1fs; restarting in %.1fs",
                        worker.index, code, lived, backoff)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self.stopping.wait()
            if self.stopping.is_set():
                return 0
            worker.restarts += 1

    async def _run_once(self, worker: Worker) -> int:
        argv = [*self.argv, "--worker", str(worker.index), "--worker-admin", worker.admin_path]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(worker.admin_path)
        worker.process = await asyncio.create_subprocess_exec(*argv)
        worker.started_at = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)
        code = await worker.process.wait()
        if code < 0 and self.stopping.is_set():
            return 0  # forwarded SIGINT/SIGTERM before the worker had installed handlers
        return code

    async def fetch(
        self, worker: Worker, path: str, method: str = "GET", within: float = FETCH_TIMEOUT
    ) -> tuple[int, bytes]:
        """Ask one worker's private admin; (0, b"") when it does not answer."""
        if not worker.alive:
            return 0, b""
        try:
            async with asyncio.timeout(within):
                return await _ask_unix(worker.admin_path, method, path)
        except (OSError, TimeoutError, ValueError):
            return 0, b""


def _accepted(exposition: bytes) -> int:
    """Connections one worker accepted, over all its listeners."""
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(exposition.decode())
        if family.name == "mecha_listener_downstream_cx"
        for sample in family.samples
        if sample.name == "mecha_listener_downstream_cx_total"
    )


async def _ask_unix(socket_path: str, method: str, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    request = f"{method} {path} HTTP/1.1\r\nhost: worker\r\ncontent-length: 0\r\n"
    try:
        writer.write(f"{request}connection: close\r\n\r\n".encode())
        answer = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()


class SupervisorViews:
    """The admin endpoint of a supervisor: merged or worker 0's views."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.routes: dict[str, tuple[str, View]] = {
            "/": ("this list", self.index),
            "/ready": ("200 when every worker is serving", self.ready),
            "/metrics": ("Prometheus metrics, summed across workers", self.metrics),
            "/workers": ("worker processes: pid, restarts, connections", self.workers),
            "/reload": ("POST: every worker reloads the config file now", self.reload),
        }
        for path in ("/config_dump", "/clusters", "/listeners"):
            self.routes[path] = (f"{path[1:]} of worker 0", self._from_worker_zero(path))

    def index(self, query: dict[str, list[str]]) -> Response:
        lines = [f"{path:14} {text}" for path, (text, _) in self.routes.items()]
        return Response(200, ("\n".join(lines) + "\n").encode())

    async def ready(self, query: dict[str, list[str]]) -> Response:
        if self.supervisor.stopping.is_set():
            return Response(503, b"DRAINING\n")
        if await self.supervisor.all_ready():
            return Response(200, b"LIVE\n")
        return Response(503, b"NOT READY\n")

    async def metrics(self, query: dict[str, list[str]]) -> Response:
        workers = self.supervisor.workers
        answers = await asyncio.gather(*(self.supervisor.fetch(w, "/metrics") for w in workers))
        texts = [
            (str(worker.index), body.decode())
            for worker, (status, body) in zip(workers, answers, strict=True)
            if status == 200
        ]
        return Response(200, merge(texts), METRICS_CONTENT_TYPE)

    async def workers(self, query: dict[str, list[str]]) -> Response:
        workers = self.supervisor.workers
        answers = await asyncio.gather(*(self.supervisor.fetch(w, "/metrics") for w in workers))
        return Response.json([
            {"index": w.index, "pid": w.process.pid if w.process else None, "alive": w.alive,
             "restarts": w.restarts, "downstream_cx": _accepted(body) if status == 200 else None}
            for w, (status, body) in zip(workers, answers, strict=True)
        ])  # fmt: skip

    async def reload(self, query: dict[str, list[str]]) -> Response:
        """Each worker's outcome; the status is the worst of theirs (503: one did not answer)."""
        workers = self.supervisor.workers
        answers = await asyncio.gather(
            *(self.supervisor.fetch(w, "/reload", "POST", RELOAD_TIMEOUT) for w in workers)
        )
        outcomes = [
            {"worker": w.index, "status": status or None, "outcome": _json_or_text(body)}
            for w, (status, body) in zip(workers, answers, strict=True)
        ]
        worst = max((status or 503 for status, _ in answers), default=503)
        return Response.json(outcomes, worst)

    def _from_worker_zero(self, path: str) -> View:
        async def view(query: dict[str, list[str]]) -> Response:
            target = f"{path}?{urlencode(query, doseq=True)}" if query else path
            status, body = await self.supervisor.fetch(self.supervisor.workers[0], target)
            if status == 0:
                return Response(503, b"worker 0 is not answering\n")
            kind = "application/json" if body.lstrip().startswith((b"{", b"[")) else "text/plain"
            return Response(status, body, kind)

        return view
