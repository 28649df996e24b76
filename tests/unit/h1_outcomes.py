"""mecha's HTTP/1.1 codec and h11, driven the same way, and what each made of the input in
one comparable form (`Outcome`: the messages, then the error if any). Used by
test_h1_differential.py.

The server drivers answer each request once it has ended (a 200, or a switch to a tunnel
for CONNECT and accepted Upgrades); the client drivers parse the responses to a list of
requests. h11 also reports where each message lies in the input, which the differential
test's allowances use as evidence.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h11

from protocols.http.errors import HttpError
from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h1 import H1ClientCodec, H1ServerCodec
from protocols.http.headers import Headers
from tests.unit.h1_wire import Asked

# -- what a parser made of the input ---------------------------------------------------------

Fields = tuple[tuple[bytes, bytes], ...]


@dataclass
class Msg:
    """One message as both parsers can describe it."""

    start: tuple[object, ...]
    """(method, scheme, path, version) or (status, reason, version)."""
    fields: Fields
    length: int | None
    """The Content-Length the parser settled on."""
    keep_alive: bool = True
    body: bytes = b""
    trailers: Fields = ()
    tunnel: bytes | None = None
    """Bytes after a switch to a tunnel (CONNECT, Upgrade, 101); None: no tunnel."""
    complete: bool = False
    asked: bytes = field(default=b"", compare=False)
    """A final response: the method of the request it answers."""
    span: tuple[int, int, int] = field(default=(0, 0, 0), compare=False)
    """h11 only: offsets of the message's start, head end and end in the input."""


@dataclass
class Outcome:
    messages: list[Msg] = field(default_factory=list)
    error: str | None = None
    rest: bytes = b""
    """h11 only: the bytes left when the driver stopped reading messages."""
    failed_at: int = 0
    """h11 only: how far into the input it had read when it failed."""

    def get(self, index: int) -> Msg | None:
        return self.messages[index] if index < len(self.messages) else None


def canonical(items: Iterable[tuple[bytes, bytes]]) -> Fields:
    """Fields as (lowercase name, value). h11 rewrites the framing fields (one Content-Length
    out of a list of equal ones, Transfer-Encoding lowercased), so both sides are put in that
    form: Content-Length values last, as their one agreed value."""
    out = [(k, v.lower() if k == b"transfer-encoding" else v) for k, v in items]
    lengths = {p.strip() for k, v in out if k == b"content-length" for p in v.split(b",")}
    out = [(k, bytes(v)) for k, v in out if k != b"content-length"]
    if lengths:
        out.append((b"content-length", b",".join(sorted(lengths))))
    return tuple(out)


def informational(status: object) -> bool:
    """A 1xx status but 101: an interim response, whole with its head."""
    return isinstance(status, int) and 100 <= status < 200 and status != 101


# -- mecha -----------------------------------------------------------------------------------


def take(out: Outcome, event: Event, tunnel: bool = False) -> None:
    """Add one of mecha's events; `tunnel`: the head switches the connection to a tunnel."""
    if isinstance(event, RequestHeaders):
        start: tuple[object, ...] = (event.method, event.scheme, event.path, event.version)
        tunnel = event.method == b"CONNECT" or event.upgrade is not None
    elif isinstance(event, ResponseHeaders):
        start = (event.status, event.reason, event.version)
    if isinstance(event, RequestHeaders | ResponseHeaders):
        # a 1xx head is a whole message; its Connection field means nothing
        interim = isinstance(event, ResponseHeaders) and informational(event.status)
        fields = canonical(event.headers.items)
        msg = Msg(start, fields, event.content_length, event.keep_alive or interim)
        msg.complete = event.end_stream or interim
        msg.tunnel = b"" if tunnel else None
        out.messages.append(msg)
        return
    msg = out.messages[-1]
    if isinstance(event, Trailers):
        msg.trailers = canonical(event.headers.items)
        msg.complete = True
    elif isinstance(event, Data):
        if msg.tunnel is not None:
            msg.tunnel += event.data
        else:
            msg.body += event.data
        msg.complete = event.end_stream


