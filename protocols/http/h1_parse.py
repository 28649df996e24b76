"""HTTP/1.1 parsing helpers for `h1.py`: heads, header blocks and body readers.

Everything here works on a `bytes` buffer and integer offsets into it, so the codec never
copies what it has not been asked for: a head is found with one `find`, its header block
is validated with one compiled-regex `fullmatch` and split with `split`/`partition`, and
body bytes leave as slices of the input. Errors are `HttpError` with the status a server
answers with (the client codec turns them into 502).

Body framing kinds (what follows a head):
    NONE     nothing; the head ends the message
    FIXED    exactly N bytes (Content-Length)
    CHUNKED  chunked transfer coding, ends with the 0 chunk and optional trailers
    CLOSE    everything until EOF (response without framing; HTTP/1.0 peer)
    TUNNEL   every further byte is opaque (CONNECT, Upgrade, 101)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocols.http.errors import HttpError
from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.headers import INDEXED, HeaderItems, Headers, Index


@dataclass(frozen=True, slots=True)
class H1Limits:
    """Bounds on what one connection may make the codec buffer or accept.

    A request line alone beyond MAX_LINE (8 KiB) is answered with 414 whatever max_head is.
    """

    max_head: int = 64 * 1024
    """Request/status line + headers (and a trailer section); beyond -> 431."""
    max_headers: int = 128
    """Header (or trailer) fields; beyond -> 431."""
    max_body: int | None = None
    """Declared Content-Length or accumulated chunked size; beyond -> 413."""


DEFAULT_LIMITS = H1Limits()

NONE, FIXED, CHUNKED, CLOSE, TUNNEL = range(5)

MAX_LINE = 8 * 1024
"""A request line longer than this is answered with 414."""
MAX_CHUNK_LINE = 4 * 1024
"""A chunk-size line (with extensions) longer than this (or max_head) is malformed."""
MAX_LENGTH_DIGITS = 18
"""Content-Length values with more digits are refused with 413 (over an exabyte)."""

HTTP11 = b"HTTP/1.1"
HTTP10 = b"HTTP/1.0"
CONNECT = b"CONNECT"
HEAD = b"HEAD"

# Possessive repeats (++, *+): what follows each can never be matched by it, so the engine
# need not remember where to backtrack to (a fifth less work on every head).
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = rb"[" + _TCHAR + rb"]++"
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*+"
_FIELD_LINES = rb"((?:" + _TOKEN + rb":" + _VALUE + rb"\r\n)*+)"
REQUEST_HEAD = re.compile(
    rb"(" + _TOKEN + rb") ([\x21-\x7e]++) (HTTP/1\.[01])\r\n" + _FIELD_LINES, re.ASCII
)
RESPONSE_HEAD = re.compile(
    rb"(HTTP/1\.[01]) ([0-9]{3})(?: (" + _VALUE + rb"))?\r\n" + _FIELD_LINES, re.ASCII
)
_REQUEST_LINE = re.compile(_TOKEN + rb" [\x21-\x7e]+ (HTTP/[0-9]\.[0-9])")
_STATUS_LINE = re.compile(rb"(HTTP/[0-9]\.[0-9]) [0-9]{3}(?: " + _VALUE + rb")?")
_FIELDS = re.compile(_FIELD_LINES)
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_EXT_VALUE = rb"(?:" + _TOKEN + rb"|" + _QUOTED + rb")"
_CHUNK_EXT = rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*" + _EXT_VALUE + rb")?"
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:" + _CHUNK_EXT + rb")*")
_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)"
_HOST_VALUE = re.compile(_HOST + rb"(?::[0-9]*)?")
_AUTHORITY_FORM = re.compile(_HOST + rb":[0-9]+")
_ABSOLUTE_FORM = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]+)(.*)")
_BARE = re.compile(rb"\r(?=[^\n])|(?<!\r)\n|\x00")
TCHARS = frozenset(b"".join(re.findall(rb"[" + _TCHAR + rb"]", bytes(range(128)))))

_BODY_OR_UPGRADE = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect"))
_NO_TOKENS: frozenset[bytes] = frozenset()
_GOOD_HOSTS: set[bytes] = set()
"""Host values already validated (bounded): the same few hosts arrive over and over."""
Found = Index
"""The framing fields of a head (INDEXED names, lowercase) -> all their values."""


# -- heads ---------------------------------------------------------------------------------


def check_partial(buf: bytes, start: int, scan: int, max_head: int, response: bool) -> None:
    """Fail early on an incomplete head that is too long or already malformed.

    `scan` is how far (from start) earlier calls already looked; together with the
    caller's bounded search for the end of the head this keeps the buffer under max_head.
    """
    size = len(buf) - start
    if size > MAX_LINE + 1 and buf.find(b"\r\n", start, start + MAX_LINE + 2) < 0:
        raise HttpError("start line too long", 414)
    if size >= max_head:
        raise HttpError("head too large", 431)
    first = buf[start]
    if first == 0x0D and size == 1:  # maybe an empty line before the start line
        return
    if (first != 0x48) if response else (first not in TCHARS):
        raise HttpError("malformed start line")
    if _BARE.search(buf, start + scan) is not None:
        raise HttpError("bare CR, LF or NUL in head")


def parse_fields(block: bytes, max_headers: int) -> tuple[Headers, Found]:
    """`Name: value\\r\\n` lines (already validated) -> (Headers, framing-relevant fields).

    Items are (lowercase name, value without surrounding SP/HTAB); `found` maps the
    INDEXED names present to all their values, and is the Headers' index.
    """
    lines = block.split(b"\r\n")
    lines.pop()
    if len(lines) > max_headers:
        raise HttpError("too many header fields", 431)
    items: HeaderItems = []
    found: Found = {}
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip()
        items.append((name, value))
        if name in INDEXED:
            if name in found:
                found[name].append(value)
            else:
                found[name] = [value]
    return Headers(items, block, found), found


def parse_trailers(block: bytes, max_headers: int) -> Headers:
    if _FIELDS.fullmatch(block) is None:
        raise HttpError(_bad_field_reason(block))
    return parse_fields(block, max_headers)[0]


def _head_error(buf: bytes, start: int, end: int, response: bool) -> HttpError:
    """Why the head buf[start:end+4] failed the head regex (error path only)."""
    line_end = buf.find(b"\r\n", start, end + 2)
    if line_end - start > MAX_LINE:
        return HttpError("start line too long", 414)
    m = (_STATUS_LINE if response else _REQUEST_LINE).fullmatch(buf, start, line_end)
    if m is None:
        return HttpError(f"malformed {'status' if response else 'request'} line")
    if m.group(1) not in (HTTP10, HTTP11):
        return HttpError("unsupported HTTP version", 505)
    return HttpError(_bad_field_reason(buf[line_end + 2 : end + 2]))


def _bad_field_reason(block: bytes) -> str:
    for line in block.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding in header"
        name, colon, _ = line.partition(b":")
        if not colon or re.fullmatch(_TOKEN, name) is None:
            return "invalid header name"
    return "invalid character in header"


def _tokens(values: list[bytes] | None) -> frozenset[bytes]:
    if not values:
        return _NO_TOKENS
    if len(values) == 1 and b"," not in values[0]:
        return frozenset((values[0].lower(),))
    return frozenset(t.strip().lower() for v in values for t in v.split(b","))


_KEEP_ALIVE: dict[tuple[bytes, bytes], bool] = {}
"""(version, the one Connection value) -> keep-alive; bounded, the same few values recur."""


def _connection_keep_alive(version: bytes, values: list[bytes] | None) -> bool:
    """Keep-alive from the Connection field's values (None: absent)."""
    if values is None:
        return version == HTTP11
    if len(values) != 1:
        return _keep_alive(version, _tokens(values))
    key = (version, values[0])
    keep = _KEEP_ALIVE.get(key)
    if keep is None:
        keep = _keep_alive(version, _tokens(values))
        if len(_KEEP_ALIVE) < 256:
            _KEEP_ALIVE[key] = keep
    return keep


