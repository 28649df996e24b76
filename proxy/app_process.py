"""`mecha run ... -- <command>`: the app as a child process, the way `dapr run` runs it.

The app starts once mecha's listeners are bound, with Dapr's variables in its environment
(DAPR_HTTP_PORT, DAPR_GRPC_PORT, APP_ID, APP_PORT, APP_PROTOCOL), in a session of its own so
that mecha decides what reaches it: SIGTERM and SIGINT are forwarded to its process group
(the third one as SIGKILL, for an app that does not stop), and SIGTERM reaches it if mecha
dies without stopping it.
Its output is passed through line by line, prefixed `== APP == ` as `dapr run` prefixes it.
When the app exits, mecha drains and exits with the app's status (128 + N for a signal N);
when mecha stops first (the shutdown API), the app is sent SIGTERM, then SIGKILL after the
drain timeout. Meanwhile the run is a member of the machine's registry (`mecha list`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from proxy import hot_restart
from proxy.server import Server
from runtime.local_registry import HEARTBEAT, Instance, Registry, RegistryError

log = logging.getLogger("mecha.app")

PREFIX = b"== APP == "
MAX_LINE = 64 * 1024
"""A longer line is passed on in pieces of this size, each prefixed."""
FORWARDED = (signal.SIGTERM, signal.SIGINT)
PATIENCE = 2
"""Signals passed on as they are; the next one is SIGKILL."""
OUTPUT_GRACE = 1.0
"""Seconds the output is still read after the app exits (a child it left may hold it)."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    app_id: str
    app_port: int | None
    app_protocol: str
    app_host: str
    command: tuple[str, ...]
    listeners: Mapping[str, str]
    """"http", "grpc", "internal" -> the name of the listener that serves it."""
    registry: str | None


def child_environment(environ: Mapping[str, str], info: RunInfo,
                      ports: Mapping[str, int]) -> dict[str, str]:  # fmt: skip
    """The app's environment: mecha's own, with Dapr's variables set as `dapr run` sets them."""
    env = dict(environ)
    env["APP_ID"] = info.app_id
    env["APP_PROTOCOL"] = info.app_protocol
    env.pop("APP_PORT", None)
    if info.app_port:
        env["APP_PORT"] = str(info.app_port)
    if info.app_host != "127.0.0.1":
        env["APP_CHANNEL_ADDRESS"] = info.app_host
    for api, variable in (("http", "DAPR_HTTP_PORT"), ("grpc", "DAPR_GRPC_PORT")):
        if api in ports:
            env[variable] = str(ports[api])
    return env