def ours_serve(chunks: list[bytes]) -> Outcome:
    """mecha's server codec answering each request with a 200 once it has ended."""
    codec = H1ServerCodec()
    out = Outcome()
    try:
        for chunk in [*chunks, b""]:
            events = codec.feed(chunk)
            for event in events:
                take(out, event)
            while events and events[-1].end_stream and codec.keep_alive:  # type: ignore[union-attr]
                codec.encode_response(ResponseHeaders(200, Headers(), end_stream=True))
                events = codec.next_message()
                for event in events:
                    take(out, event)
    except HttpError as exc:
        out.error = f"{exc.status} {exc.reason}"
    return out


def ours_fetch(asked: list[Asked], chunks: list[bytes]) -> Outcome:
    """mecha's client codec with every request sent before the responses arrive."""
    codec = H1ClientCodec()
    for a in asked:
        target = b"example.com:443" if a.method == b"CONNECT" else b"/"
        upgrade = b"websocket" if a.upgrade else None
        head = RequestHeaders(a.method, target, b"a", Headers(), end_stream=True, upgrade=upgrade)
        codec.encode_request(head)
    out = Outcome()
    finals = deque(asked)
    try:
        for chunk in [*chunks, b""]:
            for event in codec.feed(chunk):
                method, tunnel = b"", False
                if isinstance(event, ResponseHeaders) and not informational(event.status):
                    method = finals.popleft().method
                    switch = event.status == 101 or (method == b"CONNECT" and event.status < 300)
                    tunnel = switch and not event.end_stream  # as mecha frames it
                take(out, event, tunnel)
                out.messages[-1].asked = method or out.messages[-1].asked
    except HttpError as exc:
        out.error = f"{exc.status} {exc.reason}"
    return out


# -- h11 -------------------------------------------------------------------------------------


def their_request_start(event: h11.Request) -> tuple[object, ...]:
    """(method, scheme, path, version) the way mecha reports them: an absolute-form target is
    split into scheme and origin-form path (RFC 9112 3.2.2)."""
    target = bytes(event.target)
    scheme = b"http"
    m = re.fullmatch(rb"([A-Za-z][A-Za-z0-9+.\-]*)://[^/?#]*(.*)", target)
    if event.method != b"CONNECT" and m is not None:
        scheme, path = m.group(1).lower(), m.group(2)
        target = path if path[:1] == b"/" else b"/" + path
    return (bytes(event.method), scheme, target, b"HTTP/" + event.http_version)


def their_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    values = [v for k, v in headers if k == b"content-length"]
    return int(values[0]) if values else None


def switches(request: h11.Request) -> bool:
    """The server application's answer to an upgrade proposal, mecha's proxy policy: CONNECT
    always tunnels; Upgrade does on HTTP/1.1 with the `upgrade` connection option and no
    body (RFC 9110 7.8)."""
    if request.method == b"CONNECT":
        return True
    tokens = {t.strip().lower() for k, v in request.headers if k == b"connection"
              for t in v.split(b",")}  # fmt: skip
    names = {k for k, _ in request.headers}
    framed = b"transfer-encoding" in names
    return (
        request.http_version == b"1.1"
        and b"upgrade" in tokens
        and b"upgrade" in names
        and not framed
        and not their_length(request.headers)
    )


