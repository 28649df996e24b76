"""One bad HTTP/2 stream costs that stream only: a real h2 client through mecha to an
HTTP/1.1 backend, where a `content-length` of 20 digits used to kill the connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import Mecha, http_config, run_mecha

pytestmark = pytest.mark.integration


class Client:
    """h2's client over a plain socket (prior knowledge), blocking."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, extra: list[tuple[str, str]], body: bytes = b"") -> int:
        stream_id = self.h2.get_next_available_stream_id()
        head = [(":method", method), (":path", "/"), (":scheme", "http"),
                (":authority", "t"), *extra]  # fmt: skip
        self.h2.send_headers(stream_id, head, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body)  # the request never ends: the proxy decides
        self.flush()
        return stream_id

    def until_done(self, stream_id: int) -> None:
        """Read until `stream_id` has ended or was reset."""
        while not any(
            isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
            and e.stream_id == stream_id
            for e in self.events
        ):
            data = self.sock.recv(65536)
            assert data, "mecha closed the connection"
            self.events += self.h2.receive_data(data)
            self.flush()

    def status(self, stream_id: int) -> int | None:
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                return int(dict(event.headers)[b":status"])
        return None

    def reset_code(self, stream_id: int) -> int | None:
        for event in self.events:
            if isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                return int(event.error_code)
        return None


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Mecha, Backend]]:
    with (
        http_backend("web") as backend,
        run_mecha(tmp_path, http_config({"web": [backend.port]})) as mecha,
    ):
        yield mecha, backend


def test_a_twenty_digit_content_length_resets_its_stream_only(
    proxied: tuple[Mecha, Backend],
) -> None:
    mecha, backend = proxied
    client = Client(mecha.port("http"))
    try:
        bad = client.request("POST", [("content-length", "9" * 20)], b"x")
        good = client.request("GET", [])
        client.until_done(bad)
        client.until_done(good)
        assert client.reset_code(bad) == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert client.status(bad) is None
        assert client.status(good) == 200
        later = client.request("GET", [])  # the connection goes on
        client.until_done(later)
        assert client.status(later) == 200
        assert not [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
        assert backend.count == 2
        assert "Traceback" not in mecha.logs()
    finally:
        client.close()
