"""HTTP/1.1 client codec: response tables, byte-at-a-time feeding, request framing,
keep-alive, and round trips from the server codec's encode_response."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.http.errors import HttpError
from protocols.http.events import Data, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h1 import H1ClientCodec, H1ServerCodec
from protocols.http.headers import Headers
from tests.unit.h1_cases import (
    BAD_RESPONSES,
    LATE_RESPONSES,
    RESPONSES,
    Bad,
    Case,
    H,
    Late,
    fetch,
    normalise,
    one_by_one,
    request,
)

# -- parsing tables --------------------------------------------------------------------------


@pytest.mark.parametrize("case", RESPONSES, ids=lambda c: c.id)
def test_response_table(case: Case) -> None:
    assert fetch(case.requests, [case.data]) == case.events


@pytest.mark.parametrize("case", RESPONSES, ids=lambda c: c.id)
def test_response_byte_at_a_time(case: Case) -> None:
    assert normalise(fetch(case.requests, one_by_one(case.data))) == normalise(case.events)


@pytest.mark.parametrize("split", ["whole", "bytes"])
@pytest.mark.parametrize("bad", BAD_RESPONSES, ids=lambda b: b.id)
def test_malformed_response_is_a_bad_gateway(bad: Bad, split: str) -> None:
    chunks = [bad.data] if split == "whole" else one_by_one(bad.data)
    with pytest.raises(HttpError) as info:
        fetch([request()], chunks, bad.limits)
    assert info.value.status == bad.status


@pytest.mark.parametrize("late", LATE_RESPONSES, ids=lambda c: c.id)
def test_whole_responses_come_out_before_the_error(late: Late) -> None:
    codec = H1ClientCodec()
    for head in late.requests:
        codec.encode_request(head)
    assert codec.feed(late.data) == late.events
    assert not codec.keep_alive
    with pytest.raises(HttpError) as info:
        codec.feed(b"")
    assert info.value.status == 502


def test_response_body_is_a_slice_of_the_input() -> None:
    codec = H1ClientCodec()
    codec.encode_request(request())
    codec.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    chunk = b"abcd"
    (data,) = codec.feed(chunk)
    assert isinstance(data, Data) and data.data is chunk


# -- keep-alive ------------------------------------------------------------------------------

KEEP = [
    ("content_length", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", True),
    ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", True),
    ("close_delimited", b"HTTP/1.1 200 OK\r\n\r\nabc", False),
    ("server_close", b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", False),
    ("http10", b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    ("http10_keep_alive", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0"
     b"\r\n\r\n", True),
]  # fmt: skip


@pytest.mark.parametrize(("response", "keep"), [k[1:] for k in KEEP], ids=[k[0] for k in KEEP])
def test_keep_alive_after_response(response: bytes, keep: bool) -> None:
    codec = H1ClientCodec()
    codec.encode_request(request())
    codec.feed(response)
    assert codec.keep_alive is keep
    if keep:
        codec.encode_request(request())
    else:
        with pytest.raises(RuntimeError):
            codec.encode_request(request())


def test_request_with_connection_close_ends_keep_alive() -> None:
    codec = H1ClientCodec()
    wire = codec.encode_request(
        RequestHeaders(b"GET", b"/", b"h", H(), end_stream=True, keep_alive=False)
    )
    assert wire == b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"
    assert not codec.keep_alive


def test_response_before_request_body_finished_ends_keep_alive() -> None:
    codec = H1ClientCodec()
    codec.encode_request(RequestHeaders(b"POST", b"/", b"h", H(), content_length=10))
    codec.encode_data(b"abc", False)
    codec.feed(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
    assert not codec.keep_alive


def test_bytes_after_a_closing_response_are_ignored() -> None:
    codec = H1ClientCodec()
    codec.encode_request(request())
    codec.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert codec.feed(b"garbage") == []
    assert codec.buffered == 0
    assert codec.feed(b"") == []


def test_idle_close_is_clean_but_an_owed_response_is_not() -> None:
    idle = H1ClientCodec()
    assert idle.feed(b"") == []
    owed = H1ClientCodec()
    owed.encode_request(request())
    with pytest.raises(HttpError) as info:
        owed.feed(b"")
    assert info.value.status == 502


# -- request framing -------------------------------------------------------------------------

REQUEST_FRAMING: list[tuple[str, RequestHeaders, list[tuple[bytes, bool]], bytes]] = [
    ("host_added_when_missing", RequestHeaders(b"GET", b"/p", b"example.com", H(),
     end_stream=True), [], b"GET /p HTTP/1.1\r\nhost: example.com\r\n\r\n"),
    ("raw_block_reused", RequestHeaders(b"GET", b"/", b"a", Headers([(b"host", b"a")],
     raw=b"HOST:  a\r\n"), end_stream=True), [], b"GET / HTTP/1.1\r\nHOST:  a\r\n\r\n"),
    ("post_without_body_gets_zero_length", RequestHeaders(b"POST", b"/", b"a", H((b"host", b"a")),
     end_stream=True), [], b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"),
    ("get_without_body_gets_no_length", RequestHeaders(b"DELETE", b"/", b"a", H((b"host", b"a")),
     end_stream=True), [], b"DELETE / HTTP/1.1\r\nhost: a\r\n\r\n"),
    ("known_length", RequestHeaders(b"PUT", b"/", b"a", H((b"host", b"a")), content_length=3),
     [(b"ab", False), (b"c", True)],
     b"PUT / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc"),
    ("unknown_length_is_chunked", RequestHeaders(b"POST", b"/", b"a", H((b"host", b"a"))),
     [(b"ab", False), (b"c", True)],
     b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n"
     b"0\r\n\r\n"),
    ("transfer_encoding_dropped_with_length", RequestHeaders(b"POST", b"/", b"a",
     H((b"host", b"a"), (b"transfer-encoding", b"chunked"), (b"content-length", b"1"))),
     [(b"x", True)], b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nx"),
    ("connect_is_a_tunnel", RequestHeaders(b"CONNECT", b"a:443", b"a:443", H((b"host", b"a:443"))),
     [(b"\x16\x03", False)], b"CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n\x16\x03"),
    ("upgrade_is_a_tunnel", RequestHeaders(b"GET", b"/", b"a", H((b"host", b"a"),
     (b"connection", b"upgrade"), (b"upgrade", b"websocket")), upgrade=b"websocket"),
     [(b"\x81\x00", False)],
     b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n\x81\x00"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("head", "steps", "wire"),
    [case[1:] for case in REQUEST_FRAMING],
    ids=[case[0] for case in REQUEST_FRAMING],
)
def test_request_framing(
    head: RequestHeaders, steps: list[tuple[bytes, bool]], wire: bytes
) -> None:
    codec = H1ClientCodec()
    out = codec.encode_request(head)
    for data, end in steps:
        out += codec.encode_data(data, end)
    assert out == wire


def test_trailers_follow_the_last_chunk() -> None:
    codec = H1ClientCodec()
    codec.encode_request(RequestHeaders(b"POST", b"/", b"a", H((b"host", b"a"))))
    assert codec.encode_trailers(H((b"x-sum", b"1"))) == b"0\r\nx-sum: 1\r\n\r\n"


def test_one_request_at_a_time_on_the_wire() -> None:
    codec = H1ClientCodec()
    codec.encode_request(RequestHeaders(b"POST", b"/", b"a", H()))
    with pytest.raises(RuntimeError):
        codec.encode_request(request())


def test_pipelined_requests_get_their_responses_in_order() -> None:
    codec = H1ClientCodec()
    codec.encode_request(request(b"HEAD"))
    codec.encode_request(request())
    events = codec.feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"  # HEAD: no body despite the length
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert [type(e) for e in events] == [ResponseHeaders, ResponseHeaders, Data]
    assert isinstance(events[0], ResponseHeaders) and events[0].end_stream
    assert events[2] == Data(b"abc", end_stream=True)


# -- round trips: H1ServerCodec.encode_response -> H1ClientCodec.feed ------------------------


def respond(
    request_bytes: bytes, head: ResponseHeaders, body: list[bytes], trailers: Headers | None
) -> bytes:
    server = H1ServerCodec()
    server.feed(request_bytes)
    wire = server.encode_response(head)
    for i, chunk in enumerate(body):
        wire += server.encode_data(chunk, i == len(body) - 1 and trailers is None)
    if trailers is not None:
        wire += server.encode_trailers(trailers)
    elif not body and not head.end_stream:
        wire += server.encode_data(b"", True)
    return wire


def check_response_round_trip(
    method: bytes, head: ResponseHeaders, body: list[bytes], trailers: Headers | None, wire: bytes
) -> None:
    for chunks in ([wire], one_by_one(wire)):
        events = normalise(fetch([request(method)], chunks))
        got = events[0]
        assert isinstance(got, ResponseHeaders)
        assert got.status == head.status
        framing = (b"content-length", b"transfer-encoding", b"connection")
        assert [kv for kv in got.headers if kv[0] not in framing] == [
            kv for kv in head.headers if kv[0] not in framing
        ]
        received = b"".join(e.data for e in events[1:] if isinstance(e, Data))
        assert received == (b"" if method == b"HEAD" else b"".join(body))
        if trailers:
            assert events[-1] == Trailers(trailers)
        last = events[-1]
        assert isinstance(last, Data | Trailers | ResponseHeaders) and last.end_stream


ROUND_TRIPS = [
    (b"GET", ResponseHeaders(200, H((b"content-type", b"text/html"))), [b"<p>", b"hi"], None),
    (b"GET", ResponseHeaders(404, H(), content_length=2), [b"no"], None),
    (b"GET", ResponseHeaders(200, H()), [b"a", b"b"], H((b"grpc-status", b"0"))),
    (b"GET", ResponseHeaders(204, H(), end_stream=True), [], None),
    (b"HEAD", ResponseHeaders(200, H((b"content-length", b"10")), end_stream=True), [], None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "head", "body", "trailers"), ROUND_TRIPS)
def test_response_round_trip(
    method: bytes, head: ResponseHeaders, body: list[bytes], trailers: Headers | None
) -> None:
    wire = respond(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n", head, body, trailers)
    check_response_round_trip(method, head, body, trailers, wire)


_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10).map(str.encode)
_value = st.text("abcXYZ 019/;=,\"'", max_size=16).map(lambda s: s.strip().encode())
_fields = st.lists(
    st.tuples(_token, _value).filter(
        lambda kv: kv[0] not in (b"content-length", b"transfer-encoding", b"connection")
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from([200, 201, 202, 203, 206, 301, 400, 404, 500, 599]),
    fields=_fields,
    body=st.lists(st.binary(max_size=40), max_size=4),
    framing=st.sampled_from(["length", "chunked", "trailers"]),
    trailer_fields=_fields,
)
def test_response_round_trip_property(
    status: int, fields: list[tuple[bytes, bytes]], body: list[bytes], framing: str,
    trailer_fields: list[tuple[bytes, bytes]],
) -> None:  # fmt: skip
    length = sum(map(len, body)) if framing == "length" else None
    head = ResponseHeaders(status, Headers(fields), content_length=length)
    trailers = Headers(trailer_fields) if framing == "trailers" else None
    wire = respond(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", head, body, trailers)
    check_response_round_trip(b"GET", head, body, trailers, wire)
