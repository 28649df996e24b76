"""Hypothesis strategies for HTTP/1.1 on the wire: requests and responses built field by
field, mostly well-formed, with the constructs parsers disagree on mixed in (obs-fold,
bare CR/LF, NUL and other controls, whitespace before the colon, conflicting or listed
Content-Length, Transfer-Encoding with and without Content-Length, chunk extensions and
trailers, 1xx, 204, 304, HEAD, CONNECT, Upgrade, pipelining), and byte-level mutation.

Each message draws how odd it is (`Odds`): two in five are clean, two in five carry a rare
odd choice or two, the rest many; so both the parsers' agreement on valid messages and
their disagreements on invalid ones get exercised.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st


@dataclass(frozen=True)
class Odds:
    """One odd choice in `one_in` (0: never)."""

    one_in: int = 0

    def pick(self, draw: st.DrawFn, usual: list[bytes], odd: list[bytes]) -> bytes:
        if self.one_in and draw(st.integers(1, self.one_in)) == 1:
            return draw(st.sampled_from(odd))
        return draw(st.sampled_from(usual))

    def happens(self, draw: st.DrawFn) -> bool:
        return bool(self.one_in) and draw(st.integers(1, self.one_in)) == 1


ODDS = st.sampled_from([Odds(), Odds(), Odds(30), Odds(30), Odds(8)])

# -- field lines -----------------------------------------------------------------------------

NAMES = [b"Accept", b"x-trace", b"X-A", b"Cookie", b"User-Agent", b"Te", b"Trailer",
         b"Keep-Alive", b"x_under", b"!#$%&'*+-.^`|~"]  # fmt: skip
VALUES = [b"", b"1", b"text/html", b"a b", b"a\tb", b"caf\xc3\xa9", b"\xff", b'"q,x"', b"x=y;z"]
ODD_VALUES = [b"a\x00b", b"a\x01b", b"a\x7fb", b"a\x0bb", b"a\rb", b"a\nb", b"a\x1fb"]
OWS = [b"", b" ", b"\t", b"  ", b" \t"]
SPELLINGS: list[Callable[[bytes], bytes]] = [bytes.lower, bytes.upper, bytes.title, bytes]


@st.composite
def field_line(draw: st.DrawFn, odds: Odds, name: bytes, value: bytes) -> bytes:
    """`Name: value` with random spelling and whitespace, sometimes malformed."""
    name = draw(st.sampled_from(SPELLINGS))(name)
    ows_left, ows_right = draw(st.sampled_from(OWS)), draw(st.sampled_from(OWS))
    if odds.happens(draw):
        quirk = draw(st.sampled_from(["space_before_colon", "no_colon", "fold"]))
        if quirk == "space_before_colon":
            return name + draw(st.sampled_from([b" ", b"\t"])) + b":" + ows_left + value
        if quirk == "no_colon":
            return name + b" " + value
        # obs-fold: the value goes on in the next line
        fold = draw(st.sampled_from([b" ", b"\t", b"  "]))
        return name + b":" + ows_left + value + b"\r\n" + fold + b"more"
    return name + b":" + ows_left + value + (ows_right if value else b"")


@st.composite
def other_fields(draw: st.DrawFn, odds: Odds) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(NAMES))
        out.append(draw(field_line(odds, name, odds.pick(draw, VALUES, ODD_VALUES))))
    return out


CONNECTION = [b"", b"", b"", b"", b"close", b"keep-alive", b"Keep-Alive", b"foo, close",
              b"upgrade", b"Upgrade, keep-alive", b"close, upgrade"]  # fmt: skip


@st.composite
def connection_fields(draw: st.DrawFn, odds: Odds) -> list[bytes]:
    value = draw(st.sampled_from(CONNECTION))
    lines = [draw(field_line(odds, b"Connection", value))] if value else []
    if draw(st.integers(0, 5)) == 0:
        upgrade = draw(st.sampled_from([b"websocket", b"h2c"]))
        lines.append(draw(field_line(odds, b"Upgrade", upgrade)))
    return lines


# -- bodies ----------------------------------------------------------------------------------

SIZES = [b"%x", b"%X", b"0%x"]
ODD_SIZES = [b"%x ", b"%x\t", b"+%x", b"0x%x", b"0000000000000000%x"]
EXTENSIONS = [b"", b"", b"", b"", b";a", b";a=b", b';a="q;\\"x"', b";a=b;c", b" ; a=b", b";a= b"]
ODD_EXTENSIONS = [b";", b";=x", b';a="', b";a\x00", b";a\rb", b";a=\x7f", b";a b", b"a"]
DATA_ENDS = [b"\r\n"]
ODD_DATA_ENDS = [b"\n", b"", b"\r\r\n", b"x\r\n"]
LAST_CHUNK = [b"0", b"000"]
ODD_LAST_CHUNK = [b"0 ", b"00000000000000000", b""]
TRAILERS = [(b"X-Checksum", b"abc"), (b"Grpc-Status", b"0"), (b"X-Checksum", b"")]
ODD_TRAILERS = [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"gzip"), (b"X-Bad", b"a\x01b"),
                (b"X-Bad", b"a\x00b")]  # fmt: skip


@st.composite
def chunked_body(draw: st.DrawFn, odds: Odds, data: bytes) -> bytes:
    """`data` in chunks with extensions, then the last chunk and maybe trailers."""
    out = []
    pos = 0
    while pos < len(data):
        n = draw(st.integers(1, len(data) - pos))
        size = odds.pick(draw, SIZES, ODD_SIZES) % n
        out.append(size + odds.pick(draw, EXTENSIONS, ODD_EXTENSIONS) + b"\r\n")
        out.append(data[pos : pos + n] + odds.pick(draw, DATA_ENDS, ODD_DATA_ENDS))
        pos += n
    out.append(odds.pick(draw, LAST_CHUNK, ODD_LAST_CHUNK) + b"\r\n")
    for _ in range(draw(st.integers(0, 2))):
        name, value = draw(st.sampled_from(ODD_TRAILERS if odds.happens(draw) else TRAILERS))
        out.append(draw(field_line(odds, name, value)) + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


FRAMING = ["none", "length", "chunked", "close", "length_twice", "length_list"]
ODD_FRAMING = ["length_conflict", "length_bad", "length_huge", "te_and_length", "te_gzip",
               "te_gzip_chunked", "te_chunked_twice", "te_two_fields", "te_bad_case"]  # fmt: skip
CODINGS = {"te_gzip": b"gzip", "te_gzip_chunked": b"gzip, chunked",
           "te_chunked_twice": b"chunked, chunked", "te_bad_case": b"cHuNkEd"}  # fmt: skip


@st.composite
def framing(
    draw: st.DrawFn, odds: Odds, version: bytes, may_close: bool
) -> tuple[list[bytes], bytes]:
    """(Content-Length / Transfer-Encoding lines, the body bytes they frame)."""
    data = draw(st.binary(max_size=24))
    n = len(data)
    kind = draw(st.sampled_from(ODD_FRAMING if odds.happens(draw) else FRAMING))
    if kind == "chunked" and version != b"HTTP/1.1" and not odds.happens(draw):
        kind = "length"  # chunked is HTTP/1.1's (RFC 9112 6.1)
    cl, te = b"Content-Length", b"Transfer-Encoding"
    if kind == "none" or (kind == "close" and not may_close):
        return [], b""
    if kind == "close":  # a response body that runs to the end of the connection
        return [], data
    if kind in ("length", "length_twice", "length_list"):
        value = b"%d" % n if kind != "length_list" else b"%d, %d" % (n, n)
        repeat = 2 if kind == "length_twice" else 1
        return [draw(field_line(odds, cl, value)) for _ in range(repeat)], data
    if kind == "length_conflict":
        values = [b"%d" % n, b"%d" % (n + 1)]
        return [draw(field_line(odds, cl, value)) for value in values], data
    if kind == "length_bad":
        template = draw(st.sampled_from([b"+%d", b"-%d", b"0x%d", b"%d.0", b"%d a", b""]))
        value = template % n if template else b""
        return [draw(field_line(odds, cl, value))], data
    if kind == "length_huge":
        return [draw(field_line(odds, cl, b"1" * draw(st.integers(17, 21))))], data
    lines = [draw(field_line(odds, te, CODINGS.get(kind, b"chunked")))]
    if kind == "te_two_fields":
        lines.append(draw(field_line(odds, te, b"chunked")))
    if kind == "te_and_length":
        lines.append(draw(field_line(odds, cl, b"%d" % n)))
    return lines, draw(chunked_body(odds, data))


# -- messages --------------------------------------------------------------------------------

METHODS = [b"GET", b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"M-SEARCH"]
ODD_METHODS = [b"CONNECT", b"G(T", b"get", b"GET\t"]
TARGETS = [b"/", b"/a/b?c=d", b"/%7e;x=1", b"http://example.com/p", b"HTTP://h:80"]
ODD_TARGETS = [b"*", b"example.com:443", b"foo", b"/a\x7f", b"http://u@h/", b"/a b", b"",
               b"/" + b"a" * 9000]  # fmt: skip
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]
ODD_VERSIONS = [b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1.1 ", b"HTTP/01.1"]
HOSTS = [b"example.com", b"h:8080", b"[::1]:1", b""]
ODD_HOSTS = [b"a/b", b"a b", b"a@b", b"h:x"]
EOL = [b"\r\n"]
ODD_EOL = [b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n "]


@st.composite
def head_lines(draw: st.DrawFn, odds: Odds, first: bytes, lines: list[bytes]) -> bytes:
    """Start line and field lines in random order, each with its line ending."""
    draw(st.randoms()).shuffle(lines)
    ends = [odds.pick(draw, EOL, ODD_EOL) for _ in range(len(lines) + 2)]
    return b"".join(line + end for line, end in zip([first, *lines, b""], ends, strict=True))


@st.composite
def request(draw: st.DrawFn) -> bytes:
    odds = draw(ODDS)
    method = odds.pick(draw, METHODS, ODD_METHODS)
    target = odds.pick(draw, TARGETS, ODD_TARGETS)
    if method == b"CONNECT" and draw(st.integers(0, 3)):
        target = b"example.com:443"
    version = odds.pick(draw, VERSIONS, ODD_VERSIONS)
    hosts = [odds.pick(draw, HOSTS, ODD_HOSTS)]
    if odds.happens(draw):  # none, or two
        hosts = draw(st.lists(st.sampled_from(HOSTS + ODD_HOSTS), max_size=2))
    lines = [draw(field_line(odds, b"Host", host)) for host in hosts]
    framing_lines, body = draw(framing(odds, version, False))
    lines += framing_lines + draw(connection_fields(odds)) + draw(other_fields(odds))
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(field_line(odds, b"Expect", b"100-continue")))
    return draw(head_lines(odds, method + b" " + target + b" " + version, lines)) + body


STATUSES = [b"200", b"200", b"201", b"204", b"304", b"404", b"500", b"999"]
ODD_STATUSES = [b"101", b"199", b"099", b"20", b"2000", b"20x", b"-20"]
REASONS = [b" OK", b" Not Found", b"", b" ", b" caf\xc3\xa9", b" a\tb"]
ODD_REASONS = [b" a\x01b", b" a\x00b", b" a\rb", b"\tOK"]


@dataclass(frozen=True)
class Asked:
    """A request a response answers: its method, and whether it asked to upgrade."""

    method: bytes = b"GET"
    upgrade: bool = False


ASKED = [Asked(), Asked(), Asked(b"HEAD"), Asked(b"POST"), Asked(b"CONNECT"), Asked(upgrade=True)]


@st.composite
def response(draw: st.DrawFn, asked: Asked, last: bool) -> bytes:
    """One final response to `asked`, maybe after 1xx ones; only the last may run to EOF."""
    odds = draw(ODDS)
    out = b""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        status = draw(st.sampled_from([b"100", b"102", b"103"]))
        first = b"HTTP/1.1 " + status + odds.pick(draw, REASONS, ODD_REASONS)
        out += draw(head_lines(odds, first, draw(other_fields(odds))))
    status = odds.pick(draw, STATUSES, ODD_STATUSES)
    if asked.method == b"CONNECT" and draw(st.booleans()):
        status = b"200"
    if asked.upgrade and draw(st.booleans()):
        status = b"101"
    version = odds.pick(draw, VERSIONS, ODD_VERSIONS)
    lines, body = draw(framing(odds, version, last))
    if no_content(asked, status) and not odds.happens(draw):
        body = b""  # RFC 9112 6.3: the head ends these whatever the fields say
    lines += draw(connection_fields(odds)) + draw(other_fields(odds))
    first = version + b" " + status + odds.pick(draw, REASONS, ODD_REASONS)
    return out + draw(head_lines(odds, first, lines)) + body


def no_content(asked: Asked, status: bytes) -> bool:
    code = int(status) if status.isdigit() else 0
    connect = asked.method == b"CONNECT" and 200 <= code < 300
    return asked.method == b"HEAD" or connect or code < 200 or code in (204, 304)


# -- sequences and mutation ------------------------------------------------------------------

BETWEEN = [b""]
ODD_BETWEEN = [b"\r\n", b"\r\n\r\n", b"\n", b" ", b"\x00"]


@st.composite
def pipelined_requests(draw: st.DrawFn) -> bytes:
    odds = draw(ODDS)
    messages = [draw(request()) for _ in range(draw(st.integers(1, 3)))]
    return b"".join(m + odds.pick(draw, BETWEEN, ODD_BETWEEN) for m in messages)


@st.composite
def pipelined_responses(draw: st.DrawFn) -> tuple[list[Asked], bytes]:
    """Responses and the requests they answer. A CONNECT or Upgrade request goes alone: a
    client never sends another request behind one (its connection is the tunnel's)."""
    odds = draw(ODDS)
    asked = draw(st.lists(st.sampled_from(ASKED), min_size=1, max_size=3))
    if len(asked) > 1:
        asked = [a for a in asked if a.method != b"CONNECT" and not a.upgrade] or [Asked()]
    data = b"".join(
        draw(response(a, i == len(asked) - 1)) + odds.pick(draw, BETWEEN, ODD_BETWEEN)
        for i, a in enumerate(asked)
    )
    return asked, data


FRAGMENTS = [b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"\x00", b"\x7f", b"\xff",
             b"0", b"1", b"a", b"Content-Length: 1\r\n", b"Transfer-Encoding: chunked\r\n",
             b"Host: a\r\n", b"\r\n0\r\n\r\n", b"HTTP/1.1 200 OK\r\n",
             b"GET / HTTP/1.1\r\n"]  # fmt: skip


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """A few byte-level edits: a byte replaced, a fragment inserted, a run deleted."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and at < len(buf):
            buf[at] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[at:at] = draw(st.sampled_from(FRAGMENTS))
        else:
            del buf[at : at + draw(st.integers(1, 4))]
    return bytes(buf)


@st.composite
def maybe_mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` as it is two times in three, mutated otherwise."""
    return draw(mutate(data)) if draw(st.integers(0, 2)) == 0 else data


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at random places (sometimes one byte at a time)."""
    if data and draw(st.integers(0, 9)) == 0:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)]) if b > a]
