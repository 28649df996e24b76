"""The HTTP/2 codec's bounds, without sockets: frame size from the header, CONTINUATION,
concurrent streams, and the flood budgets that end in GOAWAY(ENHANCE_YOUR_CALM)."""

from __future__ import annotations

import pytest

from protocols.http.errors import HttpError
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.h2 import H2Codec, H2Settings
from protocols.http.h2_frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    PRIORITY,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCode,
    frame,
    rst_stream,
    settings_frame,
)
from protocols.http.headers import Headers
from protocols.http.hpack import Encoder

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


DEFAULT = H2Settings()


def server(settings: H2Settings = DEFAULT) -> H2Codec:
    codec = H2Codec(client_side=False, settings=settings)
    codec.initiate()
    codec.feed(PREFACE + settings_frame({}))
    codec.data_to_send()
    return codec


def goaway_code(codec: H2Codec) -> int | None:
    data = codec.data_to_send()
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if data[3] == GOAWAY:
            return int.from_bytes(data[13:17], "big")
        data = data[9 + length :]
    return None


def request(encoder: Encoder, sid: int, end: bool = True) -> bytes:
    flags = END_HEADERS | (END_STREAM if end else 0)
    return frame(HEADERS, flags, sid, encoder.encode(REQUEST))


def test_a_frame_declared_too_large_is_refused_from_its_header() -> None:
    """Nine bytes declaring 16 MB: refused at once, before any of the payload is kept."""
    codec = server()
    codec.feed(request(Encoder(), 1, end=False))
    header = ((1 << 24) - 1).to_bytes(3, "big") + bytes((DATA, 0)) + b"\0\0\0\x01"
    with pytest.raises(HttpError):
        codec.feed(header)
    assert goaway_code(codec) == ErrorCode.FRAME_SIZE_ERROR


def test_a_header_block_past_the_list_bound_is_cut_off_before_it_grows() -> None:
    codec = server(H2Settings(max_header_list_size=4096))
    codec.feed(frame(HEADERS, 0, 1, b"\x82" * 3000))
    with pytest.raises(HttpError):
        codec.feed(frame(CONTINUATION, 0, 1, b"\x82" * 3000))
    assert goaway_code(codec) == ErrorCode.ENHANCE_YOUR_CALM


def test_streams_past_the_limit_are_refused_and_the_others_go_on() -> None:
    codec = server(H2Settings(max_concurrent_streams=2))
    encoder = Encoder()
    events = codec.feed(b"".join(request(encoder, sid, end=False) for sid in (1, 3, 5)))
    assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [1, 3]
    assert rst_stream(5, ErrorCode.REFUSED_STREAM) in codec.data_to_send()
    codec.reset(1)
    events = codec.feed(request(encoder, 7))
    assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [7]


@pytest.mark.parametrize(
    ("flood", "reason"),
    [
        (frame(SETTINGS, 0, 0), "SETTINGS/PING flood"),
        (frame(PING, 0, 0, b"12345678"), "SETTINGS/PING flood"),
        (frame(PRIORITY, 0, 3, b"\0\0\0\0\x10"), "PRIORITY flood"),
        (frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\x01"), "WINDOW_UPDATE flood"),
    ],
)
def test_floods_end_in_enhance_your_calm(flood: bytes, reason: str) -> None:
    codec = server()
    with pytest.raises(HttpError):
        codec.feed(flood * 5000)
    assert codec.flood == reason
    assert goaway_code(codec) == ErrorCode.ENHANCE_YOUR_CALM


def test_answered_control_frames_are_not_a_flood() -> None:
    """A thousand PINGs a turn, every turn, is a busy peer that reads what it is sent."""
    codec = server()
    for _ in range(20):
        codec.feed(frame(PING, 0, 0, b"12345678") * 900)
        assert len(codec.data_to_send()) == 900 * 17
    assert codec.flood is None


def test_empty_data_frames_end_in_enhance_your_calm() -> None:
    codec = server()
    codec.feed(request(Encoder(), 1, end=False))
    with pytest.raises(HttpError):
        codec.feed(frame(DATA, 0, 1) * 5000)
    assert codec.flood == "empty DATA flood"


def test_rapid_reset_ends_in_enhance_your_calm() -> None:
    codec = server()
    encoder = Encoder()
    with pytest.raises(HttpError):
        for sid in range(1, 2001, 2):
            codec.feed(request(encoder, sid, end=False) + rst_stream(sid, ErrorCode.CANCEL))
    assert codec.flood == "rapid reset"
    assert goaway_code(codec) == ErrorCode.ENHANCE_YOUR_CALM


def test_streams_reset_after_their_answer_are_not_rapid_reset() -> None:
    """gRPC clients cancel streams they are done with; answered ones do not count."""
    codec = server()
    encoder = Encoder()
    for sid in range(1, 2001, 2):
        codec.feed(request(encoder, sid, end=False))
        codec.send_headers(ResponseHeaders(200, Headers(), stream_id=sid), end_stream=True)
        codec.feed(rst_stream(sid, ErrorCode.CANCEL))
        codec.data_to_send()
    assert codec.flood is None
