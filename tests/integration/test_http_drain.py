"""Graceful drain of HTTP connections (SIGTERM, a reload removing a listener): HTTP/2 clients
get GOAWAY, HTTP/1.1 ones Connection: close, idle ones are closed at once, and requests in
flight finish."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    SettingsFrame,
)

from tests.integration.test_hot_restart import successor
from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.http_backend import http_backend
from tests.support.mecha import Mecha, http_config, run_mecha, write_config

pytestmark = pytest.mark.integration

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DRAIN_TIMEOUT = 20.0
PROMPT = 5.0
"""Well under DRAIN_TIMEOUT: what "closed promptly" and "exited promptly" mean here."""


# -- HTTP/2: frames over a raw socket (h2's own state machine refuses frames after GOAWAY) --


@dataclass
class H2Outcome:
    goaways: list[tuple[int, int]] = field(default_factory=list)
    """(error code, last stream id) of each GOAWAY, in order."""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    closed_by_peer: bool = False


class H2Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
        self.encoder, self.decoder = Encoder(), Decoder()
        self.buffer = b""
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def get(self, path: str, stream_id: int = 1) -> None:
        frame = HeadersFrame(stream_id, flags=["END_HEADERS", "END_STREAM"])
        frame.data = self.encoder.encode(
            [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)]
        )
        self.sock.sendall(frame.serialize())

    def frames(self) -> Iterator[Frame]:
        """Frames until the server closes; SETTINGS are acknowledged on the way."""
        while (header := self._take(9)) is not None:
            frame, length = Frame.parse_frame_header(memoryview(header))
            body = self._take(length)
            assert body is not None, "closed inside a frame"
            frame.parse_body(memoryview(body))
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            yield frame

    def outcome(self) -> H2Outcome:
        seen = H2Outcome()
        for frame in self.frames():
            if isinstance(frame, GoAwayFrame):
                seen.goaways.append((frame.error_code, frame.last_stream_id))
            elif isinstance(frame, HeadersFrame):
                seen.headers.update(dict(self.decoder.decode(frame.data, raw=True)))
            elif isinstance(frame, DataFrame):
                seen.body += frame.data
        seen.closed_by_peer = True
        return seen

    def _take(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def close(self) -> None:
        self.sock.close()


def assert_graceful_goaways(outcome: H2Outcome) -> None:
    """Envoy's pair: first every stream id is still welcome, then the last one served."""
    assert outcome.goaways == [(0, 2**31 - 1), (0, 1)], outcome
    assert outcome.headers[b":status"] == b"200", outcome
    assert outcome.body == b"late"
    assert outcome.closed_by_peer


# -- HTTP/1.1: kept-alive connections --------------------------------------------------------


class KeepAlive:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)

    def send(self, path: str) -> None:
        self.sock.sendall(b"GET %s HTTP/1.1\r\nhost: test\r\n\r\n" % path.encode())

    def read_until_closed(self) -> bytes:
        received = b""
        while chunk := self.sock.recv(65536):
            received += chunk
        return received

    def get(self, path: str) -> bytes:
        """One exchange, leaving the connection open: the head, then content-length bytes."""
        self.send(path)
        received = b""
        while b"\r\n\r\n" not in received:
            received += self.sock.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        assert found is not None, head
        length = int(found.group(1))
        while len(body) < length:
            body += self.sock.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self) -> None:
        self.sock.close()


def assert_closing_response(raw: bytes) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    assert b"\r\nconnection: close" in head.lower(), raw
    assert body == b"late"


def timed(action: Any) -> tuple[Any, float]:
    started = time.monotonic()
    return action(), time.monotonic() - started


def web_config(backend: int) -> dict[str, Any]:
    return {**http_config({"app": [backend]}), "drain_timeout": f"{DRAIN_TIMEOUT:.0f}s"}


def terminate(mecha: Mecha) -> float:
    """SIGTERM; the moment it was sent."""
    mecha.signal(signal.SIGTERM)
    return time.monotonic()


def test_http2_client_gets_goaway_and_its_stream_in_flight_completes(tmp_path: Path) -> None:
    with http_backend("app") as backend, run_mecha(tmp_path, web_config(backend.port)) as mecha:
        client = H2Client(mecha.port("http"))
        try:
            client.get("/delay/1500")
            time.sleep(0.3)  # the request has reached the backend
            sent = terminate(mecha)
            outcome = client.outcome()
            closed_after = time.monotonic() - sent
        finally:
            client.close()
        assert_graceful_goaways(outcome)
        assert mecha.wait(timeout=DRAIN_TIMEOUT) == 0
        exited_after = time.monotonic() - sent
    assert 1.0 <= closed_after < PROMPT  # at the end of the stream, not before it
    assert exited_after < PROMPT, exited_after


