"""A strict, fast, sans-IO HTTP/1.1 codec: `H1ServerCodec` and `H1ClientCodec`.

Both speak the shared vocabulary of `events.py`. Parsing lives in `h1_parse.py`; this
module holds the connection state machine and the serialisers.

State machine (everything that changes `_state`, `_send` or `_keep` is in this file)
-----------------------------------------------------------------------------------
Receiving, `_state`:

    HEAD    waiting for a head; empty lines before it are skipped.
              head without a body         -> DONE (server) | HEAD (client, keep-alive)
              head with a framed body     -> BODY
              CONNECT / Upgrade request, 101 response, 2xx answer to CONNECT -> TUNNEL
              1xx response other than 101 -> HEAD (the final response follows)
    BODY    a reader consumes the body; its last event ends the message -> as above.
            A close-delimited response body ends at EOF.
    TUNNEL  every byte becomes Data; EOF gives Data(b"", end_stream=True) -> CLOSED.
    DONE    server: the request is complete; later bytes stay buffered, unparsed, until
            next_message() (-> HEAD). Client: the response ended a connection that cannot
            be reused. Without keep-alive, later bytes are dropped.
    CLOSED  EOF was received; later bytes are ignored.
    ERROR   malformed input; feed() raises the HttpError (again). When complete messages
            precede the bad bytes in one feed, that feed returns them and the next one
            (or EOF) raises: an upstream's whole response is not lost to the excess bytes
            behind it.

EOF (`feed(b"")`): HEAD with nothing buffered -> CLOSED (client: HttpError if a response
is owed); inside a head or a length-delimited body -> HttpError; close-delimited body or
tunnel -> Data(b"", end_stream=True), CLOSED; server DONE -> remembered, the buffered
requests are still handed out by next_message().

Sending, `_send`: IDLE until a head is encoded, then the framing kind chosen for that
message (NONE, FIXED, CHUNKED, CLOSE, TUNNEL) until it ends: `end_stream` on the head,
`encode_data(..., end_stream=True)` or `encode_trailers()`.

`_keep` (keep_alive) starts true and turns false for good on: `Connection: close` from
either side, an HTTP/1.0 peer without keep-alive, a close-delimited body, a tunnel (or a
refused one), a response that ends before its request body did, an error.
"""

from __future__ import annotations

from collections import deque
from http import HTTPStatus
from typing import ClassVar

from protocols.http.errors import HttpError
from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h1_parse import (
    CHUNKED,
    CLOSE,
    CONNECT,
    DEFAULT_LIMITS,
    FIXED,
    HEAD,
    HTTP10,
    NONE,
    TUNNEL,
    H1Limits,
    Reader,
    check_partial,
    content_length,
    make_reader,
    parse_request,
    parse_response,
)
from protocols.http.headers import Headers

__all__ = ["H1ClientCodec", "H1Limits", "H1ServerCodec"]

_HEAD, _BODY, _TUNNEL, _DONE, _CLOSED, _ERROR = range(6)
_IDLE = -1

_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
for _s in HTTPStatus:
    _line = b"HTTP/1.1 %d %s\r\n" % (_s.value, _s.phrase.encode())
    _STATUS_LINES[_s.value, b""] = _STATUS_LINES[_s.value, _s.phrase.encode()] = _line

_BODY_METHODS = frozenset((b"POST", b"PUT", b"PATCH"))
_CL = b"content-length"
_TE = b"transfer-encoding"
_NO_BODY = Reader()
_NO_ERROR = HttpError("no error")


