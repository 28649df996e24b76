"""A real msgpack-RPC peer that mecha did not write: aio-msgpack-rpc (PyPI, pure asyncio).

`start_server(port)` serves on 127.0.0.1 from a thread with its own event loop and returns
a handle (`port`, `notifications`, `close()`; also a context manager). Methods:
`echo(*params) -> list`, `add(a, b)`, `sleep(seconds, value) -> value` (replies out of
order when calls overlap; `pause` is the same), `fail(message)` (an error response); a message
it cannot decode (a map with integer keys: msgpack's strict_map_key) makes it close the
connection, with whatever calls it had in flight; any notification is
recorded as `(method, params)` in `handle.notifications`. `call(port, method, *params)`
is one call over a fresh connection from synchronous code; `acall` and `pipelined` (many
overlapping calls on one connection, msgids 0, 1, ...) are the coroutines behind it, and
`anotify` sends a notification. An error response raises `RPCResponseError`.

Why this library: msgpack-rpc-python 0.4.1 needs tornado<5 and the old msgpack-python
(it passes `encoding=` to msgpack 1.x, which refuses it), mprpc 0.1.17 (gevent, Cython)
does not build on Python 3.11, py-msgpack-rpc is a pre-alpha limited to Python <3.12
without notifications. aio-msgpack-rpc 0.2.0 uses msgpack 1.x and asyncio streams, and
does requests, notifications and overlapping calls. `python -m tests.support.msgpack_rpc_peer`
proves it on loopback.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from aio_msgpack_rpc import Client, Server
from aio_msgpack_rpc.error import RPCResponseError

__all__ = [
    "PeerServer",
    "RPCResponseError",
    "acall",
    "anotify",
    "call",
    "pipelined",
    "start_server",
]

HOST = "127.0.0.1"
TIMEOUT = 10.0


class Methods:
    """What the server answers; aio-msgpack-rpc looks methods up with getattr."""

    def __init__(self, notifications: list[tuple[str, list[Any]]]) -> None:
        self._notifications = notifications

    def echo(self, *params: Any) -> list[Any]:
        return list(params)

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    async def sleep(self, seconds: float, value: Any) -> Any:
        await asyncio.sleep(seconds)
        return value

    async def pause(self, seconds: float, value: Any) -> Any:
        """`sleep` under another name, for routes that treat the two differently."""
        return await self.sleep(seconds, value)

    def fail(self, message: str) -> None:
        raise RuntimeError(message)

    def __getattr__(self, name: str) -> Any:
        # notifications of any name are recorded (a request to an unknown name gets
        # whatever this returns: None)
        return lambda *params: self._notifications.append((name, list(params)))


class PeerServer:
    """A running aio-msgpack-rpc server; `close()` stops it and its connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.notifications: list[tuple[str, list[Any]]] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop = asyncio.Event()  # set on the server's loop by close()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="msgpack-rpc-peer", daemon=True)
        self._thread.start()
        self._started.wait(TIMEOUT)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        try:
            server = await self._listen()
        except BaseException as error:  # handed to the starting thread
            self._error = error
            return
        finally:
            self._started.set()
        await self._stop.wait()
        server.close()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _listen(self) -> asyncio.Server:
        rpc = Server(Methods(self.notifications))  # made on the loop it serves

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await rpc(reader, writer)
            finally:
                writer.close()  # the library leaves the socket open after the peer's EOF

        server = await asyncio.start_server(connection, HOST, self.port)
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(TIMEOUT)

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_server(port: int = 0) -> PeerServer:
    """An aio-msgpack-rpc server on 127.0.0.1:port (0: a free port, see `handle.port`)."""
    return PeerServer(port)


async def pipelined(port: int, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """Overlapping calls on one connection (msgids 0, 1, ...); results (or errors) in order."""
    reader, writer = await asyncio.open_connection(HOST, port)
    client = Client(reader, writer, response_timeout=TIMEOUT)
    try:
        return await asyncio.gather(
            *(client.call(method, *params) for method, params in calls), return_exceptions=True
        )
    finally:
        client.close()
        await writer.wait_closed()


async def acall(port: int, method: str, *params: Any) -> Any:
    """One call over a fresh connection; an error response raises RPCResponseError."""
    result = (await pipelined(port, [(method, list(params))]))[0]
    if isinstance(result, BaseException):
        raise result
    return result


def call(port: int, method: str, *params: Any) -> Any:
    """`acall` from synchronous code (a test, or `asyncio.to_thread` inside a loop)."""
    return asyncio.run(acall(port, method, *params))


async def anotify(port: int, method: str, *params: Any) -> None:
    """One notification (`[2, method, params]`, no response) over a fresh connection."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await Client(reader, writer).notify(method, *params)
    finally:
        writer.close()
        await writer.wait_closed()


if __name__ == "__main__":  # the proof: python -m tests.support.msgpack_rpc_peer
    with start_server() as peer:
        assert call(peer.port, "add", 2, 3) == 5
        assert call(peer.port, "echo", "héllo", b"\x00\xff", [1, {"k": None}]) == [
            "héllo",
            b"\x00\xff",
            [1, {"k": None}],
        ]
        try:
            call(peer.port, "fail", "boom")
        except RPCResponseError as error:
            assert error.args == ("boom",), error.args
        else:
            raise AssertionError("fail did not fail")
        slow_first: list[tuple[str, list[Any]]] = [
            ("sleep", [0.2, "slow"]),
            ("sleep", [0.0, "fast"]),
            ("add", [1, 1]),
        ]
        assert asyncio.run(pipelined(peer.port, slow_first)) == ["slow", "fast", 2]
        asyncio.run(anotify(peer.port, "tick", 1))
        assert call(peer.port, "echo") == [] and peer.notifications == [("tick", [1])]
        print(f"aio-msgpack-rpc server and client on 127.0.0.1:{peer.port}: ok")