def grpc_config(backend: int) -> dict[str, Any]:
    config = http_config({"grpc": [backend]}, cluster_options={"grpc": {"protocol": "http2"}})
    return {**config, "drain_timeout": f"{DRAIN_TIMEOUT:.0f}s"}


def test_grpc_call_in_flight_across_sigterm_finishes_ok(tmp_path: Path) -> None:
    with grpc_backend() as port, run_mecha(tmp_path, grpc_config(port)) as mecha:
        channel = grpc.insecure_channel(f"127.0.0.1:{mecha.port('http')}")
        try:
            call = channel.unary_unary(f"/{SERVICE}/Unary")
            assert call(b"warm", timeout=5) == b"echo:warm via 127.0.0.1"
            slow = call.future(b"sleep:1.5", timeout=10)
            time.sleep(0.3)
            sent = terminate(mecha)
            assert slow.result() == b"echo:sleep:1.5 via 127.0.0.1"
            assert mecha.wait(timeout=DRAIN_TIMEOUT) == 0
            exited_after = time.monotonic() - sent
        finally:
            channel.close()
    assert exited_after < PROMPT, exited_after


def test_http1_idle_connection_closes_at_once_and_busy_one_gets_connection_close(
    tmp_path: Path,
) -> None:
    with http_backend("app") as backend, run_mecha(tmp_path, web_config(backend.port)) as mecha:
        idle, busy = KeepAlive(mecha.port("http")), KeepAlive(mecha.port("http"))
        try:
            assert idle.get("/").startswith(b"HTTP/1.1 200")
            busy.send("/delay/1500")
            time.sleep(0.3)
            terminate(mecha)
            leftover, idle_after = timed(idle.read_until_closed)
            answer, busy_after = timed(busy.read_until_closed)
        finally:
            idle.close()
            busy.close()
        assert leftover == b"" and idle_after < 1.0, (leftover, idle_after)
        assert_closing_response(answer)
        assert busy_after < PROMPT
        assert mecha.wait(timeout=PROMPT) == 0


def test_a_reload_removing_a_listener_drains_its_http_connections(tmp_path: Path) -> None:
    with http_backend("app") as backend:
        kept = web_config(backend.port)
        removed = {**kept["listeners"][0], "name": "extra"}
        both = {**kept, "listeners": [*kept["listeners"], removed]}
        with run_mecha(tmp_path, both) as mecha:
            port = mecha.port("extra")
            idle, busy, h2 = KeepAlive(port), KeepAlive(port), H2Client(port)
            try:
                assert idle.get("/").startswith(b"HTTP/1.1 200")
                busy.send("/delay/1500")
                h2.get("/delay/1500")
                time.sleep(0.3)
                write_config(mecha.workdir, kept, mecha.admin_port)
                mecha.signal(signal.SIGHUP)
                leftover, idle_after = timed(idle.read_until_closed)
                outcome = h2.outcome()
                answer = busy.read_until_closed()
            finally:
                for client in (idle, busy, h2):
                    client.close()
            assert leftover == b"" and idle_after < 2.0, (leftover, idle_after)
            assert_graceful_goaways(outcome)
            assert_closing_response(answer)
            deadline = time.monotonic() + PROMPT
            while mecha.json("/config_dump")["reload"]["draining_listeners"]:
                assert time.monotonic() < deadline, "the drained listener was not retired"
                time.sleep(0.05)
            assert mecha.process.poll() is None


def test_a_grpc_channel_follows_a_hot_restart_to_the_new_process(tmp_path: Path) -> None:
    """GOAWAY sends the channel's next calls to the successor; the old process need not wait
    for drain_timeout with the channel still open."""
    handover = tmp_path / "hot-restart.sock"
    args = ("--hot-restart-socket", str(handover))
    with grpc_backend() as port, run_mecha(tmp_path, grpc_config(port), args=args) as old:
        channel = grpc.insecure_channel(f"127.0.0.1:{old.port('http')}")
        try:
            call = channel.unary_unary(f"/{SERVICE}/Unary")
            assert call(b"before", timeout=5) == b"echo:before via 127.0.0.1"
            slow = call.future(b"sleep:1.5", timeout=10)
            started = time.monotonic()
            with successor(old, handover) as new:
                assert old.wait(timeout=DRAIN_TIMEOUT) == 0, old.logs()
                old_gone_after = time.monotonic() - started
                assert slow.result() == b"echo:sleep:1.5 via 127.0.0.1"
                assert call(b"after", timeout=5) == b"echo:after via 127.0.0.1"
                assert new.poll() is None
        finally:
            channel.close()
    assert old_gone_after < DRAIN_TIMEOUT / 2, old_gone_after