def _keep_alive(version: bytes, tokens: frozenset[bytes]) -> bool:
    if version == HTTP11:
        return b"close" not in tokens
    return b"keep-alive" in tokens and b"close" not in tokens


def content_length(values: list[bytes]) -> int:
    """The one Content-Length that `values` (all the field's values) agree on."""
    if len(values) == 1:
        value = values[0]
        if value.isdigit() and len(value) <= MAX_LENGTH_DIGITS:
            return int(value)
    parts = {p.strip() for v in values for p in v.split(b",")}
    if len(parts) != 1:
        raise HttpError("differing Content-Length values")
    value = parts.pop()
    if not value.isdigit():
        raise HttpError("Content-Length is not a number")
    if len(value) > MAX_LENGTH_DIGITS:
        raise HttpError("Content-Length too large", 413)
    return int(value)


def _check_chunked(values: list[bytes]) -> None:
    """Accept exactly `chunked` as the transfer coding (smuggling guard)."""
    if len(values) == 1 and values[0].lower() == b"chunked":
        return
    codings = [c.strip().lower() for v in values for c in v.split(b",")]
    if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        raise HttpError("chunked is not the final transfer coding")
    raise HttpError("unsupported transfer coding", 501)


def good_host(host: bytes) -> bool:
    """Whether `host` is a valid Host value (remembered for the few that recur)."""
    if host in _GOOD_HOSTS:
        return True
    if _HOST_VALUE.fullmatch(host) is None:
        return False
    if len(_GOOD_HOSTS) < 1024:
        _GOOD_HOSTS.add(host)
    return True


