"""HTTP/2 codec fuzz: any bytes either give events or raise HttpError, nothing else.

A few hundred examples each by default; `MECHA_FUZZ=deep` runs thousands.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.http.errors import HttpError
from protocols.http.events import (
    ConnectionTerminated,
    Data,
    Event,
    RequestHeaders,
    ResponseHeaders,
    StreamReset,
    Trailers,
)
from protocols.http.h2 import H2Codec, H2Settings
from protocols.http.headers import Headers

settings.register_profile(
    "h2-fast", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("h2-deep", max_examples=5000, deadline=None)
PROFILE = settings.get_profile("h2-deep" if os.environ.get("MECHA_FUZZ") == "deep" else "h2-fast")

EVENTS = (RequestHeaders, ResponseHeaders, Data, Trailers, StreamReset, ConnectionTerminated)
SMALL = H2Settings(initial_window_size=65535, connection_window_size=65535)
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"a")]


def raw(client_side: bool) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=client_side, header_encoding=None))
    conn.initiate_connection()
    return conn


def client_stream() -> bytes:
    """A valid client byte stream using most frame types, CONTINUATION and padding."""
    client = raw(client_side=True)
    client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 1024})
    client.send_headers(1, [*REQUEST, (b"x-big", b"v" * 20000)])  # HEADERS + CONTINUATION
    client.send_data(1, b"a" * 300, pad_length=17)
    client.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    client.send_headers(3, [*REQUEST, (b"content-length", b"4")], priority_weight=20)
    client.ping(b"12345678")
    client.send_data(3, b"abcd", end_stream=True)
    client.send_headers(5, REQUEST)
    client.reset_stream(5)
    client.send_headers(7, [*REQUEST, (b"cookie", b"a=1"), (b"te", b"trailers")])
    client.send_data(7, b"", end_stream=True)
    client.close_connection()
    return client.data_to_send()


def server_stream() -> bytes:
    """What a server answers to `requests()`: 1xx, bodies, trailers, a reset, GOAWAY."""
    client, server = H2Codec(client_side=True), raw(client_side=False)
    requests(client)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"100")])
    server.send_headers(1, [(b":status", b"200"), (b"x-big", b"w" * 20000)])
    server.send_data(1, b"b" * 500, pad_length=30)
    server.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    server.send_headers(3, [(b":status", b"204")], end_stream=True)
    server.reset_stream(5)
    server.ping(b"abcdefgh")
    server.send_headers(7, [(b":status", b"200"), (b"content-length", b"2")])
    server.send_data(7, b"ok", end_stream=True)
    server.close_connection(last_stream_id=7)
    return server.data_to_send()


def requests(client: H2Codec) -> None:
    client.initiate()
    for _ in range(4):
        sid = client.next_stream_id()
        head = RequestHeaders(b"GET", b"/", b"a", Headers(), stream_id=sid)
        client.send_headers(head, end_stream=True)


CLIENT_STREAM = client_stream()
SERVER_STREAM = server_stream()
_SETTINGS_END = 24 + 9 + int.from_bytes(CLIENT_STREAM[24:27], "big")
PREFACE_AND_SETTINGS = CLIENT_STREAM[:_SETTINGS_END]  # the preface and the first SETTINGS


def chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    start = 0
    for size in sizes:
        if start >= len(data):
            return
        yield data[start : start + size]
        start += size
    if start < len(data):
        yield data[start:]


def drive(codec: H2Codec, data: bytes, sizes: list[int]) -> None:
    """Feed `data` in pieces, behaving like a proxy; only HttpError may escape."""
    try:
        for chunk in chunks(data, sizes):
            for event in codec.feed(chunk):
                assert isinstance(event, EVENTS)
                react(codec, event)
            codec.data_to_send()
    except HttpError:
        codec.data_to_send()  # the GOAWAY, if any, is there to flush


def react(codec: H2Codec, event: Event) -> None:
    """Acknowledge data, answer requests: sending must cope with whatever the peer did."""
    if isinstance(event, Data):
        codec.acknowledge(event.stream_id, len(event.data))
    elif isinstance(event, RequestHeaders):
        response = ResponseHeaders(200, Headers([(b"x", b"y")]), stream_id=event.stream_id)
        codec.send_headers(response, end_stream=False)
        codec.send_data(event.stream_id, b"r" * 70000, end_stream=True)  # more than a window


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes flipped, set, inserted, deleted, or the tail cut off."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(0, len(out) - 1)))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip" and out:
            out[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and out:
            out[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[position : position + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del out[position:]
    return bytes(out)


SIZES = st.lists(st.integers(1, 3000), max_size=12)


def test_the_seed_streams_are_valid() -> None:
    server = H2Codec(client_side=False, settings=SMALL)
    server.initiate()
    at_server = server.feed(CLIENT_STREAM)
    assert sum(isinstance(e, RequestHeaders) for e in at_server) == 4
    assert isinstance(at_server[-1], ConnectionTerminated)
    client = H2Codec(client_side=True)
    requests(client)
    at_client = client.feed(SERVER_STREAM)
    assert sum(isinstance(e, ResponseHeaders) for e in at_client) == 4
    assert isinstance(at_client[-1], ConnectionTerminated)


@settings(PROFILE)
@given(noise=st.binary(max_size=2000), sizes=SIZES)
def test_random_bytes_after_a_valid_preface(noise: bytes, sizes: list[int]) -> None:
    server = H2Codec(client_side=False, settings=SMALL)
    server.initiate()
    drive(server, PREFACE_AND_SETTINGS + noise, sizes)


@settings(PROFILE)
@given(noise=st.binary(max_size=2000), sizes=SIZES)
def test_random_bytes_at_a_client(noise: bytes, sizes: list[int]) -> None:
    client = H2Codec(client_side=True)
    requests(client)
    drive(client, noise, sizes)


@settings(PROFILE)
@given(stream=mutated(CLIENT_STREAM), sizes=SIZES)
def test_mutated_client_streams(stream: bytes, sizes: list[int]) -> None:
    server = H2Codec(client_side=False, settings=SMALL)
    server.initiate()
    drive(server, stream, sizes)


@settings(PROFILE)
@given(stream=mutated(SERVER_STREAM), sizes=SIZES)
def test_mutated_server_streams(stream: bytes, sizes: list[int]) -> None:
    client = H2Codec(client_side=True, settings=SMALL)
    requests(client)
    drive(client, stream, sizes)
