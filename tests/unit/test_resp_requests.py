"""RequestParser: tables of client bytes <-> commands (cross-checked against redis-server
7.0 for the inline quoting and the error texts), malformed input with Redis's reasons, the
same input split every way, round trips through encode_command, and the limits."""

from __future__ import annotations

import time

import pytest

from protocols.redis.encode import encode_command
from protocols.redis.errors import RespError
from protocols.redis.limits import RespLimits
from protocols.redis.requests import RequestParser

Commands = list[list[bytes]]


def run(chunks: list[bytes], limits: RespLimits | None = None) -> tuple[Commands, str | None]:
    """Feed chunks in order: every command completed, and the error reason if one came."""
    parser = RequestParser(limits or RespLimits())
    commands: Commands = []
    for chunk in chunks:
        try:
            commands += parser.feed(chunk)
        except RespError as error:
            return commands + error.commands, error.reason
    return commands, None


def splits(data: bytes) -> list[list[bytes]]:
    """The ways the tests cut an input: whole, one byte at a time, and at a few offsets."""
    ways = [[data[i : i + size] for i in range(0, len(data), size)] for size in (1, 2, 3, 7)]
    ways += [[data]] + [
        [data[:cut], data[cut:]] for cut in range(1, len(data), max(1, len(data) // 9))
    ]
    return ways


def mb(*args: bytes) -> bytes:
    return encode_command(args)


PING = mb(b"PING")
SET = mb(b"SET", b"key:000000000042", b"xxx")

# -- good input ----------------------------------------------------------------------------

REQUESTS: list[tuple[bytes, Commands]] = [
    (PING, [[b"PING"]]),
    (SET * 3, [[b"SET", b"key:000000000042", b"xxx"]] * 3),
    (mb(b"SET", b"k", b""), [[b"SET", b"k", b""]]),
    (mb(b"SET", b"k", b"a\r\nb\r\n*1\r\n$4\r\n"), [[b"SET", b"k", b"a\r\nb\r\n*1\r\n$4\r\n"]]),
    (mb(b"SET", b"k", bytes(range(256))), [[b"SET", b"k", bytes(range(256))]]),
    # payloads with bytes that start other RESP types: hiredis's output must be proved
    (mb(b"SET", b"k", b"a+b=c%d~e>f|g(h"), [[b"SET", b"k", b"a+b=c%d~e>f|g(h"]]),
    (mb(b"SET", b"k", b"+OK") + PING, [[b"SET", b"k", b"+OK"], [b"PING"]]),
    (mb(b"SET", b"k", b"v" * 5000), [[b"SET", b"k", b"v" * 5000]]),
    (mb(*[b"a"] * 1500), [[b"a"] * 1500]),
    # empty commands: Redis runs nothing for a count <= 0
    (b"*0\r\n*-1\r\n*-5\r\n" + PING + b"*0\r\n", [[b"PING"]]),
    # Redis skips the two bytes after a payload unseen (so does hiredis)
    (b"*1\r\n$4\r\nPINGxx" + PING, [[b"PING"], [b"PING"]]),
    # inline
    (b"PING\r\n", [[b"PING"]]),
    (b"set a b\n", [[b"set", b"a", b"b"]]),
    (b"\r\n\n   \r\n\t\n", []),
    (b"  set   a   b  \r\n", [[b"set", b"a", b"b"]]),
    (b'set "a b" c\r\n', [[b"set", b"a b", b"c"]]),
    (b"set 'a b' c\r\n", [[b"set", b"a b", b"c"]]),
    (b'set "a\\nb" c\r\n', [[b"set", b"a\nb", b"c"]]),
    (b'set "\\x41\\x4a" "\\xAf" "\\X41" "\\x4" "\\xzz"\r\n',
     [[b"set", b"AJ", b"\xaf", b"X41", b"x4", b"xzz"]]),
    (b'set "a\\"b" \'a\\\'b\' \'a\\nb\'\r\n', [[b"set", b'a"b', b"a'b", b"a\\nb"]]),
    (b'set "a\\b\\a\\t\\r\\q"\r\n', [[b"set", b"a\x08\x07\t\rq"]]),
    (b"set ab\"cd\"\r\n", [[b"set", b"abcd"]]),
    (b'set "ab"\tc "" \'\'\r\n', [[b"set", b"ab", b"c", b"", b""]]),
    (b"set a\x0bb \x0bc \"x\"\x0b\r\n", [[b"set", b"a\x0bb", b"c", b"x"]]),
    (b"set a\rb\r\n", [[b"set", b"a", b"b"]]),
    (b"set '\"' \"'\"\r\n", [[b"set", b'"', b"'"]]),
    (b"set a\x00 ignored \"\r\n", [[b"set", b"a"]]),
    # the first byte of each command picks its form
    (b"+OK\r\n:5\r\n$3\r\nfoo\r\n", [[b"+OK"], [b":5"], [b"$3"], [b"foo"]]),
    (PING + b"PING\r\n" + SET + b"get k\n" + PING, [[b"PING"]] * 2 + [
        [b"SET", b"key:000000000042", b"xxx"], [b"get", b"k"], [b"PING"]]),
    (PING + b":5\r\n" + PING + b"*0\r\n" + PING, [[b"PING"], [b":5"], [b"PING"], [b"PING"]]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), REQUESTS)
def test_requests(data: bytes, expected: Commands) -> None:
    for chunks in splits(data):
        assert run(chunks) == (expected, None)


def test_requests_in_one_pipeline() -> None:
    data = b"".join(d for d, _ in REQUESTS)
    expected = [c for _, commands in REQUESTS for c in commands]
    for chunks in splits(data):
        assert run(chunks) == (expected, None)


@pytest.mark.parametrize(
    "args",
    [[b"PING"], [b"SET", b"k", b"v"], [b""], [b"\r\n"] * 3, [b"x" * 70_000],
     [b"%d" % i for i in range(2000)]],
)  # fmt: skip
def test_round_trip(args: list[bytes]) -> None:
    data = encode_command(args)
    assert data == b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    assert run([data]) == ([args], None)
    assert run([data[i : i + 1000] for i in range(0, len(data), 1000)]) == ([args], None)


def test_parser_carries_on_after_many_feeds() -> None:
    parser = RequestParser()
    for _ in range(100):
        assert parser.feed(SET[:10]) == []
        assert parser.feed(SET[10:] + b"PI") == [[b"SET", b"key:000000000042", b"xxx"]]
        assert parser.feed(b"NG\r\n" + PING) == [[b"PING"], [b"PING"]]
    assert parser.buffered == 0


# -- malformed input -----------------------------------------------------------------------

BAD_REQUESTS: list[tuple[bytes, str, Commands]] = [
    (b"*1\r\n+OK\r\n", "expected '$', got '+'", []),
    (b"*1\r\n:1\r\n", "expected '$', got ':'", []),
    (b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'", []),
    (b"*2\r\n$1\r\na\r\n-ERR\r\n", "expected '$', got '-'", []),
    (b"*1\r\n_\r\n", "expected '$', got '_'", []),
    (b"*1\r\n\x01\r\n", "expected '$', got '\\x01'", []),
    (b"*x\r\n", "invalid multibulk length", []),
    (b"*\r\n", "invalid multibulk length", []),
    (b"*03\r\n", "invalid multibulk length", []),
    (b"*-0\r\n", "invalid multibulk length", []),
    (b"*+1\r\n", "invalid multibulk length", []),
    (b"*1 \r\n", "invalid multibulk length", []),
    (b"*1\rX", "invalid multibulk length", []),
    (b"*3000000000\r\n", "invalid multibulk length", []),
    (b"*1048577\r\n", "invalid multibulk length", []),
    (b"*-99999999999999999999\r\n", "invalid multibulk length", []),
    (b"*1\r\n$-1\r\n", "invalid bulk length", []),
    (b"*1\r\n$x\r\n", "invalid bulk length", []),
    (b"*1\r\n$\r\n", "invalid bulk length", []),
    (b"*1\r\n$03\r\nabc\r\n", "invalid bulk length", []),
    (b"*1\r\n$+4\r\nPING\r\n", "invalid bulk length", []),
    (b"*1\r\n$ 4\r\nPING\r\n", "invalid bulk length", []),
    (b"*1\r\n$4\rXPING\r\n", "invalid bulk length", []),
    (b"*1\r\n$536870913\r\n", "invalid bulk length", []),
    (b"*1\r\n$99999999999999999999999\r\n", "invalid bulk length", []),
    (b'"ab\r\n', "unbalanced quotes in request", []),
    (b"set 'ab'cd\r\n", "unbalanced quotes in request", []),
    (b'set "ab"cd\r\n', "unbalanced quotes in request", []),
    (b'set "a\\\r\n', "unbalanced quotes in request", []),
    (b"set ab\"cd ef\"gh\r\n", "unbalanced quotes in request", []),
    (b"x" * 65537, "too big inline request", []),
    (b"x" * 65537 + b"\r\n", "too big inline request", []),
    # what precedes the error in the same input is still returned (Redis runs it)
    (PING + b"PING\r\n" + SET + b"*1\r\n+OK\r\n" + PING, "expected '$', got '+'",
     [[b"PING"], [b"PING"], [b"SET", b"key:000000000042", b"xxx"]]),
    (SET * 20 + b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'",
     [[b"SET", b"key:000000000042", b"xxx"]] * 20),
    (PING + b'"unbalanced\r\n' + PING, "unbalanced quotes in request", [[b"PING"]]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "reason", "before"), BAD_REQUESTS)
def test_bad_requests(data: bytes, reason: str, before: Commands) -> None:
    for chunks in splits(data):
        assert run(chunks) == (before, reason)


def test_error_is_sticky_and_carries_the_reply() -> None:
    parser = RequestParser()
    with pytest.raises(RespError) as caught:
        parser.feed(b"*1\r\n$x\r\n")
    assert caught.value.reply == b"-ERR Protocol error: invalid bulk length\r\n"
    with pytest.raises(RespError) as again:
        parser.feed(PING)
    assert again.value is caught.value


def test_any_exception_of_hiredis_becomes_resp_error() -> None:
    """hiredis raises on `!`, negative lengths and huge counts; none of it leaks."""
    for data in (
        b"*1\r\n!3\r\nabc\r\n",
        b"*1\r\n$-2\r\n",
        b"*4294967296\r\n",
        PING + b"*1\r\n*4294967295\r\n",
    ):
        with pytest.raises(RespError):
            RequestParser().feed(data)


# -- limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"*2\r\n$3\r\nSET\r\n$536870913\r\n", "invalid bulk length"),
        (b"*2\r\n$3\r\nSET\r\n$53687091300", "invalid bulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*10485770", "invalid multibulk length"),
        (SET * 50 + b"*1\r\n$600000000\r\n", "invalid bulk length"),
    ],
)
def test_oversized_declaration_refused_at_its_header(header: bytes, reason: str) -> None:
    parser = RequestParser()
    with pytest.raises(RespError, match=reason):
        parser.feed(header)
    for cut in range(1, len(header)):
        parser = RequestParser()
        with pytest.raises(RespError, match=reason):
            parser.feed(header[:cut])  # may already show the header cannot be valid
            assert parser.buffered <= 4096
            parser.feed(header[cut:])


def test_big_bulk_in_pieces_is_held_once() -> None:
    parser = RequestParser()
    value = b"v" * (4 << 20)
    data = mb(b"SET", b"k", value)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    for count, piece in enumerate(pieces[:-1], 1):
        assert parser.feed(piece) == []
        assert parser.buffered <= count * 65536
    assert parser.feed(pieces[-1]) == [[b"SET", b"k", value]]
    assert parser.buffered == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (mb(b"SET", b"k", b"x" * 11), "invalid bulk length"),
        (mb(b"a", b"b", b"c", b"d", b"e"), "invalid multibulk length"),
        (b"x" * 33, "too big inline request"),
        (b"x" * 33 + b"\n", "too big inline request"),
        (b"*5\r\n", "invalid multibulk length"),
        (b"*1\r\n$11\r\n", "invalid bulk length"),
    ],
)
def test_small_limits(data: bytes, reason: str) -> None:
    limits = RespLimits(max_bulk=10, max_array=4, max_inline=32)
    for chunks in splits(data):
        assert run(chunks, limits) == ([], reason)
    assert run([mb(b"SET", b"k", b"x" * 10) + b"x" * 31 + b"\r\n"], limits) == (
        [[b"SET", b"k", b"x" * 10], [b"x" * 31]], None)  # fmt: skip