def _check_host(host: bytes) -> bytes:
    if not good_host(host):
        raise HttpError("invalid Host header")
    return host


# -- requests ------------------------------------------------------------------------------


def parse_request(
    buf: bytes, start: int, end: int, limits: H1Limits
) -> tuple[RequestHeaders, int, int]:
    """Parse the head buf[start:end+4] -> (request, framing kind, body length or -1)."""
    m = REQUEST_HEAD.fullmatch(buf, start, end + 2)
    if m is None or (end - start > MAX_LINE and m.start(4) - start > MAX_LINE + 2):
        raise _head_error(buf, start, end, False)
    method, target, version, block = m.groups()
    headers, found = parse_fields(block, limits.max_headers)
    hosts = found.get(b"host")
    if (
        hosts
        and len(hosts) == 1
        and target[:1] == b"/"
        and method != CONNECT
        and found.keys().isdisjoint(_BODY_OR_UPGRADE)
    ):
        # the common case: origin form, one Host, no body, no Upgrade (so the Connection
        # tokens only decide keep-alive)
        host = hosts[0]
        if host not in _GOOD_HOSTS:
            _check_host(host)
        keep = _connection_keep_alive(version, found.get(b"connection"))
        req = RequestHeaders(method, target, host, headers, b"http", version, 1, True, keep)
        return req, NONE, -1
    req = RequestHeaders(method, target, b"", headers, b"http", version)
    _target(req, hosts)
    kind, length = _request_framing(req, found, limits)
    return req, kind, length


def _target(req: RequestHeaders, hosts: list[bytes] | None) -> None:
    """Set authority (and path/scheme for absolute form) from the target and Host."""
    if hosts is None:
        if req.version == HTTP11:
            raise HttpError("missing Host header")
    elif len(hosts) > 1:
        raise HttpError("more than one Host header")
    else:
        req.authority = _check_host(hosts[0])
    target = req.path
    if req.method == CONNECT:
        if _AUTHORITY_FORM.fullmatch(target) is None:
            raise HttpError("CONNECT target is not host:port")
        req.authority = target
    elif target[:1] != b"/" and not (target == b"*" and req.method == b"OPTIONS"):
        _absolute_form(req, target)


def _absolute_form(req: RequestHeaders, target: bytes) -> None:
    m = _ABSOLUTE_FORM.fullmatch(target)
    if m is None or _HOST_VALUE.fullmatch(m.group(2)) is None:
        raise HttpError("malformed request target")
    scheme, authority, path = m.groups()
    req.scheme = scheme.lower()
    req.authority = authority
    req.path = path if path[:1] == b"/" else b"/" + path


