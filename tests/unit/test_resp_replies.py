"""ReplyParser and the reply helpers and encoders: tables of replies (RESP2 and RESP3) that
must come out as the exact spans received, malformed replies with their reasons, the same
stream split every way, a differential test of span boundaries against hiredis, limits."""

from __future__ import annotations

from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.redis.encode import (
    MapValue,
    encode_array,
    encode_bulk,
    encode_command,
    encode_integer,
    encode_map,
    encode_simple,
)
from protocols.redis.errors import RespError
from protocols.redis.limits import RespLimits
from protocols.redis.replies import (
    ReplyParser,
    array_elements,
    error_span,
    reply_integer,
    reply_is_error,
)

Spans = list[bytes]


def run(chunks: list[bytes], limits: RespLimits | None = None) -> tuple[Spans, str | None]:
    """Feed chunks in order: every span completed, and the error reason if one came."""
    parser = ReplyParser(limits or RespLimits())
    spans: Spans = []
    for chunk in chunks:
        try:
            spans += parser.feed(chunk)
        except RespError as error:
            return spans + error.replies, error.reason
    return spans, None


def splits(data: bytes) -> list[list[bytes]]:
    """Whole, one byte at a time, fixed sizes, and two pieces cut at several offsets."""
    ways = [[data[i : i + size] for i in range(0, len(data), size)] for size in (1, 2, 3, 7)]
    ways += [[data]] + [
        [data[:cut], data[cut:]] for cut in range(1, len(data), max(1, len(data) // 9))
    ]
    return ways


def decoded(data: bytes) -> list[Any]:
    """Everything hiredis decodes from data, errors made comparable."""
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (reply := reader.gets()) is not False:
        out.append(_comparable(reply))
    return out


def _comparable(value: Any) -> Any:
    if isinstance(value, hiredis.ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


# -- good replies --------------------------------------------------------------------------

REPLIES: list[bytes] = [
    b"+OK\r\n",
    b"+\r\n",
    b"-ERR unknown command 'FOO'\r\n",
    b":0\r\n",
    b":-42\r\n",
    b"$3\r\nfoo\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"$4\r\n\r\n\r\n\r\n",
    b"$11\r\n*1\r\n$1\r\nx\r\n\r\n",
    b"$10000\r\n" + b"v" * 10000 + b"\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$3\r\nfoo\r\n$-1\r\n",
    b"*3\r\n:1\r\n*2\r\n+a\r\n*0\r\n-ERR x\r\n",
    b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
    # RESP3
    b"_\r\n",
    b",3.14\r\n",
    b",inf\r\n",
    b"#t\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"%2\r\n+first\r\n:1\r\n+second\r\n*1\r\n:2\r\n",
    b"%0\r\n",
    b"~3\r\n+a\r\n+b\r\n:1\r\n",
    b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
    b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.07\r\n"
    b"*2\r\n:2039123\r\n:9543892\r\n",
    b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
    b"|0\r\n+OK\r\n",
    b"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n$1\r\nx\r\n",
    b"*1\r\n%1\r\n~1\r\n>1\r\n|1\r\n+a\r\n*0\r\n=5\r\ntxt:x\r\n:2\r\n",
]  # fmt: skip


@pytest.mark.parametrize("reply", REPLIES)
def test_reply_is_one_span(reply: bytes) -> None:
    for chunks in splits(reply):
        assert run(chunks) == ([reply], None)


def test_replies_in_one_stream() -> None:
    data = b"".join(REPLIES)
    for chunks in splits(data):
        spans, error = run(chunks)
        assert error is None
        assert spans == REPLIES
        assert all(type(s) is bytes for s in spans)


def test_parser_carries_on_after_many_feeds() -> None:
    parser = ReplyParser()
    for _ in range(100):
        assert parser.feed(b"$3\r\nf") == []
        assert parser.feed(b"oo\r\n+OK\r\n*2\r\n:1") == [b"$3\r\nfoo\r\n", b"+OK\r\n"]
        assert parser.feed(b"\r\n:2\r\n") == [b"*2\r\n:1\r\n:2\r\n"]
    assert parser.buffered == 0


def test_large_bulk_in_pieces_is_joined_once() -> None:
    """Pieces of a bulk whose header was read are only collected until the bulk is whole."""
    parser = ReplyParser()
    data = b"*2\r\n:1\r\n$" + b"%d\r\n" % (4 << 20) + b"v" * (4 << 20) + b"\r\n"
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    for piece in pieces[:-1]:
        assert parser.feed(piece) == []
    assert len(parser._wait) == len(pieces) - 2  # kept as they came, never re-joined
    assert parser.feed(pieces[-1]) == [data]


# -- malformed replies ---------------------------------------------------------------------

BAD_REPLIES: list[tuple[bytes, str]] = [
    (b"?\r\n", "unexpected reply type '?'"),
    (b"\r\n", "unexpected reply type '\\r'"),
    (b"$?\r\n", "streamed replies are not supported"),
    (b"*?\r\n", "streamed replies are not supported"),
    (b"~?\r\n", "streamed replies are not supported"),
    (b";4\r\nabcd\r\n", "unexpected reply type ';'"),
    (b"$x\r\n", "invalid bulk length"),
    (b"$-2\r\n", "invalid bulk length"),
    (b"!-1\r\n", "invalid bulk length"),
    (b"$+3\r\nfoo\r\n", "invalid bulk length"),
    (b"$3\r\nfooXY", "bulk data not followed by CRLF"),
    (b"$12345678901234567890123", "invalid bulk length"),
    (b"*x\r\n", "invalid multibulk length"),
    (b"%-1\r\n", "invalid multibulk length"),
    (b"*12345678901234567890123", "invalid multibulk length"),
    (b"*1\r\n*1\r\n?", "unexpected reply type '?'"),
    (b"+" + b"x" * 65537, "reply line too long"),
]


@pytest.mark.parametrize(("data", "reason"), BAD_REPLIES)
def test_bad_replies(data: bytes, reason: str) -> None:
    for chunks in splits(data):
        assert run(chunks) == ([], reason)


def test_replies_before_the_error_are_kept() -> None:
    data = b"+OK\r\n$3\r\nfoo\r\n*1\r\n+x\r\n*2\r\n:1\r\n@"
    for chunks in splits(data):
        assert run(chunks) == (
            [b"+OK\r\n", b"$3\r\nfoo\r\n", b"*1\r\n+x\r\n"],
            "unexpected reply type '@'",
        )


def test_error_is_sticky() -> None:
    parser = ReplyParser()
    with pytest.raises(RespError) as caught:
        parser.feed(b"+OK\r\n?")
    assert caught.value.replies == [b"+OK\r\n"]
    with pytest.raises(RespError) as again:
        parser.feed(b"+OK\r\n")
    assert again.value is caught.value


# -- limits --------------------------------------------------------------------------------

SMALL = RespLimits(max_bulk=100, max_array=4, max_inline=32, max_nesting=3, max_reply=300)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"$101\r\n", "invalid bulk length"),
        (b"*1\r\n$101\r\n", "invalid bulk length"),
        (b"*5\r\n", "invalid multibulk length"),
        (b"%5\r\n", "invalid multibulk length"),
        (b"*1\r\n*1\r\n*1\r\n*1\r\n", "reply nested too deeply"),
        (b"*4\r\n" + (b"*4\r\n" + (b"+" + b"x" * 30 + b"\r\n") * 4) * 4, "reply too large"),
        (
            b"*4\r\n"
            + b"$100\r\n"
            + b"x" * 100
            + b"\r\n"
            + b"$100\r\n"
            + b"x" * 100
            + b"\r\n"
            + b"$100\r\n",
            "reply too large",
        ),
        (
            b"*4\r\n" + b"+" + b"x" * 30 + b"\r\n" + b"+" + b"y" * 32 + b"\r\n",
            "reply line too long",
        ),
    ],
)
def test_limits(data: bytes, reason: str) -> None:
    for chunks in splits(data):
        assert run(chunks, SMALL) == ([], reason)


