"""protocols/http/h2.py against the codec it replaced on the `h2` package (h2_reference.py):
the same bytes fed to both, in the same pieces, give the same events and the same connection
errors (GOAWAY code included). Traffic comes from a raw h2 peer driven by hypothesis (valid
and malformed header blocks, bodies with padding, trailers, resets, pings, settings,
priority, window updates, GOAWAY), with random bytes spliced in.

Known, deliberate differences: a frame header declaring more than SETTINGS_MAX_FRAME_SIZE
(random bytes make them often) is refused by mecha at once and by h2 once the whole frame
has arrived, so there the reference may still be waiting. Others are kept out of the
generated traffic and tested where they live (test_h2_codec.py, test_h2_abuse.py):
streams past our concurrency limit (h2: connection error; mecha: REFUSED_STREAM), flood
budgets, frames on streams we reset (h2 answers each with RST_STREAM; mecha ignores them,
RFC 9113 §5.4.2).

A few hundred examples each by default; `MECHA_FUZZ=deep` runs thousands.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import H2Error
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.http.errors import HttpError
from protocols.http.events import Data, Event, RequestHeaders
from protocols.http.h2 import H2Codec, H2Settings
from protocols.http.h2_frames import ErrorCode
from protocols.http.headers import Headers
from tests.unit import h2_reference

DEEP = os.environ.get("MECHA_FUZZ") == "deep"
FUZZ = settings(
    max_examples=3000 if DEEP else 250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = H2Settings(initial_window_size=65535, connection_window_size=65535)
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"a")]
MALFORMED = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")],
    [*REQUEST, (b"Upper", b"x")],
    [*REQUEST, (b"connection", b"close")],
    [*REQUEST, (b"content-length", b"ten")],
    [*REQUEST, (b"te", b"gzip")],
    [*REQUEST, (b":status", b"200")],
    [*REQUEST, (b"x", b" padded ")],
]
Op = Callable[[H2Connection], None]


def _ops(draw: st.DrawFn, declared: set[int]) -> list[Op]:
    """What a raw client may do. Trailers where a declared body never came are left out (h2
    lets them by; the message is malformed, RFC 9113 §8.1.1)."""
    sid = draw(st.sampled_from([1, 3, 5, 7, 9]))
    size = draw(st.integers(0, 40000))
    end = draw(st.booleans())
    pad = draw(st.none() | st.integers(0, 255))
    block = draw(st.sampled_from([REQUEST, REQUEST, *MALFORMED]))
    length = draw(st.none() | st.integers(0, 50))
    extra = [] if length is None else [(b"content-length", b"%d" % length)]

    def request(c: H2Connection) -> None:
        c.send_headers(sid, [*block, *extra], end_stream=end)
        if length:
            declared.add(sid)

    def trailers(c: H2Connection) -> None:
        if sid in declared:
            raise ValueError("trailers instead of a declared body")
        c.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)

    return [
        request,
        lambda c: c.send_data(
            sid,
            b"d" * min(size, c.local_flow_control_window(sid), c.max_outbound_frame_size),
            end,
            pad,
        ),
        trailers,
        lambda c: c.reset_stream(sid, draw(st.integers(0, 13))),
        lambda c: c.ping(b"12345678"),
        lambda c: c.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: size}),
        lambda c: c.update_settings({SettingCodes.HEADER_TABLE_SIZE: size % 5000}),
        lambda c: c.increment_flow_control_window(size + 1, sid if end else None),
        lambda c: c.prioritize(sid, weight=16),
        lambda c: c.close_connection(draw(st.sampled_from([0, 1, 2])), last_stream_id=sid),
    ]


@st.composite
def traffic(draw: st.DrawFn) -> list[bytes]:
    """What a raw client sends, cut where it flushed, with random bytes sometimes added."""
    client = H2Connection(
        H2Configuration(client_side=True, header_encoding=None,
                        validate_outbound_headers=False, normalize_outbound_headers=False)
    )  # fmt: skip
    client.initiate_connection()
    chunks = [client.data_to_send()]
    declared: set[int] = set()
    for _ in range(draw(st.integers(1, 14))):
        op = draw(st.sampled_from(_ops(draw, declared)))
        try:
            op(client)
        except (H2Error, ValueError, KeyError):
            continue  # the raw client refuses it: not traffic
        chunks.append(client.data_to_send())
        if draw(st.integers(0, 19)) == 0:
            chunks.append(draw(st.binary(min_size=1, max_size=30)))
    return [chunk for chunk in chunks if chunk]


def _goaway_code(data: bytes) -> int | None:
    """The error code of the last GOAWAY in `data`, if any."""
    code = None
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if isinstance(frame, GoAwayFrame):
            frame.parse_body(view[9 : 9 + length])
            code = frame.error_code
        view = view[9 + length :]
    return code


Outcome = tuple[list[Event], bool]


def _run(
    codec: H2Codec | h2_reference.H2Codec, chunks: list[bytes]
) -> tuple[list[Outcome], int | None]:
    outcomes: list[Outcome] = []
    sent = b""
    codec.initiate()
    codec.data_to_send()
    for chunk in chunks:
        try:
            events = codec.feed(chunk)
        except HttpError:
            outcomes.append(([], True))
            sent += codec.data_to_send()
            break
        for event in events:
            if isinstance(event, Data):
                codec.acknowledge(event.stream_id, len(event.data))
        outcomes.append((events, False))
        sent += codec.data_to_send()
    return outcomes, _goaway_code(sent)


@FUZZ
@given(traffic(), st.sampled_from([H2Settings(), SMALL]))
def test_same_events_and_errors_as_the_h2_package(chunks: list[bytes], limits: H2Settings) -> None:
    ours = _run(H2Codec(client_side=False, settings=limits), chunks)
    theirs = _run(h2_reference.H2Codec(client_side=False, settings=limits), chunks)
    if ours[1] == ErrorCode.COMPRESSION_ERROR and theirs[1] == ErrorCode.PROTOCOL_ERROR:
        ours = ours[0], theirs[1]  # an undecodable block: h2 says PROTOCOL_ERROR, RFC 7541 this
    if ours != theirs and ours[1] == ErrorCode.FRAME_SIZE_ERROR and theirs[1] is None:
        # Refused from the header; h2 is still buffering the payload it was promised.
        failed_at = len(ours[0]) - 1
        assert ours[0][:failed_at] == theirs[0][:failed_at]
        assert all(outcome == ([], False) for outcome in theirs[0][failed_at:])
        return
    assert ours == theirs


RESPONSES = [
    [(b":status", b"200")],
    [(b":status", b"100")],
    [(b":status", b"204")],
    [(b":status", b"2xx")],
    [(b":status", b"200"), (b"content-length", b"3")],
    [(b":status", b"200"), (b"Bad", b"x")],
]


def _server_ops(data: st.DataObject, answered: set[int]) -> list[Op]:
    """What a raw server may do. A malformed head that ends its stream (trailers first, a
    second final head, a bad :status with END_STREAM) is left out: h2 makes it a connection
    error, the stream having closed, and mecha a stream error (RFC 9113 §8.1.1). So are
    trailers where a declared body never came (h2 lets them by; the message is malformed,
    §8.1.1) and a
    GOAWAY with an error: the reference reports its refused streams again at a later one."""
    sid = data.draw(st.sampled_from([1, 3, 5, 7]))
    size = data.draw(st.integers(0, 20000))
    end = data.draw(st.booleans())
    pad = data.draw(st.none() | st.integers(0, 255))
    block = data.draw(st.sampled_from(RESPONSES))
    final = block[0][1][:1] != b"1"

    def respond(c: H2Connection) -> None:
        malformed = block in RESPONSES[3:] or not final
        no_body = block[0][1] == b"204" and not end  # mecha refuses its DATA, h2 does not
        if (final and sid in answered) or (malformed and end) or no_body:
            raise ValueError("a malformed head that ends its stream")
        c.send_headers(sid, block, end_stream=end)
        if final:
            answered.add(sid)
            if len(block) > 1:
                answered.add(-sid)  # declared a length: trailers-only would contradict it

    def trailers(c: H2Connection) -> None:
        if sid not in answered or -sid in answered:
            raise ValueError("trailers before the head, or instead of a declared body")
        c.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)

    return [
        respond,
        lambda c: c.send_data(
            sid,
            b"d" * min(size, c.local_flow_control_window(sid), c.max_outbound_frame_size),
            end,
            pad,
        ),
        trailers,
        lambda c: c.reset_stream(sid, data.draw(st.integers(0, 13))),
        lambda c: c.ping(b"abcdefgh"),
        lambda c: c.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: size % 10}),
        lambda c: c.close_connection(0, last_stream_id=sid),
    ]


def _requests(codec: H2Codec | h2_reference.H2Codec) -> bytes:
    codec.initiate()
    for i in range(4):
        head = RequestHeaders(
            b"GET", b"/%d" % i, b"a", Headers([]), stream_id=codec.next_stream_id()
        )
        codec.send_headers(head, end_stream=True)
    return codec.data_to_send()


@FUZZ
@given(st.data())
def test_client_side_same_events_and_errors_as_the_h2_package(data: st.DataObject) -> None:
    ours, theirs = H2Codec(client_side=True), h2_reference.H2Codec(client_side=True)
    server = H2Connection(
        H2Configuration(client_side=False, header_encoding=None,
                        validate_outbound_headers=False, normalize_outbound_headers=False)
    )  # fmt: skip
    server.initiate_connection()
    server.receive_data(_requests(ours))
    _requests(theirs)
    chunks = [server.data_to_send()]
    answered: set[int] = set()
    for _ in range(data.draw(st.integers(1, 12))):
        op = data.draw(st.sampled_from(_server_ops(data, answered)))
        try:
            op(server)
        except (H2Error, ValueError, KeyError):
            continue
        chunks.append(server.data_to_send())
    chunks = [chunk for chunk in chunks if chunk]
    assert _feed_all(ours, chunks) == _feed_all(theirs, chunks)


def _feed_all(
    codec: H2Codec | h2_reference.H2Codec, chunks: list[bytes]
) -> tuple[list[Outcome], int | None]:
    outcomes: list[Outcome] = []
    sent = b""
    for chunk in chunks:
        try:
            events = codec.feed(chunk)
        except HttpError:
            outcomes.append(([], True))
            sent += codec.data_to_send()
            break
        outcomes.append((events, False))
        for event in events:
            if isinstance(event, Data):
                codec.acknowledge(event.stream_id, len(event.data))
        sent += codec.data_to_send()
    return outcomes, _goaway_code(sent)
