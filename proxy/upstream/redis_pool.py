"""Pipelined Redis upstream connections: many clients' commands share a few connections.

Commands are queued per connection in send order and answered in that order (Redis
answers in order on a connection), so each reply goes to the request that sent the
matching command. Writes are gathered and flushed once per loop iteration: one syscall
carries many clients' commands. A connection that fails answers every command in flight
with an -ERR, and the pool refuses new commands for a short backoff instead of stalling
clients on a dead shard.

One client's command can make Redis close a shared connection: a length past the server's
own limits (`proto-max-bulk-len` below the proxy's `max_bulk`) is answered with
`-ERR Protocol error: ...`, and Redis closes the connection without running anything it
received after that command. So when a connection ends right after such a reply, the
commands still in flight were never run: they are sent again on a fresh connection (no
backoff: the server is fine), and the command that drew the error hears `refused` (its
client is closed, as Redis would have closed it). Only that client loses anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocols.redis.encode import encode_command, error_span
from protocols.redis.errors import RespError
from protocols.redis.limits import DEFAULT_LIMITS, RespLimits
from protocols.redis.replies import ReplyParser, reply_is_error
from proxy.upstream.connection import PipelinedConnection
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.pool import SharedPool

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.redis_pool")

BUFFER_LIMIT = 4 << 20


PROTOCOL_ERROR = b"-ERR Protocol error"
"""The reply after which Redis closes the connection, having run nothing sent after it."""


class Completion(Protocol):
    """Whoever sent a command: receives exactly one raw reply span for it."""

    def complete(self, reply: bytes) -> None: ...

    def refused(self) -> None:
        """Redis answered the command with a protocol error and closed the connection
        (called after `complete`)."""


@dataclass(frozen=True, slots=True)
class RedisPoolSettings:
    username: str | None = None
    password: str | None = None
    resp3: bool = False
    connections: int = 1
    timeout: float = 5.0
    """No reply progress for this long while commands are in flight: the connection is dead."""
    backoff: float = 1.0
    """After a failure, new commands are refused this long before reconnecting."""
    max_in_flight: int = 100_000
    limits: RespLimits = DEFAULT_LIMITS


class _Discard:
    """The answer to a command the proxy sent for itself (AUTH, HELLO, ASKING)."""

    __slots__ = ("connection", "what")

    def __init__(self, connection: RedisConnection, what: str) -> None:
        self.connection = connection
        self.what = what

    def complete(self, reply: bytes) -> None:
        if reply_is_error(reply):
            text = reply[1:].strip().decode("utf-8", "replace")
            log.error("redis %s: %s failed: %s", self.connection.endpoint.address, self.what, text)
            self.connection.fail(f"{self.what} failed: {text}")

    def refused(self) -> None:
        pass


class RedisPool(SharedPool["RedisConnection"]):
    """Connections to one endpoint, chosen round robin per command."""

    kind = "redis"

    def __init__(self, cluster: Cluster, endpoint: Endpoint, settings: RedisPoolSettings):
        super().__init__(cluster, endpoint, settings.connections)
        self.settings = settings
        self._refuse_until = 0.0
        self._refusal = b""
        self.consecutive_failures = 0
        """Connections that failed since one last connected (twemproxy's auto_eject_hosts)."""

    def send(self, command: bytes, request: Completion) -> None:
        if self._refuse_until:
            if asyncio.get_running_loop().time() < self._refuse_until:
                request.complete(self._refusal)
                return
            self._refuse_until = 0.0
        self.pick().send(command, request)

    def send_asking(self, command: bytes, request: Completion) -> None:
        """ASKING and the command back to back on one connection (Redis Cluster ASK)."""
        connection = self.pick()
        if not connection.failed:  # (a refused one answers the command with why)
            connection.send(encode_command((b"ASKING",)), _Discard(connection, "ASKING"))
        connection.send(command, request)

    def new_connection(self) -> RedisConnection:
        return RedisConnection(self)

    def connection_refused_one(self, connection: RedisConnection) -> None:
        """Redis closed `connection` over one command: it is up, so no backoff."""
        super().connection_failed(connection, "closed after a protocol error")

    def connection_failed(self, connection: RedisConnection, reason: str) -> None:
        """Refuse new commands for a short backoff instead of stalling clients on a dead shard."""
        super().connection_failed(connection, reason)
        if self.closed:
            return
        self.consecutive_failures += 1
        loop = asyncio.get_running_loop()
        self._refuse_until = loop.time() + self.settings.backoff
        self._refusal = error_span(f"upstream {self.endpoint.address} unavailable: {reason}")


class RedisConnection(PipelinedConnection):
    __slots__ = ("_handshake", "_parser", "_progress", "_refused", "_watchdog", "in_flight",
                 "pool")  # fmt: skip

    def __init__(self, pool: RedisPool) -> None:
        super().__init__(pool.cluster, pool.endpoint, BUFFER_LIMIT)
        self.pool = pool
        self.in_flight: deque[tuple[Completion, bytes]] = deque()
        """(who sent it, the command) in send order; the command, to send it again."""
        self._refused: Completion | None = None
        """The command Redis answered with a protocol error: it closes the connection next."""
        self._handshake: list[bytes] = self._handshake_commands(pool.settings)
        self._parser = ReplyParser(pool.settings.limits)
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    def _handshake_commands(self, settings: RedisPoolSettings) -> list[bytes]:
        commands: list[Sequence[bytes]] = []
        if settings.resp3:
            hello = [b"HELLO", b"3"]
            if settings.password:
                hello += [
                    b"AUTH",
                    (settings.username or "default").encode(),
                    settings.password.encode(),
                ]
            commands.append(hello)
        elif settings.password:
            user = [settings.username.encode()] if settings.username else []
            commands.append([b"AUTH", *user, settings.password.encode()])
        return [encode_command(c) for c in commands]

    # -- sending ------------------------------------------------------------------------------

    def send(self, command: bytes, request: Completion) -> None:
        if self.failed:
            request.complete(error_span(f"upstream {self.endpoint.address}: {self.failure}"))
            return
        if len(self.in_flight) >= self.pool.settings.max_in_flight:
            request.complete(error_span("too many commands in flight to the upstream"))
            return
        if not self.in_flight:
            self._progress = self._loop.time()
        self.in_flight.append((request, command))
        self.queue(command)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pool.consecutive_failures = 0
        for command in reversed(self._handshake):
            self.in_flight.appendleft((_Discard(self, "AUTH/HELLO"), command))
            self._out.insert(0, command)
        self.ready = True
        self._progress = asyncio.get_running_loop().time()
        self._arm_watchdog()
        self.flush()
        self.close_if_idle()

    def outstanding(self) -> int:
        return len(self.in_flight)

    # -- receiving ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            spans = self._parser.feed(data)
        except RespError as error:
            self.fail(f"protocol error from upstream: {error.reason}")
            return
        if spans:
            self._progress = self._loop.time()
        in_flight = self.in_flight
        for span in spans:
            if span[0] == 62:  # RESP3 push: belongs to no command
                continue
            if not in_flight:
                self.fail("reply without a command")
                return
            request = in_flight.popleft()[0]
            if span[0] == 45 and span.startswith(PROTOCOL_ERROR):  # 45: "-"
                self._refused = request
            request.complete(span)
        if self.closing:
            self.close_if_idle()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._refused is not None and not self.failed:
            self._send_unread_again(self._refused)
            return
        self.fail(f"connection lost ({exc})" if exc else "connection closed")

    def _send_unread_again(self, culprit: Completion) -> None:
        """Redis closed the connection after refusing one command: the commands after it
        were never run, so they go out again on a fresh connection."""
        self._stop()
        unread, self.in_flight = self.in_flight, deque()
        log.warning("redis %s: closed the connection after a protocol error in a client's "
                    "command; %d commands sent after it go out again", self.endpoint.address,
                    len(unread))  # fmt: skip
        self.pool.connection_refused_one(self)
        culprit.refused()
        for request, command in unread:
            self.pool.send(command, request)

    # -- failure --------------------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        timeout = self.pool.settings.timeout
        self._watchdog = asyncio.get_running_loop().call_later(timeout / 4, self._check_progress)

    def _check_progress(self) -> None:
        self._watchdog = None
        if self.failed:
            return
        now = asyncio.get_running_loop().time()
        if self.in_flight and now - self._progress > self.pool.settings.timeout:
            self.fail("timeout")
            return
        self._arm_watchdog()

    def fail(self, reason: str) -> None:
        """Answer everything in flight with an error and drop the connection."""
        if self.failed:
            return
        self._stop()
        self.failure = reason
        # A connection its pool closed is expected to go: no warning for that.
        log.log(logging.DEBUG if self.closing else logging.WARNING,
                "redis %s: %s", self.endpoint.address, reason)  # fmt: skip
        self.pool.connection_failed(self, reason)
        error = error_span(f"upstream {self.endpoint.address}: {reason}")
        in_flight, self.in_flight = self.in_flight, deque()
        for request, _ in in_flight:
            request.complete(error)
        self.close(abort=True)

    def _stop(self) -> None:
        self.failed = True
        self.ready = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._out.clear()