def test_oversized_bulk_refused_at_its_header() -> None:
    parser = ReplyParser()
    with pytest.raises(RespError, match="invalid bulk length"):
        parser.feed(b"*2\r\n:1\r\n$536870913\r\n")
    parser = ReplyParser()
    assert parser.feed(b"*2\r\n:1\r\n$536870912\r\nabc") == []
    assert parser.buffered < 64


def test_limits_allow_what_fits() -> None:
    data = b"*3\r\n$100\r\n" + b"x" * 100 + b"\r\n*2\r\n*1\r\n:1\r\n+" + b"y" * 31 + b"\r\n:1\r\n"
    for chunks in splits(data):
        assert run(chunks, SMALL) == ([data], None)


# -- differential against hiredis (RESP2) --------------------------------------------------


def resp2(depth: int = 3) -> st.SearchStrategy[bytes]:
    text = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
    scalars = st.one_of(
        text.map(lambda b: b"+" + b + b"\r\n"),
        text.map(lambda b: b"-ERR " + b + b"\r\n"),
        st.integers(-(2**63), 2**63 - 1).map(lambda n: b":%d\r\n" % n),
        st.binary(max_size=40).map(lambda b: b"$%d\r\n%s\r\n" % (len(b), b)),
        st.just(b"$-1\r\n"),
        st.just(b"*-1\r\n"),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5).map(
            lambda xs: b"*%d\r\n" % len(xs) + b"".join(xs)
        ),
        max_leaves=20,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(resp2(), min_size=1, max_size=8), st.data())
