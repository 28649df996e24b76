"""Fuzzing the RESP decoders with one invariant: any input, split anywhere, gives the same
commands (or spans) and the same error as the whole input fed at once - RespError and
nothing else - while what a parser holds stays within its limits. Plus round trips of
generated commands and replies.

The default run is fast (a few hundred examples per test); set RESP_FUZZ_EXAMPLES=20000
for a deep run.
"""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.redis.encode import encode_command
from protocols.redis.errors import RespError
from protocols.redis.limits import RespLimits
from protocols.redis.replies import ReplyParser
from protocols.redis.requests import RequestParser
from tests.unit.test_resp_replies import REPLIES
from tests.unit.test_resp_requests import BAD_REQUESTS, REQUESTS

EXAMPLES = int(os.environ.get("RESP_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = RespLimits(max_bulk=64, max_array=8, max_inline=128, max_nesting=4, max_reply=400)


def request_bound(limits: RespLimits) -> int:
    """One incomplete command at its largest, plus what hiredis keeps of consumed input."""
    return 24 + limits.max_array * (24 + limits.max_bulk + 2) + 1024


def reply_bound(limits: RespLimits) -> int:
    """One incomplete reply at its largest, plus the line being scanned."""
    return limits.max_reply + limits.max_inline + 2


# -- inputs ----------------------------------------------------------------------------------

FRAGMENTS = [
    b"*", b"$", b"+", b"-", b":", b"_", b",", b"#", b"(", b"!", b"=", b"%", b"~", b">", b"|",
    b"?", b";", b".", b"\r\n", b"\r", b"\n", b"\x00", b"\x0b", b" ", b'"', b"'", b"\\x4",
    b"\\", b"0", b"1", b"2", b"3", b"-1", b"-2", b"10", b"64", b"65", b"9999999999",
    b"*1\r\n", b"*2\r\n", b"*3\r\n", b"$3\r\n", b"$0\r\n", b"$-1\r\n", b"*-1\r\n", b"*0\r\n",
    b"SET", b"GET", b"PING", b"foo", b"OK", b"txt:", b"ERR x", b"\xff",
]  # fmt: skip
REQUEST_SEEDS = [d for d, _ in REQUESTS if len(d) < 600] + [
    d for d, _, _ in BAD_REQUESTS if len(d) < 600
]
REPLY_SEEDS = [r for r in REPLIES if len(r) < 600] + [b"".join(REPLIES[:8])]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A few seeds glued together, then byte-level edits: flips, inserts, deletions, cuts."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=4))))
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
        st.binary(max_size=600),
        st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join),
        mutated(seeds),
    )


def split(data: bytes, draw: st.DataObject) -> list[bytes]:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=12), label="cuts"))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- invariants ------------------------------------------------------------------------------


def run_requests(
    chunks: list[bytes], limits: RespLimits = LIMITS
) -> tuple[list[list[bytes]], str | None]:
    parser = RequestParser(limits)
    commands: list[list[bytes]] = []
    for chunk in chunks:
        try:
            got = parser.feed(chunk)
        except RespError as error:
            return commands + error.commands, error.reason
        assert type(got) is list
        for command in got:
            assert type(command) is list and command
            assert all(type(arg) is bytes and len(arg) <= limits.max_bulk for arg in command)
        commands += got
        assert parser.buffered <= request_bound(limits)
    return commands, None


def run_replies(chunks: list[bytes], limits: RespLimits = LIMITS) -> tuple[list[bytes], str | None]:
    parser = ReplyParser(limits)
    spans: list[bytes] = []
    for chunk in chunks:
        try:
            got = parser.feed(chunk)
        except RespError as error:
            return spans + error.replies, error.reason
        assert type(got) is list and all(type(span) is bytes and span for span in got)
        spans += got
        assert parser.buffered <= reply_bound(limits)
    return spans, None


def check_requests(data: bytes, draw: st.DataObject) -> None:
    whole = run_requests([data])
    assert run_requests(split(data, draw)) == whole
    assert run_requests([data[i : i + 1] for i in range(len(data))]) == whole


def check_replies(data: bytes, draw: st.DataObject) -> None:
    whole = run_replies([data])
    spans, _ = whole
    assert data.startswith(b"".join(spans))  # exactly the bytes received, in order
    for span in spans:
        assert run_replies([span]) == ([span], None)
    assert run_replies(split(data, draw)) == whole
    assert run_replies([data[i : i + 1] for i in range(len(data))]) == whole