class _Codec:
    """Receive loop and body serialisation shared by both sides of a connection."""

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_keep",
        "_limits",
        "_reader",
        "_scan",
        "_send",
        "_send_left",
        "_state",
    )
    _RESPONSES: ClassVar[bool] = False

    def __init__(self, limits: H1Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = b""
        self._scan = 0
        self._state = _HEAD
        self._reader = _NO_BODY
        self._keep = True
        self._eof = False
        self._error = _NO_ERROR
        self._send = _IDLE
        self._send_left = 0

    @property
    def keep_alive(self) -> bool:
        return self._keep

    @property
    def buffered(self) -> int:
        """Bytes received but not parsed yet."""
        return len(self._buf)

    # -- receiving ------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data` (b"" means EOF) into events."""
        state = self._state
        if state == _ERROR:
            raise self._again()
        if not data:
            return self._feed_eof()
        if state >= _DONE:
            if state == _DONE and self._keep:
                self._buf += data
            return []
        return self._run(self._buf + data if self._buf else data)

    def _run(self, buf: bytes) -> list[Event]:
        out: list[Event] = []
        pos = 0
        try:
            while True:
                state = self._state
                if state == _HEAD:
                    while buf.startswith(b"\r\n", pos):
                        pos += 2
                    if pos == len(buf):
                        break
                    limit = pos + self._limits.max_head
                    end = buf.find(b"\r\n\r\n", pos + self._scan, limit)
                    if end < 0:
                        check_partial(buf, pos, self._scan, limit - pos, self._RESPONSES)
                        self._scan = max(0, len(buf) - pos - 3)
                        break
                    self._scan = 0
                    self._head(buf, pos, end, out)
                    pos = end + 4
                elif state <= _TUNNEL:
                    reader = self._reader
                    pos = reader.read(buf, pos, out)
                    if not reader.done:
                        break
                    self._message_done()
                else:
                    break
        except HttpError as exc:
            error = self._fail(exc)
            whole = _whole_messages(out)
            if not whole:
                raise error from None
            # Whole messages came before the bad bytes: hand them out; the next feed raises.
            return whole
        if self._state >= _DONE and not self._keep:
            self._buf = b""
        else:
            self._buf = buf[pos:] if pos else buf
        return out

    def _feed_eof(self) -> list[Event]:
        out: list[Event] = []
        self._eof = True
        state = self._state
        try:
            if state == _HEAD:
                self._eof_in_head()
                self._state = _CLOSED
            elif state <= _TUNNEL:
                self._reader.eof(out)
                self._message_done()
                self._state = _CLOSED
        except HttpError as exc:
            raise self._fail(exc) from None
        return out

    def _begin_body(self, kind: int, length: int) -> None:
        if kind == NONE:
            self._message_done()
            return
        self._reader = make_reader(kind, length, self._limits)
        self._state = _TUNNEL if kind == TUNNEL else _BODY

    def _fail(self, exc: HttpError) -> HttpError:
        self._state = _ERROR
        self._keep = False
        self._buf = b""
        self._error = exc
        return exc

    def _again(self) -> HttpError:
        return HttpError(self._error.reason, self._error.status)

    def _head(self, buf: bytes, start: int, end: int, out: list[Event]) -> None:
        raise NotImplementedError

    def _message_done(self) -> None:
        raise NotImplementedError

    def _eof_in_head(self) -> None:
        raise NotImplementedError

    # -- sending --------------------------------------------------------------------------

    def encode_data(self, data: bytes, end_stream: bool) -> bytes:
        """Frame body bytes for the message being sent."""
        kind = self._send
        if kind == CHUNKED:
            out = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
            if end_stream:
                out += b"0\r\n\r\n"
                self._end_send()
            return out
        if kind == FIXED:
            left = self._send_left - len(data)
            if left < 0:
                raise ValueError("more body than the declared Content-Length")
            self._send_left = left
        elif kind == NONE:
            if data:
                raise ValueError("this message cannot carry a body")
        elif kind == _IDLE:
            raise RuntimeError("no message is being sent")
        if end_stream:
            self._end_send()
        return data

    def encode_trailers(self, trailers: Headers) -> bytes:
        """End the message with trailers (dropped unless the body is chunked)."""
        if self._send == CHUNKED:
            self._end_send()
            return b"0\r\n" + trailers.h1_block() + b"\r\n"
        return self.encode_data(b"", True)

    def _start_send(self, kind: int, left: int, end_stream: bool) -> None:
        self._send = kind
        self._send_left = left
        if end_stream:
            self._end_send()

    def _end_send(self) -> None:
        if self._send == FIXED and self._send_left:
            raise ValueError("less body than the declared Content-Length")
        self._send = _IDLE
        self._sent()

    def _sent(self) -> None:
        """A message was completely encoded."""


class H1ServerCodec(_Codec):
    """The server side of a connection: parses requests, serialises responses."""

    __slots__ = ("_http10", "_method", "_responded", "_tunnel_req")

    def __init__(self, limits: H1Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._method = b"GET"
        self._http10 = False
        self._tunnel_req = False
        self._responded = False

    @property
    def closed(self) -> bool:
        """No further request will be parsed on this connection."""
        state = self._state
        if state == _DONE:
            return not self._keep or (self._eof and not self._buf)
        return state >= _CLOSED

    @property
    def idle(self) -> bool:
        """Waiting for a head with nothing buffered: the next bytes start a request."""
        return self._state == _HEAD and not self._buf and self._send == _IDLE

    def forwarded(self, method: bytes) -> None:
        """A request went by without this codec (forwarded as bytes, its body counted by
        the caller) and its response must be framed here: take it as received."""
        if not self.idle:
            raise RuntimeError("a request is in progress")
        self._method = method
        self._http10 = False
        self._tunnel_req = False
        self._state = _DONE

    def next_message(self) -> list[Event]:
        """Start the next exchange: parse the pipelined bytes already buffered."""
        state = self._state
        if state == _ERROR:
            raise self._again()
        if state == _CLOSED:
            return []
        if not self._keep:
            self._state = _CLOSED
            self._buf = b""
            return []
        if state != _DONE or not self._responded or self._send != _IDLE:
            raise RuntimeError("the current exchange is not complete")
        self._state = _HEAD
        self._responded = False
        buf, self._buf = self._buf, b""
        out = self._run(buf) if buf else []
        if self._eof:
            out += self._feed_eof()
        return out

    def _head(self, buf: bytes, start: int, end: int, out: list[Event]) -> None:
        req, kind, length = parse_request(buf, start, end, self._limits)
        out.append(req)
        self._method = req.method
        self._http10 = req.version == HTTP10
        self._tunnel_req = kind == TUNNEL
        if kind == NONE:
            self._state = _DONE
            if not req.keep_alive:
                self._keep = False
            return
        if not req.keep_alive:
            self._keep = False
        self._begin_body(kind, length)

    def _message_done(self) -> None:
        self._state = _DONE

    def _eof_in_head(self) -> None:
        if self._buf.lstrip(b"\r\n"):
            raise HttpError("connection closed inside a request head")

    def _sent(self) -> None:
        self._responded = True
        if self._state < _DONE:  # the request body is still coming
            self._keep = False

    def encode_response(self, head: ResponseHeaders) -> bytes:
        """Serialise a response head, choosing its framing (see the module docstring)."""
        status = head.status
        line = _STATUS_LINES.get((status, head.reason)) or _status_line(status, head.reason)
        if status < 200 and status != 101:
            return b"" if self._http10 else line + head.headers.h1_block() + b"\r\n"
        if self._send != _IDLE:
            raise RuntimeError("a response is already being sent")
        headers = head.headers
        cls, te, conn, _ = _scan_out(headers)
        method = self._method
        drop: tuple[bytes, ...] = ()
        if status == 101 or (method == CONNECT and status < 300):
            if not self._tunnel_req:
                raise RuntimeError("switching protocols without a CONNECT or Upgrade request")
            kind, left, extra = TUNNEL, 0, b""
            if method == CONNECT:
                drop = (_CL, _TE)
        elif status == 204 or status == 304 or method == HEAD:
            kind, left, extra = NONE, 0, b""
            if status == 204 and (cls is not None or te is not None):
                drop = (_CL, _TE)  # RFC 9110 8.6: never in a 204
        else:
            chunk_ok = not self._http10
            kind, left, extra, drop = _framing(
                cls, te, head.content_length, head.end_stream, chunk_ok, True
            )
        extra += self._connection(head.keep_alive, kind, conn)
        block = _block_without(headers, drop) if drop else headers.h1_block()
        self._start_send(kind, left, head.end_stream)
        return line + block + extra + b"\r\n"

    def _connection(self, allowed: bool, kind: int, conn: bytes) -> bytes:
        """Decide keep-alive for this response; the Connection line to add, if any."""
        close = bool(conn) and _has_token(conn, b"close")
        keep = (
            self._keep
            and allowed
            and not close
            and kind != CLOSE
            and not self._tunnel_req
            and (self._state == _BODY or self._state == _DONE)
        )
        self._keep = keep
        if keep:
            if self._http10 and not (conn and _has_token(conn, b"keep-alive")):
                return b"connection: keep-alive\r\n"
            return b""
        if close or kind == TUNNEL:
            return b""
        return b"connection: close\r\n"


class H1ClientCodec(_Codec):
    """The client side (mecha -> upstream): serialises requests, parses responses."""

    __slots__ = ("_pending",)
    _RESPONSES: ClassVar[bool] = True

    def __init__(self, limits: H1Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._pending: deque[tuple[bytes, bool]] = deque()
        """(method, is a tunnel request) of each request whose response is owed."""

    @property
    def limits(self) -> H1Limits:
        return self._limits

    def expect_response(self, method: bytes) -> None:
        """A request went out without this codec (forwarded as bytes): read its response."""
        if self._send != _IDLE or self._state != _HEAD or self._buf:
            raise RuntimeError("this connection is not idle")
        self._pending.append((method, False))

    def _fail(self, exc: HttpError) -> HttpError:
        return super()._fail(HttpError(exc.reason, 502))

    def _head(self, buf: bytes, start: int, end: int, out: list[Event]) -> None:
        if not self._pending:
            raise HttpError("response without a request")
        method, tunnel = self._pending[0]
        resp, kind, length = parse_response(buf, start, end, self._limits, method)
        out.append(resp)
        if resp.status < 200 and resp.status != 101:
            return
        if resp.status == 101 and not tunnel:
            raise HttpError("101 response to a request that did not ask to upgrade")
        self._pending.popleft()
        if not resp.keep_alive or (tunnel and kind != TUNNEL):
            self._keep = False
        self._begin_body(kind, length)

    def _message_done(self) -> None:
        if self._send != _IDLE and not self._pending:  # our request body is still going
            self._keep = False
        self._state = _HEAD if self._keep else _DONE

    def _eof_in_head(self) -> None:
        if self._buf.lstrip(b"\r\n"):
            raise HttpError("connection closed inside a response head")
        if self._pending:
            raise HttpError("connection closed before the response")

    def encode_request(self, head: RequestHeaders) -> bytes:
        """Serialise a request head and start a new exchange."""
        if self._send != _IDLE:
            raise RuntimeError("the previous request is still being sent")
        if not self._keep or self._state >= _DONE:
            raise RuntimeError("this connection cannot carry another request")
        method = head.method
        headers = head.headers
        cls, te, conn, has_host = _scan_out(headers)
        tunnel = method == CONNECT or head.upgrade is not None
        drop: tuple[bytes, ...] = ()
        if tunnel:
            kind, left, extra = TUNNEL, 0, b""
        else:
            zero = method in _BODY_METHODS
            kind, left, extra, drop = _framing(
                cls, te, head.content_length, head.end_stream, True, zero
            )
        close = bool(conn) and _has_token(conn, b"close")
        if not head.keep_alive and not close:
            extra += b"connection: close\r\n"
        if tunnel or close or not head.keep_alive:
            self._keep = False
        host = b"" if has_host else b"host: " + head.authority + b"\r\n"
        block = _block_without(headers, drop) if drop else headers.h1_block()
        self._pending.append((method, tunnel))
        self._start_send(kind, left, head.end_stream and not tunnel)
        return method + b" " + head.path + b" HTTP/1.1\r\n" + host + block + extra + b"\r\n"


def _whole_messages(events: list[Event]) -> list[Event]:
    """`events` up to the end of the last message they complete."""
    for end in range(len(events), 0, -1):
        last = events[end - 1]
        if isinstance(last, RequestHeaders | ResponseHeaders | Data | Trailers) and last.end_stream:
            return events[:end]
    return []


# -- serialisation helpers -----------------------------------------------------------------


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <standard reason>\\r\\n`."""
    return _status_line(status, b"")


def _status_line(status: int, reason: bytes) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        phrase = reason or (_STATUS_LINES.get((status, b""), b"")[13:-2])
        line = b"HTTP/1.1 %d %b\r\n" % (status, phrase)
    return line


def _scan_out(headers: Headers) -> tuple[list[bytes] | None, bytes | None, bytes, bool]:
    """(Content-Length values, Transfer-Encoding, Connection lowercased, has Host)."""
    index = headers.indexed()
    te = index.get(_TE)
    conn = index.get(b"connection")
    return (
        index.get(_CL),
        None if te is None else b",".join(te),
        b"" if conn is None else b"," + b",".join(conn).lower(),
        b"host" in index,
    )


def _has_token(value: bytes, token: bytes) -> bool:
    return token in value and any(t.strip() == token for t in value.split(b","))


def _framing(
    cls: list[bytes] | None,
    te: bytes | None,
    hint: int | None,
    end_stream: bool,
    chunk_ok: bool,
    zero: bool,
) -> tuple[int, int, bytes, tuple[bytes, ...]]:
    """(kind, length, header lines to add, header names to drop) for a message to send."""
    drop: tuple[bytes, ...] = (_TE,) if te is not None else ()
    if cls is not None:
        if len(cls) == 1 and cls[0].isdigit() and len(cls[0]) < 19:
            return FIXED, int(cls[0]), b"", drop
        length = _local_length(cls)
        return FIXED, length, b"content-length: %d\r\n" % length, (*drop, _CL)
    if hint is not None:
        return FIXED, hint, b"content-length: %d\r\n" % hint, drop
    if end_stream:
        return NONE, 0, (b"content-length: 0\r\n" if zero else b""), drop
    if not chunk_ok:
        return CLOSE, 0, b"", drop
    if te is not None and te.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
        return CHUNKED, 0, b"", ()
    return CHUNKED, 0, b"transfer-encoding: chunked\r\n", drop


def _local_length(values: list[bytes]) -> int:
    try:
        return content_length(values)
    except HttpError:
        raise ValueError(f"invalid Content-Length to send: {values!r}") from None


def _block_without(headers: Headers, drop: tuple[bytes, ...]) -> bytes:
    return b"".join([k + b": " + v + b"\r\n" for k, v in headers if k not in drop])
