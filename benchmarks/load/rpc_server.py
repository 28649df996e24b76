"""msgpack-RPC backend for benchmarks: `add(a, b)` and `echo(x)` on one uvloop process.

    python -m benchmarks.load.rpc_server --port 18801

Answers every request `[0, msgid, method, params]` with `[1, msgid, None, result]` (or
`[1, msgid, "error text", None]` for an unknown method or bad params); notifications are
ignored. All answers to one read go out in one write.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any, cast

import msgpack
import uvloop


def _add(a: int, b: int) -> int:
    return a + b


def _echo(value: Any) -> Any:
    return value


METHODS: dict[str, Callable[..., Any]] = {"add": _add, "echo": _echo}


class RpcServer(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        self.packer = msgpack.Packer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        pack = self.packer.pack
        out = []
        for message in self.unpacker:
            if type(message) is not list or len(message) != 4 or message[0] != 0:
                continue  # notifications, stray responses, garbage: nothing to answer
            _, msgid, method, params = message
            handler = METHODS.get(method)
            if handler is None:
                out.append(pack([1, msgid, f"no such method: {method!r}", None]))
                continue
            try:
                result = handler(*params)
            except Exception as error:
                out.append(pack([1, msgid, f"{method}: {error}", None]))
            else:
                out.append(pack([1, msgid, None, result]))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RpcServer, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.rpc_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
