"""Heads read for forwarding as bytes (protocols/http/h1_forward.py) and its compiled twin.

Both implementations run every case; a differential test holds them to the same answers on
generated and mutated heads; and whatever they forward, the full codec parses the same way
(the forwarding path declines, it never decides differently from the codec).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.http import h1_forward
from protocols.http.errors import HttpError
from protocols.http.events import Data, RequestHeaders, ResponseHeaders
from protocols.http.h1 import H1ClientCodec, H1ServerCodec
from protocols.http.h1_forward import RequestHead, ResponseHead, without_fields
from protocols.http.h1_parse import DEFAULT_LIMITS, H1Limits

try:
    from protocols.http import _h1_forward_c as native
except ImportError:  # not built: scripts/build-native (the test below says so)
    native = None  # type: ignore[assignment]

IMPLEMENTATIONS: list[Any] = [
    pytest.param((h1_forward._read_request, h1_forward._read_response), id="python"),
    pytest.param(
        (native.read_request, native.read_response) if native else (None, None),
        id="compiled",
        marks=pytest.mark.skipif(native is None, reason="not built"),
    ),
]
Readers = tuple[Callable[..., RequestHead | None], Callable[..., ResponseHead | None]]


def test_the_compiled_twin_is_built_and_used() -> None:
    """scripts/setup.sh builds it; the forwarding path uses it unless told not to."""
    if os.environ.get("MECHA_PURE_PYTHON"):
        assert h1_forward.read_request is h1_forward._read_request
        return
    assert native is not None, "run scripts/build-native (scripts/setup.sh does)"
    assert h1_forward.read_request is native.read_request


def request(head: bytes, readers: Readers, limits: H1Limits = DEFAULT_LIMITS) -> Any:
    return readers[0](head, head.find(b"\r\n\r\n"), limits)


def response(head: bytes, readers: Readers, method: bytes = b"GET") -> Any:
    return readers[1](head, head.find(b"\r\n\r\n"), DEFAULT_LIMITS, method)


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
def test_a_plain_request_is_read(readers: Readers) -> None:
    head = (b"POST /a?b=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
            b"X-Request-Id:  abc \r\nAccept: */*\r\n\r\n")  # fmt: skip
    read = request(head, readers)
    assert read is not None
    assert (read.method, read.target, read.authority) == (b"POST", b"/a?b=1", b"example.com")
    assert read.line == b"POST /a?b=1 HTTP/1.1\r\n"
    assert read.block == head[len(read.line) : -2]
    assert read.lowered == b"\n" + read.block.lower()
    assert read.fields == {b"host": b"example.com", b"content-length": b"5",
                           b"x-request-id": b"abc"}  # fmt: skip
    assert (read.length, read.keep_alive) == (5, True)


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
def test_any_field_is_found_by_its_name(readers: Readers) -> None:
    head = (b"GET / HTTP/1.1\r\nHost: h\r\nX-Token-Extra: no\r\nDapr-Api-Token: \t s e \r\n"
            b"dapr-api-token: second\r\nEmpty:\r\n\r\n")  # fmt: skip
    read = request(head, readers)
    assert read is not None
    assert read.field(b"dapr-api-token") == b"s e"  # the first, whitespace around it cut
    assert read.field(b"host") == b"h" and read.field(b"empty") == b""
    assert read.field(b"token") is None and read.field(b"x-token") is None


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("connection", "keep_alive"),
    [(b"keep-alive", True), (b"Close", False), (b"keep-alive, close", False)],
)
def test_connection_decides_keep_alive(
    readers: Readers, connection: bytes, keep_alive: bool
) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + connection + b"\r\n\r\n"
    read = request(head, readers)
    assert read is not None and read.keep_alive is keep_alive


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",  # HTTP/1.0: the codec
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",  # absolute form
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # an empty line first
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",  # not a host
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
        b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # whitespace before the colon
        b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",  # a bare LF
        b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\xc3T / HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_what_needs_the_codec_is_declined(readers: Readers, head: bytes) -> None:
    assert request(head, readers) is None


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
def test_limits_are_the_codecs(readers: Readers) -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nA: 1\r\n\r\n"
    assert request(head, readers, H1Limits(max_body=10)) is None
    assert request(head, readers, H1Limits(max_headers=2)) is None
    assert request(head, readers, H1Limits(max_headers=3, max_body=11)) is not None
    long_target = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert request(long_target, readers) is None  # 414 is the codec's to answer


NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n"
)


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
def test_a_response_loses_its_hop_by_hop_fields(readers: Readers) -> None:
    read = response(NGINX, readers)
    assert read is not None
    assert (read.status, read.length, read.keep_alive) == (200, 12, True)
    assert read.head == (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 12\r\n")  # fmt: skip


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("head", "method", "length", "keep_alive"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET", 0, True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", b"GET", 0, True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", b"HEAD", 0, True),
        (b"HTTP/1.1 404\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", b"GET", 0, False),
        (b"HTTP/1.1 500 \r\nContent-Length: 3\r\n\r\n", b"POST", 3, True),
    ],
)
def test_response_framing(
    readers: Readers, head: bytes, method: bytes, length: int, keep_alive: bool
) -> None:
    read = response(head, readers, method)
    assert read is not None and (read.length, read.keep_alive) == (length, keep_alive)


@pytest.mark.parametrize("readers", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",  # delimited by close: the codec re-frames it
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close, x-a\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: \x01\r\n\r\n",
    ],
)
def test_responses_that_need_the_codec_are_declined(readers: Readers, head: bytes) -> None:
    assert response(head, readers) is None


def test_without_fields_cuts_every_line_of_each_name() -> None:
    block = b"A: 1\r\nConnection: x\r\nB: 2\r\nconnection: y\r\nX-Connection: z\r\n"
    lowered = b"\n" + block.lower()
    assert without_fields(block, lowered, [b"connection"]) == b"A: 1\r\nB: 2\r\nX-Connection: z\r\n"
    cut = without_fields(block, lowered, [b"a", b"b"])
    assert cut == b"Connection: x\r\nconnection: y\r\nX-Connection: z\r\n"


# -- differential: the twins agree, and the codec agrees with what they forward ----------------

NAMES = [b"Host", b"Content-Length", b"Connection", b"X-Request-Id", b"X-Forwarded-For",
         b"Traceparent", b"Content-Type", b"User-Agent", b"Transfer-Encoding", b"Keep-Alive",
         b"Upgrade", b"Expect", b"TE", b"Accept", b"X-Long-Name-Here", b"Host2"]  # fmt: skip
VALUES = [b"a", b"example.com:80", b"5", b"0", b"keep-alive", b"close", b"chunked", b"",
          b"  spaced  ", b"x, y", b"\t", b"caf\xc3\xa9", b"1, 1"]  # fmt: skip


@st.composite
def heads(draw: st.DrawFn, response_side: bool) -> bytes:
    fields = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)),
                           max_size=6))  # fmt: skip
    if response_side:
        status = draw(st.sampled_from([b"200 OK", b"204 No Content", b"304", b"404 Nope",
                                       b"101 Switching", b"200 "]))  # fmt: skip
        line = b"HTTP/" + draw(st.sampled_from([b"1.1", b"1.0"])) + b" " + status
    else:
        method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT"]))
        target = draw(st.sampled_from([b"/", b"/a?b", b"*", b"http://x/"]))
        line = method + b" " + target + b" HTTP/" + draw(st.sampled_from([b"1.1", b"1.0"]))
    head = line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"
    if draw(st.booleans()):  # mutate one byte
        at = draw(st.integers(0, len(head) - 5))
        byte = draw(st.sampled_from([b"\r", b"\n", b" ", b"\x00", b":", b"A", b"\x7f"]))
        head = head[:at] + byte + head[at + 1 :]
    return head


def same(a: RequestHead | ResponseHead | None, b: RequestHead | ResponseHead | None) -> bool:
    if a is None or b is None:
        return a is b
    slots = [name.lstrip("_") for name in type(a).__slots__]  # (lowered: a property)
    return all(getattr(a, name) == getattr(b, name) for name in slots)


@pytest.mark.skipif(native is None, reason="the compiled twin is not built")
@settings(max_examples=400, deadline=None)
@given(heads(response_side=False), heads(response_side=True))
def test_the_twins_agree(request_head: bytes, response_head: bytes) -> None:
    for head, readers in ((request_head, 0), (response_head, 1)):
        end = head.find(b"\r\n\r\n")
        if end < 0:
            continue
        args: tuple[Any, ...] = (head, end, DEFAULT_LIMITS)
        if readers:
            args += (b"GET",)
        pure = (h1_forward._read_request, h1_forward._read_response)[readers](*args)
        compiled = (native.read_request, native.read_response)[readers](*args)
        assert same(pure, compiled), (head, pure, compiled)


@settings(max_examples=300, deadline=None)
@given(heads(response_side=False))
def test_a_request_forwarded_is_one_the_codec_reads_alike(head: bytes) -> None:
    end = head.find(b"\r\n\r\n")
    read = h1_forward.read_request(head, end, DEFAULT_LIMITS) if end >= 0 else None
    if read is None:
        return
    (parsed,) = H1ServerCodec().feed(head[: end + 4])
    assert isinstance(parsed, RequestHeaders)
    assert (parsed.method, parsed.path, parsed.authority) == (read.method, read.target,
                                                              read.authority)  # fmt: skip
    assert parsed.keep_alive is read.keep_alive
    assert (parsed.content_length or 0) == read.length


@settings(max_examples=300, deadline=None)
@given(heads(response_side=True), st.sampled_from([b"GET", b"HEAD"]))
def test_a_response_forwarded_is_one_the_codec_reads_alike(head: bytes, method: bytes) -> None:
    end = head.find(b"\r\n\r\n")
    read = h1_forward.read_response(head, end, DEFAULT_LIMITS, method) if end >= 0 else None
    if read is None:
        return
    codec = H1ClientCodec()
    codec.expect_response(method)
    try:
        events = codec.feed(head[: end + 4] + b"x" * read.length)
    except HttpError as error:  # pragma: no cover - a disagreement, reported below
        pytest.fail(f"forwarded a head the codec refuses: {head!r}: {error}")
    parsed, last = events[0], events[-1]
    assert isinstance(parsed, ResponseHeaders)
    assert parsed.status == read.status
    assert parsed.keep_alive is read.keep_alive
    assert isinstance(last, ResponseHeaders | Data) and last.end_stream