def test_boundaries_agree_with_hiredis(replies: list[bytes], draw: st.DataObject) -> None:
    data = b"".join(replies)
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    spans, error = run(chunks)
    assert error is None
    expected = decoded(data)
    assert len(spans) == len(expected)
    assert [decoded(span) for span in spans] == [[value] for value in expected]
    assert spans == replies


# -- helpers -------------------------------------------------------------------------------


def test_reply_integer() -> None:
    assert reply_integer(b":42\r\n") == 42
    assert reply_integer(b":-7\r\n") == -7
    assert reply_integer(b"|1\r\n+a\r\n+b\r\n:5\r\n") == 5
    for span in (b"+42\r\n", b"$2\r\n42\r\n", b"-ERR\r\n", b":x\r\n", b":\r\n"):
        assert reply_integer(span) is None


def test_reply_is_error() -> None:
    assert reply_is_error(b"-ERR x\r\n")
    assert reply_is_error(b"!3\r\nerr\r\n")
    assert reply_is_error(b"|1\r\n+a\r\n*1\r\n:1\r\n-MOVED 1 h:1\r\n")
    for span in (b"+OK\r\n", b"$1\r\n-\r\n", b"*1\r\n-ERR\r\n", b":-1\r\n"):
        assert not reply_is_error(span)


@pytest.mark.parametrize(
    ("span", "elements"),
    [
        (b"*0\r\n", []),
        (b"*2\r\n$3\r\nfoo\r\n$-1\r\n", [b"$3\r\nfoo\r\n", b"$-1\r\n"]),
        (b"*2\r\n*1\r\n:1\r\n-ERR x\r\n", [b"*1\r\n:1\r\n", b"-ERR x\r\n"]),
        (b"%1\r\n+k\r\n*1\r\n$1\r\nv\r\n", [b"+k\r\n", b"*1\r\n$1\r\nv\r\n"]),
        (b"~1\r\n(1\r\n", [b"(1\r\n"]),
        (b">1\r\n+m\r\n", [b"+m\r\n"]),
        (b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n$1\r\nx\r\n",
         [b"|1\r\n+a\r\n+b\r\n:1\r\n", b"$1\r\nx\r\n"]),
        (b"|1\r\n+a\r\n*1\r\n:1\r\n*1\r\n:7\r\n", [b":7\r\n"]),
        (b"*-1\r\n", None),
        (b"$3\r\nfoo\r\n", None),
        (b"+OK\r\n", None),
    ],
)  # fmt: skip
def test_array_elements(span: bytes, elements: list[bytes] | None) -> None:
    assert array_elements(span) == elements


