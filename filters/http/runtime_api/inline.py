"""Coroutines run inline: stepped by hand, and made a task only if they wait.

Most API calls on the in-memory components never wait, and a task per request (made,
scheduled, stepped a loop turn later, freed) is cost and latency they do not need. So the
filter steps the coroutine that serves a request once itself (`run_inline`): if that ends it,
the answer went out at once, in the same loop turn as the request. If it waits after all,
a task carries it on from there (`Resumed`): the task waits on what the coroutine waits on,
and everything that reaches the task — a result, an exception, a cancellation, even one
that comes before the task's first step — is passed on to the coroutine, so it goes on
exactly as if it had started in that task.

Only coroutines that need no task before they first wait may run inline:
`asyncio.timeout()` and `asyncio.current_task()` see none there. Components say so with
`runs_inline = True` (runtime/components/api.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def run_inline(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
    """Step `coro` once; None when that finished it, else the task that carries it on.
    (What it raises at once, the caller hears at once.)"""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(Resumed(coro, waiting))


class Resumed(Coroutine[Any, Any, T]):
    """`coro` after its first step, which yielded `waiting` (the future it waits on, or
    None for a bare yield): a coroutine a task can run. Its first step hands `waiting` to
    the task; every later step, and every exception thrown in (the first one included),
    goes to `coro`."""

    __slots__ = ("_coro", "_started", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, T], waiting: Any) -> None:
        self._coro = coro
        self._waiting: Any = waiting
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            waiting, self._waiting = self._waiting, None
            return waiting
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None) -> Any:
        waiting, self._waiting = self._waiting, None
        if not self._started and isinstance(waiting, asyncio.Future):
            cancelled = isinstance(typ, asyncio.CancelledError) or typ is asyncio.CancelledError
            if cancelled:  # cancelled before its first step: as a task's own wait would be
                waiting.cancel()
        self._started = True
        if val is None and tb is None:  # (the one-argument form: the others are deprecated)
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __next__(self) -> Any:
        return self.send(None)

    def __iter__(self) -> Resumed[T]:
        return self

    def __await__(self) -> Generator[Any, None, T]:
        return self