def _request_framing(req: RequestHeaders, found: Found, limits: H1Limits) -> tuple[int, int]:
    tokens = _tokens(found.get(b"connection"))
    v11 = req.version == HTTP11
    req.keep_alive = _keep_alive(req.version, tokens)
    if v11 and b"expect" in found:
        req.expect_continue = b"100-continue" in _tokens(found[b"expect"])
    kind, length = _body_length(found, v11, limits)
    req.content_length = None if length < 0 else length
    if req.method == CONNECT:
        if kind != NONE:
            raise HttpError("CONNECT request with a body")
        kind = TUNNEL
    elif v11 and kind == NONE and b"upgrade" in tokens and b"upgrade" in found:
        req.upgrade = b", ".join(found[b"upgrade"])
        kind = TUNNEL
    if kind == TUNNEL:
        req.keep_alive = False
    req.end_stream = kind == NONE
    return kind, length


def _body_length(found: Found, v11: bool, limits: H1Limits) -> tuple[int, int]:
    """(kind, length) of a body framed by its headers; length is -1 when not declared."""
    te = found.get(b"transfer-encoding")
    cl = found.get(b"content-length")
    if te is not None:
        if not v11:
            raise HttpError("Transfer-Encoding in an HTTP/1.0 message")
        if cl is not None:
            raise HttpError("both Transfer-Encoding and Content-Length")
        _check_chunked(te)
        return CHUNKED, -1
    if cl is None:
        return NONE, -1
    length = content_length(cl)
    if limits.max_body is not None and length > limits.max_body:
        raise HttpError("body too large", 413)
    return (FIXED if length else NONE), length


# -- responses -----------------------------------------------------------------------------


def parse_response(
    buf: bytes, start: int, end: int, limits: H1Limits, method: bytes
) -> tuple[ResponseHeaders, int, int]:
    """Parse a response head answering `method` -> (response, framing kind, length)."""
    m = RESPONSE_HEAD.fullmatch(buf, start, end + 2)
    if m is None or (end - start > MAX_LINE and m.start(4) - start > MAX_LINE + 2):
        raise _head_error(buf, start, end, True)
    version, code, reason, block = m.groups()
    status = int(code)
    if status < 100:
        raise HttpError("invalid status code")
    headers, found = parse_fields(block, limits.max_headers)
    keep = _connection_keep_alive(version, found.get(b"connection"))
    resp = ResponseHeaders(status, headers, reason or b"", version, 1, False, keep)
    kind, length = _response_framing(resp, found, limits, method)
    if kind in (TUNNEL, CLOSE):
        resp.keep_alive = False
    resp.end_stream = kind == NONE and status >= 200
    return resp, kind, length


def _response_framing(
    resp: ResponseHeaders, found: Found, limits: H1Limits, method: bytes
) -> tuple[int, int]:
    status = resp.status
    cl = found.get(b"content-length")
    if cl is not None:
        resp.content_length = content_length(cl)
        if b"transfer-encoding" in found:
            raise HttpError("both Transfer-Encoding and Content-Length")
    if status < 200:
        return (TUNNEL if status == 101 else NONE), -1
    if method == CONNECT and status < 300:  # any 2xx, 204 too (RFC 9112 6.3 (2))
        return TUNNEL, -1
    if method == HEAD or status == 204 or status == 304:
        return NONE, -1
    if b"transfer-encoding" in found:
        return _body_length(found, resp.version == HTTP11, limits)
    length = resp.content_length
    if length is None:
        return CLOSE, -1
    if limits.max_body is not None and length > limits.max_body:
        raise HttpError("body too large", 413)
    return (FIXED if length else NONE), length


# -- body readers --------------------------------------------------------------------------