def test_error_span() -> None:
    assert error_span("Protocol error: invalid bulk length") == (
        b"-ERR Protocol error: invalid bulk length\r\n"
    )
    assert error_span("-MOVED 3999 127.0.0.1:6381") == b"-MOVED 3999 127.0.0.1:6381\r\n"
    assert error_span("bad\r\nthing\n") == b"-ERR bad  thing \r\n"
    assert error_span("") == b"-ERR \r\n"


# -- encoders (every encoded reply must come back as one span) -------------------------------

ENCODED: list[tuple[bytes, bytes]] = [
    (encode_integer(0), b":0\r\n"),
    (encode_integer(1023), b":1023\r\n"),
    (encode_integer(1024), b":1024\r\n"),
    (encode_integer(-5), b":-5\r\n"),
    (encode_bulk(b"foo"), b"$3\r\nfoo\r\n"),
    (encode_bulk(b""), b"$0\r\n\r\n"),
    (encode_bulk(None), b"$-1\r\n"),
    (encode_bulk(b"x" * 2000), b"$2000\r\n" + b"x" * 2000 + b"\r\n"),
    (encode_simple("OK"), b"+OK\r\n"),
    (encode_simple("a\r\nb"), b"+a  b\r\n"),
    (encode_array([]), b"*0\r\n"),
    (encode_array([b":1\r\n", b"$-1\r\n", b"*0\r\n"]), b"*3\r\n:1\r\n$-1\r\n*0\r\n"),
    (encode_array([b":1\r\n"] * 1500), b"*1500\r\n" + b":1\r\n" * 1500),
    (encode_command([b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
    (encode_command([b"x" * 1500]), b"*1\r\n$1500\r\n" + b"x" * 1500 + b"\r\n"),
    (encode_command([]), b"*0\r\n"),
]


@pytest.mark.parametrize(("encoded", "expected"), ENCODED)
def test_encoders(encoded: bytes, expected: bytes) -> None:
    assert encoded == expected
    assert run([encoded]) == ([encoded], None)


HELLO: dict[str, MapValue] = {
    "server": "redis", "version": "7.0.15", "proto": 3, "id": 5, "mode": "standalone",
    "role": "master", "modules": [],
}  # fmt: skip


def test_encode_map_resp3() -> None:
    data = encode_map(HELLO)
    assert data == (
        b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n"
        b"$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
        b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    )
    assert run([data]) == ([data], None)
    assert array_elements(data) is not None


def test_encode_map_resp2_is_the_flattened_array() -> None:
    data = encode_map(HELLO, resp3=False)
    assert decoded(data) == [[b"server", b"redis", b"version", b"7.0.15", b"proto", 3,
                              b"id", 5, b"mode", b"standalone", b"role", b"master",
                              b"modules", []]]  # fmt: skip
    assert run([data]) == ([data], None)


def test_encode_map_nested_values() -> None:
    fields: dict[str, MapValue] = {"a": [1, "b", b"c", None, {"d": True}], "e": None, "f": False}
    resp3 = encode_map(fields)
    assert resp3 == (
        b"%3\r\n$1\r\na\r\n*5\r\n:1\r\n$1\r\nb\r\n$1\r\nc\r\n_\r\n%1\r\n$1\r\nd\r\n#t\r\n"
        b"$1\r\ne\r\n_\r\n$1\r\nf\r\n#f\r\n"
    )
    resp2 = encode_map(fields, resp3=False)
    assert decoded(resp2) == [[b"a", [1, b"b", b"c", None, [b"d", 1]], b"e", None, b"f", 0]]
    assert run([resp3 + resp2]) == ([resp3, resp2], None)
