"""Fuzzing the HTTP/1.1 decoders with one invariant: any input, split anywhere, either
produces well-ordered events or raises HttpError - nothing else - and the unparsed
buffer stays under max_head.

The default run is fast (a few hundred examples per test); set H1_FUZZ_EXAMPLES=20000
for a deep run.
"""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.http.errors import HttpError
from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h1 import H1ClientCodec, H1Limits, H1ServerCodec
from tests.unit.h1_cases import BAD_REQUESTS, BAD_RESPONSES, REQUESTS, RESPONSES, H, request

EXAMPLES = int(os.environ.get("H1_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = H1Limits(max_head=512, max_headers=8, max_body=2000)

# -- inputs ----------------------------------------------------------------------------------

FRAGMENTS = [
    b"GET ", b"POST ", b"HEAD ", b"CONNECT ", b"/ ", b"/a?b ", b"http://h/ ", b"h:1 ", b"* ",
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"200 OK", b"100 Continue",
    b"101 ", b"204 ", b"304 ", b"\r\n", b"\r\n\r\n", b"\r", b"\n", b" ", b"\t", b":", b";",
    b",", b"=", b'"', b"\x00", b"\x7f", b"\xff", b"Host: a", b"Host:", b"Content-Length: ",
    b"Transfer-Encoding: ", b"chunked", b"gzip", b"Connection: ", b"close", b"keep-alive",
    b"upgrade", b"Upgrade: ws", b"Expect: 100-continue", b"0", b"1", b"5", b"a", b"f",
    b"10", b"99999999999999999999", b"-", b"+", b"hello", b"X-Y: z",
]  # fmt: skip
SEEDS_IN = [c.data for c in REQUESTS] + [b.data for b in BAD_REQUESTS if len(b.data) < 600]
SEEDS_OUT = [c.data for c in RESPONSES] + [b.data for b in BAD_RESPONSES]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level edits: flips, inserts, deletions, repeats, cuts."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "cut"]))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
        else:
            del data[at:]
    return bytes(data)


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=1500),
        st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join),
        mutated(seeds),
    )


def split(data: bytes, draw: st.DataObject) -> list[bytes]:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=12), label="cuts"))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# -- invariants ------------------------------------------------------------------------------


class Order:
    """Each message: a head (after any 1xx heads), then Data/Trailers, the last one ending it."""

    def __init__(self) -> None:
        self.in_message = False

    def check(self, events: list[Event]) -> None:
        for event in events:
            assert isinstance(event, RequestHeaders | ResponseHeaders | Data | Trailers)
            if isinstance(event, RequestHeaders | ResponseHeaders):
                assert not self.in_message
                if (
                    isinstance(event, ResponseHeaders)
                    and event.status in range(100, 200)
                    and (event.status != 101)
                ):
                    assert not event.end_stream
                    continue
                self.in_message = not event.end_stream
            else:
                assert self.in_message
                assert isinstance(event, Trailers) or isinstance(event.data, bytes)
                assert isinstance(event, Trailers) or event.data or event.end_stream
                self.in_message = not event.end_stream


def run_server(chunks: list[bytes]) -> None:
    codec = H1ServerCodec(LIMITS)
    order = Order()

    def take(events: list[Event]) -> None:
        order.check(events)
        while events and events[-1].end_stream and codec.keep_alive:  # type: ignore[union-attr]
            codec.encode_response(ResponseHeaders(200, H(), end_stream=True))
            events = codec.next_message()
            order.check(events)

    try:
        for chunk in [*chunks, b""]:
            take(codec.feed(chunk))
            assert codec.buffered < LIMITS.max_head
    except HttpError as exc:
        assert 400 <= exc.status <= 505
        assert not codec.keep_alive


def run_client(method: bytes, chunks: list[bytes]) -> None:
    codec = H1ClientCodec(LIMITS)
    upgrade = b"websocket" if method == b"UPGRADE" else None
    codec.encode_request(request(b"GET" if upgrade else method, upgrade=upgrade))
    order = Order()
    try:
        for chunk in [*chunks, b""]:
            events = codec.feed(chunk)
            order.check(events)
            if events and events[-1].end_stream and codec.keep_alive:  # type: ignore[union-attr]
                codec.encode_request(request())
            assert codec.buffered < LIMITS.max_head
    except HttpError as exc:
        assert exc.status == 502
        assert not codec.keep_alive


# -- tests -----------------------------------------------------------------------------------


@FUZZ
@given(inputs(SEEDS_IN), st.data())
def test_server_any_input(data: bytes, draw: st.DataObject) -> None:
    run_server(split(data, draw))


@FUZZ
@given(mutated(SEEDS_IN), st.data())
def test_server_mutated_requests(data: bytes, draw: st.DataObject) -> None:
    run_server(split(data, draw))


@FUZZ
@given(st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT", b"UPGRADE"]),
       inputs(SEEDS_OUT), st.data())  # fmt: skip
def test_client_any_input(method: bytes, data: bytes, draw: st.DataObject) -> None:
    run_client(method, split(data, draw))


@FUZZ
@given(st.sampled_from([b"GET", b"HEAD", b"POST"]), mutated(SEEDS_OUT), st.data())
def test_client_mutated_responses(method: bytes, data: bytes, draw: st.DataObject) -> None:
    run_client(method, split(data, draw))


def test_errors_stay_errors() -> None:
    """After an HttpError every later feed raises HttpError again (not something else)."""
    for data in (b"\x00", b"GET / HTTP/9.9\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
        codec = H1ServerCodec()
        for _ in range(2):
            try:
                codec.feed(data)
            except HttpError:
                continue
            raise AssertionError("accepted")