class Reader:
    """Consumes body bytes from buf[pos:], appends events, returns the new position."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def read(self, buf: bytes, pos: int, out: list[Event]) -> int:
        raise NotImplementedError

    def eof(self, out: list[Event]) -> None:
        raise HttpError("connection closed before the end of the body")


class FixedReader(Reader):
    __slots__ = ("_left",)

    def __init__(self, length: int) -> None:
        self.done = False
        self._left = length

    def read(self, buf: bytes, pos: int, out: list[Event]) -> int:
        left = self._left
        avail = len(buf) - pos
        if avail >= left:
            out.append(Data(buf[pos : pos + left], end_stream=True))
            self.done = True
            return pos + left
        if avail:
            out.append(Data(buf[pos:] if pos else buf))
            self._left = left - avail
        return len(buf)


class UntilCloseReader(Reader):
    """A close-delimited body or a tunnel: everything until EOF."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int, out: list[Event]) -> int:
        if pos < len(buf):
            out.append(Data(buf[pos:] if pos else buf))
        return len(buf)

    def eof(self, out: list[Event]) -> None:
        out.append(Data(b"", end_stream=True))
        self.done = True


_SIZE, _CHUNK, _CHUNK_END, _TRAILER = range(4)


class ChunkedReader(Reader):
    __slots__ = ("_left", "_limits", "_state", "_total")

    def __init__(self, limits: H1Limits) -> None:
        self.done = False
        self._limits = limits
        self._state = _SIZE
        self._left = 0
        self._total = 0

    def read(self, buf: bytes, pos: int, out: list[Event]) -> int:
        end = len(buf)
        while pos < end and not self.done:
            state = self._state
            if state == _CHUNK:
                pos = self._data(buf, pos, out)
            elif state == _SIZE:
                new = self._size(buf, pos)
                if new == pos:
                    break
                pos = new
            elif state == _CHUNK_END:
                if not buf.startswith(b"\r\n"[: end - pos], pos):
                    raise HttpError("missing CRLF after chunk data")
                if end - pos < 2:
                    break
                pos += 2
                self._state = _SIZE
            else:
                new = self._trailer(buf, pos, out)
                if new == pos:
                    break
                pos = new
        return pos

    def _data(self, buf: bytes, pos: int, out: list[Event]) -> int:
        n = min(self._left, len(buf) - pos)
        out.append(Data(buf[pos : pos + n]))
        self._left -= n
        if not self._left:
            self._state = _CHUNK_END
        return pos + n

    def _size(self, buf: bytes, pos: int) -> int:
        limit = min(MAX_CHUNK_LINE, self._limits.max_head)
        line_end = buf.find(b"\r\n", pos, pos + limit)
        if line_end < 0:
            if len(buf) - pos >= limit or _BARE.search(buf, pos) is not None:
                raise HttpError("malformed chunk size line")
            return pos
        m = _CHUNK_LINE.fullmatch(buf, pos, line_end)
        if m is None:
            raise HttpError("malformed chunk size line")
        size = int(m.group(1), 16)
        self._total += size
        max_body = self._limits.max_body
        if max_body is not None and self._total > max_body:
            raise HttpError("body too large", 413)
        self._left = size
        self._state = _CHUNK if size else _TRAILER
        return line_end + 2

    def _trailer(self, buf: bytes, pos: int, out: list[Event]) -> int:
        if buf.startswith(b"\r\n", pos):
            out.append(Data(b"", end_stream=True))
            self.done = True
            return pos + 2
        limits = self._limits
        end = buf.find(b"\r\n\r\n", pos, pos + limits.max_head)
        if end < 0:
            if len(buf) - pos >= limits.max_head:
                raise HttpError("trailer section too large", 431)
            if _BARE.search(buf, pos) is not None:
                raise HttpError("bare CR, LF or NUL in trailers")
            return pos
        out.append(Trailers(parse_trailers(buf[pos : end + 2], limits.max_headers)))
        self.done = True
        return end + 4


def make_reader(kind: int, length: int, limits: H1Limits) -> Reader:
    if kind == FIXED:
        return FixedReader(length)
    if kind == CHUNKED:
        return ChunkedReader(limits)
    return UntilCloseReader()