def exit_status(returncode: int) -> int:
    """The shell's convention: a process killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def prefixed_lines(pending: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """Whole lines of `pending + data`, each prefixed, and what is left of a line; a line
    past MAX_LINE is cut, so the buffer is bounded."""
    buffer = pending + data
    lines: list[bytes] = []
    start = 0
    while True:
        end = buffer.find(b"\n", start, start + MAX_LINE)
        if end < 0:
            if len(buffer) - start < MAX_LINE:
                return lines, buffer[start:]
            end = start + MAX_LINE - 1
            lines.append(PREFIX + buffer[start : end + 1] + b"\n")
        else:
            lines.append(PREFIX + buffer[start : end + 1])
        start = end + 1


async def serve_with_app(server: Server, handover: Path | None,
                         takeover: hot_restart.Takeover | None, info: RunInfo) -> int:  # fmt: skip
    """Run the server and the app; mecha's exit status (the app's, when there is one)."""
    serving = asyncio.create_task(hot_restart.serve(server, handover, takeover), name="server")
    live = asyncio.create_task(server.live.wait(), name="server-live")
    await asyncio.wait({serving, live}, return_when=asyncio.FIRST_COMPLETED)
    live.cancel()
    if not server.live.is_set():
        await serving  # start-up failed: its exception says why
        return 1
    ports = _bound_ports(server, info)
    member = Membership(info, ports, server)
    await member.join()
    try:
        if not info.command:
            await serving
            return 0
        return await _run_app(server, serving, info, ports)
    finally:
        await member.leave()


async def _run_app(server: Server, serving: asyncio.Task[None], info: RunInfo,
                   ports: Mapping[str, int]) -> int:  # fmt: skip
    env = child_environment(os.environ, info, ports)
    try:
        process = await asyncio.create_subprocess_exec(
            *info.command, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=_die_with_mecha,
        )  # fmt: skip
    except OSError as error:
        print(f"mecha: the app cannot start: {shlex.join(info.command)}: {error}",
              file=sys.stderr)  # fmt: skip
        server.request_stop("app failed to start")
        await serving
        return 127 if isinstance(error, FileNotFoundError) else 126
    log.info("app started: %s (pid %d)", shlex.join(info.command), process.pid)
    _forward_signals(process)
    assert process.stdout is not None and process.stderr is not None
    out = sys.stdout.buffer
    pumps = [asyncio.create_task(_pump(stream, out), name="app-output")
             for stream in (process.stdout, process.stderr)]  # fmt: skip
    exited = asyncio.create_task(process.wait(), name="app")
    await asyncio.wait({exited, serving}, return_when=asyncio.FIRST_COMPLETED)
    if not exited.done():
        await _terminate(process, server.config.drain_timeout)
    returncode = await exited
    # A process the app left behind may hold its output open: what it writes after a moment
    # is not waited for.
    _, late = await asyncio.wait(pumps, timeout=OUTPUT_GRACE)
    for pump in late:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    status = exit_status(returncode)
    print(f"mecha: the app exited with status {status}", file=sys.stderr)
    server.request_stop("app exited")
    await serving
    return status


def _die_with_mecha() -> None:
    """In the child: SIGTERM when mecha dies without stopping the app (killed, crashed), so
    no app outlives its sidecar unseen (Linux prctl; elsewhere, nothing)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _forward_signals(process: asyncio.subprocess.Process) -> None:
    """Replaces the server's handlers: the app decides when to stop, then mecha drains."""
    loop = asyncio.get_running_loop()
    received = 0

    def forward(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        if received > PATIENCE:  # an app that does not stop: Ctrl-C once more ends it
            sig = signal.SIGKILL
        log.info("%s: passed on to the app", sig.name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    for sig in FORWARDED:
        loop.add_signal_handler(sig, forward, sig)


async def _terminate(process: asyncio.subprocess.Process, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


async def _pump(stream: asyncio.StreamReader, out: BinaryIO) -> None:
    """The app's output to mecha's, prefixed; read to the end even if mecha's stdout is gone,
    so that the app never blocks on a full pipe."""
    pending = b""
    while data := await stream.read(MAX_LINE):
        lines, pending = prefixed_lines(pending, data)
        if lines:
            _write(out, b"".join(lines))
    if pending:
        _write(out, PREFIX + pending + b"\n")


def _write(out: BinaryIO, data: bytes) -> None:
    try:
        out.write(data)
        out.flush()
    except (OSError, ValueError):  # a closed or broken stdout: the output is dropped
        pass


def _bound_ports(server: Server, info: RunInfo) -> dict[str, int]:
    by_name = {listener.name: listener for listener in server.listeners}
    ports = {}
    for api, name in info.listeners.items():
        listener = by_name.get(name)
        if listener is not None and listener.bound is not None:
            ports[api] = listener.bound.port
    return ports


class Membership:
    """This run's row in the machine's registry, refreshed while it runs."""

    def __init__(self, info: RunInfo, ports: Mapping[str, int], server: Server) -> None:
        self.registry = Registry(info.registry) if info.registry else None
        admin = server.admin.bound if server.admin is not None else None
        internal = ports.get("internal")
        self.instance = Instance(
            run_id=uuid.uuid4().hex, app_id=info.app_id, pid=os.getpid(),
            internal_address=f"127.0.0.1:{internal}" if internal else "",
            http_port=ports.get("http", 0), grpc_port=ports.get("grpc", 0),
            app_port=info.app_port or 0, admin=str(admin or ""),
            command=shlex.join(info.command), started=time.time(), updated=time.time(),
        )  # fmt: skip
        self._beat: asyncio.Task[None] | None = None

    async def join(self) -> None:
        if self.registry is None:
            return
        try:
            await asyncio.to_thread(self.registry.join, self.instance)
        except RegistryError as error:
            log.warning("not listed (other apps cannot call this one): %s", error)
            self.registry = None
            return
        self._beat = asyncio.create_task(self._heartbeat(), name="registry-heartbeat")

    async def _heartbeat(self) -> None:
        assert self.registry is not None
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                # Written whole: a row taken for dead (a long pause) comes back.
                beat = replace(self.instance, updated=time.time())
                await asyncio.to_thread(self.registry.join, beat)
            except RegistryError as error:
                log.warning("%s", error)

    async def leave(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self.registry is not None:
            with contextlib.suppress(RegistryError):
                await asyncio.to_thread(self.registry.leave, self.instance.run_id)