# -- tests -----------------------------------------------------------------------------------


@FUZZ
@given(inputs(REQUEST_SEEDS), st.data())
def test_requests_any_input(data: bytes, draw: st.DataObject) -> None:
    check_requests(data, draw)


@FUZZ
@given(mutated(REQUEST_SEEDS), st.data())
def test_requests_mutated_pipelines(data: bytes, draw: st.DataObject) -> None:
    check_requests(data, draw)


@FUZZ
@given(inputs(REPLY_SEEDS), st.data())
def test_replies_any_input(data: bytes, draw: st.DataObject) -> None:
    check_replies(data, draw)


@FUZZ
@given(mutated(REPLY_SEEDS), st.data())
def test_replies_mutated_streams(data: bytes, draw: st.DataObject) -> None:
    check_replies(data, draw)


def test_default_limits_seeds_split_anywhere() -> None:
    """The same invariant with the default limits, which turn on fast paths (for example
    bulk lengths read from a table) that the small fuzz limits turn off."""
    default = RespLimits()
    for data in REQUEST_SEEDS:
        commands = run_requests([data], default)
        assert run_requests([data[i : i + 1] for i in range(len(data))], default) == commands
    for data in REPLY_SEEDS:
        spans = run_replies([data], default)
        assert run_replies([data[i : i + 1] for i in range(len(data))], default) == spans


# -- round trips -----------------------------------------------------------------------------

ARGS = st.lists(st.binary(max_size=LIMITS.max_bulk), min_size=1, max_size=LIMITS.max_array)
INLINE = st.lists(st.from_regex(rb"[A-Za-z0-9:_.-]{1,12}", fullmatch=True), min_size=1, max_size=5)


@FUZZ
@given(st.lists(st.tuples(st.booleans(), ARGS, INLINE), min_size=1, max_size=10), st.data())
def test_commands_round_trip(
    commands: list[tuple[bool, list[bytes], list[bytes]]], draw: st.DataObject
) -> None:
    """encode_command (or an inline line) -> RequestParser gives the arguments back."""
    data = b"".join(
        encode_command(args) if multibulk else b" ".join(words) + b"\r\n"
        for multibulk, args, words in commands
    )
    expected = [args if multibulk else words for multibulk, args, words in commands]
    assert run_requests(split(data, draw)) == (expected, None)


def resp3() -> st.SearchStrategy[bytes]:
    text = st.from_regex(rb"[^\r\n]{0,10}", fullmatch=True)
    scalars = st.one_of(
        text.map(lambda b: b"+" + b + b"\r\n"),
        text.map(lambda b: b"-ERR " + b + b"\r\n"),
        st.integers().map(lambda n: b":%d\r\n" % n),
        st.binary(max_size=20).map(lambda b: b"$%d\r\n%s\r\n" % (len(b), b)),
        st.binary(max_size=20).map(lambda b: b"!%d\r\n%s\r\n" % (len(b), b)),
        st.binary(max_size=16).map(lambda b: b"=%d\r\ntxt:%s\r\n" % (len(b) + 4, b)),
        st.sampled_from([b"$-1\r\n", b"*-1\r\n", b"_\r\n", b"#t\r\n", b",1.5\r\n", b"(12\r\n"]),
    )

    def aggregates(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        def header(kind: bytes, items: list[bytes]) -> bytes:
            count = len(items) // 2 if kind in b"%|" else len(items)
            body = b"".join(items[: count * 2] if kind in b"%|" else items)
            return kind + b"%d\r\n" % count + body

        made = st.builds(
            header, st.sampled_from([b"*", b"~", b">", b"%"]), st.lists(inner, max_size=3)
        )
        attribute = st.builds(header, st.just(b"|"), st.lists(inner, max_size=2))
        return st.one_of(made, st.builds(bytes.__add__, attribute, made))

    return st.recursive(scalars, aggregates, max_leaves=8)


@FUZZ
@given(st.lists(resp3(), min_size=1, max_size=6), st.data())
def test_replies_round_trip(replies: list[bytes], draw: st.DataObject) -> None:
    """Generated RESP2/RESP3 replies come back as exactly those spans, split anywhere."""
    data = b"".join(replies)
    parser = ReplyParser()
    spans: list[bytes] = []
    for chunk in split(data, draw):
        spans += parser.feed(chunk)
    assert spans == replies
