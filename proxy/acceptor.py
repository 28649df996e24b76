"""Accepting connections on a listening socket, out of descriptors included.

uvloop's own server hides descriptor exhaustion: libuv closes a descriptor it keeps in
reserve, accepts every pending connection and closes it at once (the clients see their
connection reset), and tells no one. Here every accept is ours. Out of descriptors
(EMFILE, ENFILE) or of kernel memory, accepting pauses for a moment and the connections
wait in the listen backlog until descriptors free up, as nginx and asyncio's own loop do;
the listener counts each failure and logs it at most once a second.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("mecha.listener")

RETRY_AFTER = 0.1
"""Seconds accepting pauses after it failed for want of descriptors or memory."""
LOG_EVERY = 1.0
"""Seconds between two log lines about failed accepts (each failure is counted)."""

OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_GONE_BEFORE_ACCEPT = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EPERM))
"""The client went (or a firewall refused it) between its handshake and our accept."""

ProtocolFactory = Callable[[], asyncio.Protocol]
Adoption = Coroutine[Any, Any, Any]


class Acceptor:
    """Accepts on one listening socket and hands each connection to the loop's transport.

    `pause(reason)` / `resume(reason)` stop and restart accepting for independent reasons
    (the overload manager, a failed accept); connections meanwhile wait in the backlog.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: ProtocolFactory,
        on_exhausted: Callable[[OSError], None],
        name: str,
    ) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = protocol_factory
        self._on_exhausted = on_exhausted
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._paused: set[str] = set()
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        self._logged_at = -LOG_EVERY
        self._unlogged = 0
        self._adopting: set[Adoption] = set()
        """Connections whose transport is being made (held until it is)."""
        self.closed = False

    def start(self) -> None:
        self._update()

    def pause(self, reason: str) -> None:
        self._paused.add(reason)
        self._update()

    def resume(self, reason: str) -> None:
        self._paused.discard(reason)
        self._update()

    @property
    def accepting(self) -> bool:
        return self._reading

    def close(self) -> None:
        """Stop for good and close the listening socket."""
        self.closed = True
        self._update()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._sock.close()

    def _update(self) -> None:
        want = not self.closed and not self._paused
        if want and not self._reading:
            self._loop.add_reader(self._fd, self._accept)
        elif not want and self._reading:
            self._loop.remove_reader(self._fd)
        self._reading = want

    def _accept(self) -> None:
        """One connection per readable event: the loop polls level-triggered, so the next
        turn accepts the next one. A connection flood then gets one accept per turn, like
        every other connection's callback, and no accept is tried in vain (looping until
        EAGAIN would cost an exception per event)."""
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in _GONE_BEFORE_ACCEPT:
                self._failed(exc)
            return
        self._adopt(conn)

    def _failed(self, exc: OSError) -> None:
        """Out of descriptors (or anything else accept refuses): count, log once a second
        at most, and try again a little later, the connections waiting in the backlog."""
        if exc.errno in OUT_OF_RESOURCES:
            self._on_exhausted(exc)
        now = self._loop.time()
        if now - self._logged_at >= LOG_EVERY:
            more = f" ({self._unlogged} more since the last report)" if self._unlogged else ""
            log.error("listener %r: cannot accept connections: %s%s; new connections wait "
                      "in the backlog", self._name, exc.strerror or exc, more)  # fmt: skip
            self._logged_at = now
            self._unlogged = 0
        else:
            self._unlogged += 1
        self.pause("accept failed")
        self._retry = self._loop.call_later(RETRY_AFTER, self._retry_accept)

    def _retry_accept(self) -> None:
        self._retry = None
        self.resume("accept failed")

    def _adopt(self, conn: socket.socket) -> None:
        """Give the accepted socket a transport and a protocol now, without a task.

        `connect_accepted_socket` makes the transport and schedules connection_made before
        its first suspension; what is left (returning the pair once connection_made ran) is
        driven from the waiter's callback, as a task would, for a fraction of the cost.
        """
        coro = self._loop.connect_accepted_socket(self._factory, conn)
        try:
            waiter = coro.send(None)
        except StopIteration:
            return
        except Exception:
            log.exception("listener %r: cannot set up an accepted connection", self._name)
            conn.close()
            return
        self._adopting.add(coro)
        waiter.add_done_callback(lambda _: self._adopted(coro))

    def _adopted(self, coro: Adoption) -> None:
        self._adopting.discard(coro)
        try:
            coro.send(None)
        except StopIteration:
            pass
        except Exception:  # connection_made failed: the transport was closed
            log.exception("listener %r: a connection failed as it opened", self._name)