class Their:
    """Drives one h11 connection the way mecha's codec is driven, recording messages."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.conn = h11.Connection(role)
        self.out = Outcome()
        self.fed = 0
        self.running = True
        self.request: h11.Request | None = None

    def offset(self) -> int:
        return self.fed - len(self.conn.trailing_data[0])

    def run(self, chunks: list[bytes], pump: Callable[[], bool]) -> Outcome:
        try:
            for chunk in [*chunks, b""]:
                self.conn.receive_data(chunk)
                self.fed += len(chunk)
                if self.running:
                    self.running = pump()
        except h11.RemoteProtocolError as exc:
            self.out.error = str(exc)
            self.out.failed_at = self.offset()
        self.out.rest = self.conn.trailing_data[0]
        last = self.out.messages[-1] if self.out.messages else None
        if last is not None and last.tunnel is not None:
            last.tunnel, last.complete = self.conn.trailing_data
        return self.out

    def head(self, event: h11.Request | h11.Response | h11.InformationalResponse) -> Msg:
        start_at = self.out.messages[-1].span[2] if self.out.messages else 0
        if isinstance(event, h11.Request):
            self.request = event
            start = their_request_start(event)
        else:
            start = (event.status_code, bytes(event.reason), b"HTTP/" + event.http_version)
        fields = canonical(event.headers)
        msg = Msg(start, fields, their_length(event.headers), span=(start_at, self.offset(), 0))
        self.out.messages.append(msg)
        return msg

    def body(self, event: h11.Data | h11.EndOfMessage) -> Msg:
        msg = self.out.messages[-1]
        if isinstance(event, h11.Data):
            msg.body += bytes(event.data)
        else:
            msg.trailers = canonical(event.headers)
            msg.complete = True
        msg.span = (msg.span[0], msg.span[1], self.offset())
        return msg

    def tunnel(self, msg: Msg) -> bool:
        msg.tunnel, msg.keep_alive, msg.complete = b"", False, False
        return False

    def serve(self) -> bool:
        """Parse requests, answering each with a 200 (or a switch); False once it stops."""
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return True
            if isinstance(event, h11.Request):
                self.head(event)
            elif isinstance(event, h11.Data):
                self.body(event)
            elif isinstance(event, h11.EndOfMessage):
                msg = self.body(event)
                assert self.request is not None
                if switches(self.request):  # h11 waits for the answer to the proposal
                    return self.tunnel(msg)
                conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
                conn.send(h11.EndOfMessage())
                if conn.their_state is not h11.DONE:
                    msg.keep_alive = False
                    return False
                conn.start_next_cycle()
            else:  # ConnectionClosed
                return False

    def fetch(self, asked: deque[Asked]) -> bool:
        """Parse the responses to `asked`, sending each request once the last one ended, and
        stop after the last one (h11 would take a response nobody asked for as a server's
        early error; mecha's answer to such bytes is compared in `unasked_bytes`)."""
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return True
            if isinstance(event, h11.InformationalResponse | h11.Response):
                msg = self.head(event)
                msg.complete = isinstance(event, h11.InformationalResponse)
                if isinstance(event, h11.Response):
                    msg.asked = asked[0].method
                if conn.their_state is h11.SWITCHED_PROTOCOL:
                    return self.tunnel(msg)
            elif isinstance(event, h11.Data):
                self.body(event)
            elif isinstance(event, h11.EndOfMessage):
                msg = self.body(event)
                asked.popleft()
                if conn.their_state is not h11.DONE or conn.trailing_data[1]:
                    # (h11 leaves a body that ran to EOF in DONE: that ended the connection)
                    msg.keep_alive = False
                    return False
                if not asked:
                    return False
                conn.start_next_cycle()
                send_request(conn, asked[0])
            else:  # ConnectionClosed or PAUSED
                return False


def send_request(conn: h11.Connection, asked: Asked) -> None:
    headers = [(b"host", b"a")]
    if asked.upgrade:
        headers += [(b"connection", b"upgrade"), (b"upgrade", b"websocket")]
    target = b"example.com:443" if asked.method == b"CONNECT" else b"/"
    conn.send(h11.Request(method=asked.method, target=target, headers=headers))
    conn.send(h11.EndOfMessage())


def theirs_serve(chunks: list[bytes]) -> Outcome:
    their = Their(h11.SERVER)
    return their.run(chunks, their.serve)


def theirs_fetch(asked: list[Asked], chunks: list[bytes]) -> Outcome:
    if not asked:
        return Outcome(rest=b"".join(chunks))
    their = Their(h11.CLIENT)
    queue = deque(asked)
    send_request(their.conn, queue[0])
    return their.run(chunks, lambda: their.fetch(queue))
