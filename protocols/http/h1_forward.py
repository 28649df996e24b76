"""HTTP/1.1 heads read for forwarding: what a proxy needs to pass a message on as received.

The forwarding path of the connection manager does not rebuild messages: it reads a head
with the codec's own grammar (`h1_parse`'s head regexes, limits and Host check), picks out
the few fields a proxy acts on, and sends the head on with hop-by-hop lines cut and its own
lines appended; the body follows as received. A head these functions cannot forward as it
is (anything unusual: other framings, upgrades, `Expect`, HTTP/1.0, duplicates of the fields
read, ...) gives None, and the caller hands the bytes to the full codec, which parses it, or
answers with the precise error. So the forwarding path never decides a head is malformed:
it only declines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from protocols.http.h1_parse import (
    CONNECT,
    HTTP11,
    MAX_LENGTH_DIGITS,
    MAX_LINE,
    REQUEST_HEAD,
    RESPONSE_HEAD,
    TCHARS,
    H1Limits,
    good_host,
)

REQUEST_FIELDS = frozenset((
    b"host", b"content-length", b"connection", b"x-request-id", b"x-forwarded-for",
    b"x-forwarded-proto", b"traceparent", b"content-type", b"user-agent",
))  # fmt: skip
"""Request fields the forwarding path reads (each at most once, or it declines)."""
REQUEST_DECLINED = frozenset((
    b"transfer-encoding", b"upgrade", b"expect", b"te", b"trailer", b"keep-alive",
    b"proxy-connection",
))  # fmt: skip
"""Request fields that need the full codec and the stream filters."""
RESPONSE_CUT = frozenset((b"connection", b"keep-alive", b"proxy-connection"))
"""Hop-by-hop response fields: cut, the proxy speaks for its own hop."""
RESPONSE_DECLINED = frozenset((b"transfer-encoding", b"upgrade", b"te", b"trailer"))
_NO_BODY_STATUS = (204, 304)


def _field_lines(names: frozenset[bytes]) -> re.Pattern[bytes]:
    """Finds the lines of `names` in b"\\n" + a lowercased field block: (name, value with
    its leading whitespace). The literal first character lets the regex engine jump from
    line to line; lowercasing the block once costs less than a pass over its lines."""
    alternatives = b"|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rb"\n(" + alternatives + rb"):([^\r]*)")


_REQUEST_LINES = _field_lines(REQUEST_FIELDS | REQUEST_DECLINED)
_RESPONSE_LINES = _field_lines(RESPONSE_CUT | RESPONSE_DECLINED | {b"content-length"})
_KEEP_ALIVE: dict[bytes, bool | None] = {}
"""A lowercased Connection value -> keep-alive, or None when it names other fields (bounded:
the same few values recur)."""


def keep_alive_of(value: bytes) -> bool | None:
    """Keep-alive by a lowercased Connection value, or None when it names other fields."""
    keep = _KEEP_ALIVE.get(value, False)
    if keep is False and value not in _KEEP_ALIVE:
        tokens = {token.strip() for token in value.split(b",")}
        keep = None if not tokens <= {b"keep-alive", b"close"} else b"close" not in tokens
        if len(_KEEP_ALIVE) < 256:
            _KEEP_ALIVE[value] = keep
    return keep


class RequestHead:
    """A request head the forwarding path can send on: the line as received, the field
    block, and the fields it reads."""

    __slots__ = ("_lowered", "authority", "block", "fields", "keep_alive", "length", "line",
                 "method", "target")  # fmt: skip

    def __init__(
        self, method: bytes, target: bytes, line: bytes, block: bytes,
        fields: dict[bytes, bytes], length: int, keep_alive: bool,
    ) -> None:  # fmt: skip
        self.method = method
        self.target = target
        self.line = line
        """The request line with its CRLF, as received."""
        self.block = block
        """`Name: value\\r\\n` lines as received."""
        self._lowered: bytes | None = None
        self.fields = fields
        """REQUEST_FIELDS present: lowercase name -> value without surrounding whitespace."""
        self.authority = fields[b"host"]
        self.length = length
        """Content-Length (0: no body)."""
        self.keep_alive = keep_alive

    def field(self, name: bytes) -> bytes | None:
        """The first value of any field `name` (lowercase), without surrounding whitespace."""
        found = self.lowered.find(b"\n" + name + b":")
        if found < 0:
            return None
        start = found + len(name) + 1  # (in the block, which `lowered` leads by one byte)
        return self.block[start : self.block.index(b"\r\n", start)].strip(b" \t")

    @property
    def lowered(self) -> bytes:
        """b"\\n" + the block lowercased (what `without_fields` searches)."""
        lowered = self._lowered
        if lowered is None:
            lowered = self._lowered = b"\n" + self.block.lower()
        return lowered


class ResponseHead:
    """A response head with a length-delimited (or no) body."""

    __slots__ = ("head", "keep_alive", "length", "status")

    def __init__(self, status: int, head: bytes, length: int, keep_alive: bool) -> None:
        self.status = status
        self.head = head
        """The head to send on (status line, fields without hop-by-hop, no final CRLF)."""
        self.length = length
        self.keep_alive = keep_alive


def _read_request(buf: bytes, end: int, limits: H1Limits) -> RequestHead | None:
    """The head buf[:end+4] (it starts at 0 and ends with CRLF CRLF at end) as a request
    the forwarding path can send on, or None."""
    if buf[0] not in TCHARS:
        return None  # (an empty line before the head, or garbage: the codec's to judge)
    m = REQUEST_HEAD.fullmatch(buf, 0, end + 2)
    if m is None or m.start(4) > MAX_LINE + 2:
        return None
    method, target, version, block = m.groups()
    if version != HTTP11 or target[:1] != b"/" or block.count(b"\r\n") > limits.max_headers:
        return None
    if method == CONNECT:
        return None  # (a tunnel, and its target is host:port: the codec's to judge)
    lowered = b"\n" + block.lower()
    fields: dict[bytes, bytes] = {}
    for found in _REQUEST_LINES.finditer(lowered):
        name = found.group(1)
        if name in fields or name in REQUEST_DECLINED:
            return None
        start, stop = found.span(2)
        fields[name] = block[start - 1 : stop - 1].strip()  # (as sent: values keep their case)
    host = fields.get(b"host")
    if host is None or not good_host(host):
        return None
    length = 0
    value = fields.get(b"content-length")
    if value is not None:
        if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
            return None
        length = int(value)
        if limits.max_body is not None and length > limits.max_body:
            return None
    keep_alive = True
    value = fields.get(b"connection")
    if value is not None:
        keep = keep_alive_of(value.lower())
        if keep is None:
            return None  # (it names other fields to cut: the general path does that)
        keep_alive = keep
    line = buf[: m.start(4)]
    head = RequestHead(method, target, line, block, fields, length, keep_alive)
    head._lowered = lowered
    return head


def _read_response(buf: bytes, end: int, limits: H1Limits, method: bytes) -> ResponseHead | None:
    """The head buf[:end+4] as a final response to `method` with a length-delimited body,
    hop-by-hop fields cut, or None."""
    m = RESPONSE_HEAD.fullmatch(buf, 0, end + 2)
    if m is None or m.start(4) > MAX_LINE + 2:
        return None
    version, code, _, block = m.groups()
    status = int(code)
    if status < 200 or version != HTTP11 or block.count(b"\r\n") > limits.max_headers:
        return None
    lowered = b"\n" + block.lower()
    length = -1
    keep_alive = True
    cut: list[bytes] = []
    for name, value in _RESPONSE_LINES.findall(lowered):
        if name == b"content-length":
            value = value.strip()
            if length >= 0 or not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                return None
            length = int(value)
        elif name in RESPONSE_DECLINED:
            return None
        else:
            cut.append(name)
            if name == b"connection":
                keep = keep_alive_of(value.strip())
                if keep is None:
                    return None
                keep_alive = keep_alive and keep
    if method == b"HEAD" or status in _NO_BODY_STATUS:
        length = 0
    elif length < 0:
        return None  # delimited by close: the codec re-frames it
    elif limits.max_body is not None and length > limits.max_body:
        return None
    if cut:
        block = without_fields(block, lowered, cut)
    return ResponseHead(status, buf[: m.start(4)] + block, length, keep_alive)


def without_fields(block: bytes, lowered: bytes, names: Iterable[bytes]) -> bytes:
    """The field block without the lines of `names` (lowercase); `lowered` is
    b"\\n" + block.lower() (offsets one past the block's)."""
    spans = []
    for name in names:
        needle = b"\n" + name + b":"
        at = lowered.find(needle)
        while at >= 0:
            stop = lowered.index(b"\n", at + 1)
            spans.append((at, stop))  # = block[at:stop], the line with its CRLF
            at = lowered.find(needle, stop)
    if len(spans) == 1:
        at, stop = spans[0]
        return block[:at] + block[stop:]
    spans.sort()
    kept, start = [], 0
    for at, stop in spans:
        if at >= start:  # (a name listed twice finds its lines twice)
            kept.append(block[start:at])
            start = stop
    kept.append(block[start:])
    return b"".join(kept)


read_request = _read_request
read_response = _read_response
PURE = bool(os.environ.get("MECHA_PURE_PYTHON"))
"""Set MECHA_PURE_PYTHON=1 to run without the compiled twins (scripts/build-native)."""
if not PURE:
    try:
        from protocols.http import _h1_forward_c
    except ImportError:  # not built here: the functions above serve
        pass
    else:
        read_request = _h1_forward_c.read_request
        read_response = _h1_forward_c.read_response