def test_inline_line_at_the_limit_waits() -> None:
    parser = RequestParser()
    assert parser.feed(b"x" * 65536) == []
    assert parser.buffered == 65536
    with pytest.raises(RespError, match="too big inline request"):
        parser.feed(b"x")


@pytest.mark.parametrize(
    "data",
    [
        b"*2147483647\r\n",
        PING * 3 + b"*1\r\n*2147483647\r\n",
        PING + b"*1\r\n~2147483647\r\n",
        mb(b"SET", b"k", b"+") + b"*2\r\n$1\r\na\r\n>2147483647\r\n",
    ],
)
def test_huge_counts_never_reach_hiredis(data: bytes) -> None:
    """hiredis allocates a list as long as a count at once; freeing 2**31 slots takes
    seconds, so such input must be refused before hiredis reads it."""
    started = time.perf_counter()
    with pytest.raises(RespError):
        RequestParser().feed(data)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "data",
    [
        mb(b"GET", b"k"),
        mb(b"SET", b"key:1", b"v" * 1023),
        mb(*[b"a"] * 9),
        mb(*[b"a"] * 10),  # two digits: not the quick shape
        mb(b"SET", b"k", b"v" * 1024),  # a length past the table
        b"*1\r\n$03\r\nGET\r\n",  # a leading zero
        b"*1\r\n$-1\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY",  # the bytes after a payload are not checked
        b"*1\r\n$12",
        b"*1\r\n$3\r\nGE",
        b"*0\r\n",
        b"*-1\r\n",
        b"*1\r\n$0\r\n\r\n",
        mb(b"GET", b"a*b\r\n*c"),  # looks pipelined: read by hiredis
    ],
)
def test_lone_small_commands_read_as_when_split(data: bytes) -> None:
    """A read holding one small command takes a path of its own: it must agree with the
    same bytes fed one at a time, which never takes it."""
    assert run([data]) == run([data[i : i + 1] for i in range(len(data))])
    assert run([data], RespLimits(max_bulk=2, max_array=2)) == run(
        [data[i : i + 1] for i in range(len(data))], RespLimits(max_bulk=2, max_array=2)
    )
