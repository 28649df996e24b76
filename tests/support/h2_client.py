"""A blocking HTTP/2 client on h2 (python-hyper) over a plain socket, prior knowledge: for
tests that need to see frames (resets, GOAWAY) or send what higher-level clients will not."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events


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

    def request(
        self,
        method: str,
        extra: list[tuple[str, str]],
        body: bytes = b"",
        path: str = "/",
        end_stream: bool = False,
    ) -> int:
        """Headers, then `body` if any (ending the request only with `end_stream`), in one
        write."""
        stream_id = self.h2.get_next_available_stream_id()
        head = [(":method", method), (":path", path), (":scheme", "http"),
                (":authority", "t"), *extra]  # fmt: skip
        self.h2.send_headers(stream_id, head, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=end_stream)
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

    def headers(self, stream_id: int) -> dict[bytes, bytes]:
        """The response head, and the trailers if any, in one dict."""
        found: dict[bytes, bytes] = {}
        for event in self.events:
            if (
                isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived))
                and event.stream_id == stream_id
            ):
                found.update(dict(event.headers))
        return found

    def status(self, stream_id: int) -> int | None:
        status = self.headers(stream_id).get(b":status")
        return int(status) if status is not None else None

    def reset_code(self, stream_id: int) -> int | None:
        for event in self.events:
            if isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                return int(event.error_code)
        return None
