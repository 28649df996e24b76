"""The acceptor: pauses for independent reasons, and what it does when accept() fails."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterator

import pytest

from proxy import acceptor
from proxy.acceptor import Acceptor


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class Exhausted(socket.socket):
    """A listening socket whose accept() fails with EMFILE while `failing` is set."""

    failing = True

    def accept(self) -> tuple[socket.socket, object]:
        if self.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


@pytest.fixture
def listening() -> Iterator[Exhausted]:
    sock = Exhausted(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    with sock:
        yield sock


async def echo_through(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        async with asyncio.timeout(2.0):
            return await reader.readexactly(len(payload))
    finally:
        writer.close()


async def test_pauses_nest_by_reason(listening: Exhausted) -> None:
    listening.failing = False
    accept = Acceptor(listening, Echo, lambda error: None, "test")
    accept.start()
    port = listening.getsockname()[1]
    accept.pause("overload")
    accept.pause("draining")
    accept.resume("overload")
    assert not accept.accepting
    waiting = asyncio.ensure_future(echo_through(port, b"hi"))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # connected (the backlog) but not accepted
    accept.resume("draining")
    assert await waiting == b"hi"
    accept.close()
    assert listening.fileno() == -1


async def test_out_of_descriptors_counts_logs_once_a_second_and_retries(
    listening: Exhausted, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acceptor, "RETRY_AFTER", 0.01)
    failures: list[OSError] = []
    accept = Acceptor(listening, Echo, failures.append, "test")
    accept.start()
    port = listening.getsockname()[1]
    with caplog.at_level(logging.ERROR, "mecha.listener"):
        waiting = asyncio.ensure_future(echo_through(port, b"hello"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        listening.failing = False
        assert await waiting == b"hello"
    assert len(failures) >= 5 and all(f.errno == errno.EMFILE for f in failures)
    assert len(caplog.records) == 1  # 0.3s of failures: one line
    assert "Too many open files" in caplog.records[0].getMessage()
    accept.close()
