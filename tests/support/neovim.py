"""A private headless Neovim listening on loopback: the msgpack-RPC server most used in the wild.

`neovim_server()` starts `nvim --headless --clean --listen 127.0.0.1:PORT` and yields the port;
clients attach with pynvim (`pynvim.attach("tcp", address=..., port=...)`), Neovim's own Python
client, which sends method names as msgpack bin and answers Neovim's requests (`rpcrequest()`)
on the same connection.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pynvim

from tests.support.net import free_port, wait_for_port


@contextmanager
def neovim_server() -> Iterator[int]:
    if shutil.which("nvim") is None:
        raise RuntimeError("nvim is not installed; scripts/setup.sh --test installs it")
    port = free_port()
    argv = ["nvim", "--headless", "--clean", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def attached(port: int) -> Iterator[pynvim.Nvim]:
    """A pynvim client on 127.0.0.1:port, whose socket is closed when the block ends.

    pynvim's own close() closes its asyncio loop before the transport's close has run, so
    the socket stays open until the garbage collector finds it: let the loop run it first.
    """
    nvim = pynvim.attach("tcp", address="127.0.0.1", port=port)
    try:
        yield nvim
    finally:
        transport = nvim._session.loop._transport  # pynvim keeps no public handle on it
        if transport is not None:
            transport.close()  # schedules the socket's close: one turn of the loop runs it
            nvim.loop.call_soon(nvim.loop.stop)
            nvim.loop.run_forever()
        nvim.close()
