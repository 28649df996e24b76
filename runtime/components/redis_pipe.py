"""A pipelined connection to a standalone Redis: every caller's commands on one socket.

Why not redis-py's asyncio client on the hot path: per command it takes a connection from
a pool behind a lock, runs the send under `wait_for` (a task of its own) and the read under
a timeout, dispatches events and reads through a StreamReader — several times the Python
of the rest of a state API call (`python -m benchmarks.profile_runtime --redis`). Here
commands are written in the order they are made and Redis answers in that order, so each
reply completes the oldest waiting call; hiredis parses replies in C.

- Writes: a command made while nothing is in flight is written at once (no added latency
  when idle); the ones made while others are in flight are gathered and written once per
  loop turn.
- Deadline: one timer per connection, not per call. Every `timeout` while calls are in
  flight it checks that a reply arrived since the last check; if none did, the connection
  is dead: it is closed and every call in flight fails with "timed out". So a call waits at
  most 2 x `timeout` (the metadata's `timeout`), as under redis-py plus `guarded`.
- Connection loss fails the calls in flight. The next call connects again (AUTH and SELECT
  first, from the connection metadata); a failed connect is tried again `max_retries` times
  with a short exponential backoff, as redis-py's Retry does. A call whose command may have
  run is tried again only when the caller says it is idempotent (reads); a write is tried
  again only when it was the first command after a quiet spell and the connection failed
  before its reply (StaleConnection: the server had closed the idle connection).
- A caller that stops waiting (its task cancelled) leaves its place in the queue: its reply
  is read and dropped, so replies never shift onto the wrong calls.
- Bound: at most MAX_IN_FLIGHT calls wait on one connection; more fail at once.

Nothing here needs a running task before it first waits (no `asyncio.timeout`), so a
component built on it may set `runs_inline` (runtime/components/api.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis

from runtime.components.errors import ComponentError
from runtime.components.redis_common import RedisSettings, Script

MAX_IN_FLIGHT = 100_000
BACKOFF_BASE, BACKOFF_CAP = 0.05, 0.5
RETRYABLE_REPLIES = (b"TRYAGAIN", b"READONLY", b"OOM", b"LOADING", b"BUSY ", b"MASTERDOWN")
"""Error replies after which the same command may succeed later (as redis-py classifies)."""

ReplyError = hiredis.ReplyError


class ConnectionLost(Exception):
    """The connection failed while the command was in flight (it may have run or not)."""


class StaleConnection(ConnectionLost):
    """The connection failed while its only command was waiting for the first reply after
    a quiet spell: what a server closing an idle connection (a restart, its timeout, CLIENT
    KILL) looks like from here, so the command is taken to have gone nowhere."""


class NotConnected(Exception):
    """No connection could be made (the command was never sent)."""


class _Connection(asyncio.Protocol):
    """One socket: commands out in order, replies matched to the oldest waiting future."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.out: list[bytes] = []
        self.closed = False
        self.reason = "connection closed"
        self.replies = 0
        """Replies read so far: the watchdog's measure of progress."""
        self.first_after_quiet: asyncio.Future[Any] | None = None
        """The call written when nothing was in flight, while it waits for its reply."""
        self._seen = 0
        self._loop = asyncio.get_running_loop()
        self._flush_handle: asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:
                self.abort(f"protocol error: {error}")
                return
            if reply is False:
                return
            self.replies += 1
            if not waiting:
                self.abort("a reply to no command")
                return
            future = waiting.popleft()
            if not future.done():  # (else its caller stopped waiting)
                future.set_result(reply)

    def eof_received(self) -> None:
        """The server closed its side: nothing more will be answered (and the transport is
        closing, so nothing more may be written)."""
        if not self.closed:
            self.reason = "connection closed by the server"
            self._fail_all()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.closed:
            self.reason = f"connection lost: {exc}"
        self._fail_all()

    # -- commands ---------------------------------------------------------------------------

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue `command`; the future gets its reply (a ReplyError for an error reply)."""
        if self.closed:
            raise ConnectionLost(self.reason)
        future = self._loop.create_future()
        idle = not self.waiting
        self.waiting.append(future)
        if idle:
            assert self.transport is not None
            self.first_after_quiet = future
            self.transport.write(command)
            self._arm_watchdog()
            return future
        self.out.append(command)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_handle = None
        out, self.out = self.out, []
        if out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(out))
            self._arm_watchdog()

    # -- the deadline -----------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._seen = self.replies
            self._watchdog = self._loop.call_later(self.settings.timeout, self._check)

    def _check(self) -> None:
        self._watchdog = None
        if not self.waiting:
            return
        if self.replies == self._seen:
            self.abort(f"timed out: no reply for {self.settings.timeout:g}s", timed_out=True)
            return
        self._arm_watchdog()

    # -- the end ----------------------------------------------------------------------------

    def abort(self, reason: str, timed_out: bool = False) -> None:
        """Close now and fail every call in flight with `reason`."""
        if self.closed:
            return
        self.reason = reason
        self._fail_all(timed_out)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.abort("closed")

    def _fail_all(self, timed_out: bool = False) -> None:
        self.closed = True
        for handle in (self._flush_handle, self._watchdog):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._watchdog = None
        self.out = []
        waiting, self.waiting = self.waiting, deque()
        error: Exception = TimeoutError(self.reason) if timed_out else ConnectionLost(self.reason)
        stale = self.first_after_quiet
        for future in waiting:
            if not future.done():
                lost = StaleConnection(self.reason) if future is stale and not timed_out else error
                future.set_exception(lost)


class RedisPipe:
    """Calls on one pipelined connection to `settings.hosts[0]`, made when first needed."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False

    async def call(self, *args: Any, what: str, idempotent: bool = False) -> Any:
        """The reply to one command; an error reply is returned as a ReplyError, not raised
        (the caller knows which errors it expects). Failing to reach Redis, or to hear from
        it in time, is a ComponentError naming `what`."""
        replies = await self.calls([args], what=what, idempotent=idempotent)
        return replies[0]

    async def calls(
        self, commands: list[tuple[Any, ...]], what: str, idempotent: bool = False
    ) -> list[Any]:
        """The replies to `commands`, sent back to back (as `call` answers each)."""
        packed = [hiredis.pack_command(args) for args in commands]
        attempt = 0
        failure: Exception
        while True:
            try:
                return await self._send(packed)
            except (NotConnected, StaleConnection) as error:
                failure = error
            except ConnectionLost as error:
                if not idempotent:
                    raise ComponentError(f"redis: {what}: {error}") from None
                failure = error
            except TimeoutError as error:
                raise ComponentError(f"redis: {what}: {error}") from None
            if attempt >= self.settings.max_retries or self._closed:
                raise ComponentError(f"redis: {what}: {failure}") from None
            await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            attempt += 1

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any], what: str,
                     idempotent: bool = False) -> Any:  # fmt: skip
        """Run `script` by its SHA, sending its source only when Redis does not have it; an
        error reply is a ComponentError."""
        reply = await self.call("EVALSHA", script.sha, len(keys), *keys, *args, what=what,
                                idempotent=idempotent)  # fmt: skip
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.call("EVAL", script.source, len(keys), *keys, *args, what=what,
                                    idempotent=idempotent)  # fmt: skip
        if isinstance(reply, ReplyError):
            raise ComponentError(f"redis: {what}: {reply}", retryable=retryable(reply))
        return reply

    async def _send(self, commands: list[bytes]) -> list[Any]:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        if len(connection.waiting) + len(commands) > MAX_IN_FLIGHT:
            raise ComponentError(f"redis: over {MAX_IN_FLIGHT} commands in flight")
        futures = [connection.send(command) for command in commands]
        try:
            return [await future for future in futures]
        except BaseException:
            _settle(futures)
            raise

    async def close(self) -> None:
        self._closed = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- connecting -------------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        """The connection, made by the first caller that needs it; the others wait for it
        (a caller that stops waiting does not stop it for them)."""
        if self._closed:
            raise NotConnected("the component is closed")
        connecting = self._connecting
        if connecting is None or connecting.done():
            connecting = self._connecting = asyncio.ensure_future(self._open())
            connecting.add_done_callback(_retrieve)
        return await asyncio.shield(connecting)

    async def _open(self) -> _Connection:
        settings = self.settings
        host, port = settings.hosts[0]
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(settings), host, port),
                settings.timeout,
            )
        except (OSError, TimeoutError) as error:
            raise NotConnected(f"cannot connect to {host}:{port}: {error or 'timed out'}") from None
        await self._hello(connection)
        if self._closed:
            connection.close()
            raise NotConnected("the component is closed")
        self._connection = connection
        return connection

    async def _hello(self, connection: _Connection) -> None:
        """AUTH and SELECT, as the metadata asks, before anything else goes out."""
        settings = self.settings
        setup: list[tuple[Any, ...]] = []
        if settings.password:
            user = (settings.username,) if settings.username else ()
            setup.append(("AUTH", *user, settings.password))
        if settings.db:
            setup.append(("SELECT", settings.db))
        try:
            for command in setup:
                reply = await connection.send(hiredis.pack_command(command))
                if isinstance(reply, ReplyError):
                    connection.close()
                    raise ComponentError(f"redis: {command[0]} refused: {reply}", retryable=False)
        except (ConnectionLost, TimeoutError) as error:
            raise NotConnected(f"connection lost while setting it up: {error}") from None


def _settle(futures: list[asyncio.Future[Any]]) -> None:
    """After one of `futures` failed: nobody waits for the others any more."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


def _retrieve(connecting: asyncio.Future[_Connection]) -> None:
    """Mark a failed connect's error as seen: the callers that waited for it have it."""
    if not connecting.cancelled():
        connecting.exception()


def retryable(reply: ReplyError) -> bool:
    """Whether the same command may succeed later (Redis busy, loading, read-only, ...)."""
    return str(reply).encode().startswith(RETRYABLE_REPLIES)
