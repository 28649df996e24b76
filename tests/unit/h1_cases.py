"""Tables of HTTP/1.1 bytes <-> events shared by the h1 codec tests, and small drivers.

`serve` and `fetch` drive a codec the way the proxy does: whenever a request ends, the
server answers it and asks for the next pipelined one; the client encodes its requests
before feeding the responses. EOF (b"") is fed last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h1 import H1ClientCodec, H1Limits, H1ServerCodec
from protocols.http.headers import Headers


def H(*pairs: tuple[bytes, bytes]) -> Headers:  # noqa: N802 - reads like a constructor
    return Headers(list(pairs))


def normalise(events: Iterable[Event]) -> list[Event]:
    """Merge consecutive Data events (byte-at-a-time feeding splits them)."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data):
            last = out[-1] if out else None
            if isinstance(last, Data) and not last.end_stream:
                out[-1] = Data(last.data + event.data, end_stream=event.end_stream)
                continue
            event = Data(event.data, end_stream=event.end_stream)
        out.append(event)
    return [e for e in out if not (isinstance(e, Data) and not e.data and not e.end_stream)]


DEFAULT = H1Limits()


def serve(chunks: Iterable[bytes], limits: H1Limits = DEFAULT, eof: bool = True) -> list[Event]:
    """Feed a server codec, answering each complete request, then EOF."""
    codec = H1ServerCodec(limits)
    out: list[Event] = []

    def take(events: list[Event]) -> None:
        out.extend(events)
        while events and events[-1].end_stream and codec.keep_alive:  # type: ignore[union-attr]
            codec.encode_response(ResponseHeaders(200, H(), end_stream=True))
            events = codec.next_message()
            out.extend(events)

    for chunk in chunks:
        take(codec.feed(chunk))
    if eof:
        take(codec.feed(b""))
    return out


def fetch(
    requests: list[RequestHeaders],
    chunks: Iterable[bytes],
    limits: H1Limits = DEFAULT,
    eof: bool = True,
) -> list[Event]:
    """Encode `requests` on a client codec, then feed it the responses and EOF."""
    codec = H1ClientCodec(limits)
    for head in requests:
        codec.encode_request(head)
    out: list[Event] = []
    for chunk in chunks:
        out.extend(codec.feed(chunk))
    if eof:
        out.extend(codec.feed(b""))
    return out


def one_by_one(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- requests --------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    data: bytes
    events: list[Event]
    requests: list[RequestHeaders] = field(default_factory=list)
    """Client cases: the requests the responses answer."""


def _req(method: bytes, path: bytes, authority: bytes, headers: Headers, **kw: object) -> Event:
    return RequestHeaders(method, path, authority, headers, **kw)  # type: ignore[arg-type]


REQUESTS = [
    Case(
        "get",
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\n\r\n",
        [
            _req(b"GET", b"/index.html?x=1", b"example.com",
                 H((b"host", b"example.com"), (b"user-agent", b"wrk")), end_stream=True),
        ],
    ),
    Case(
        "names_lowercased_values_stripped",
        b"GET / HTTP/1.1\r\nHOST:example.com\r\nX-Multi:  a  b \t\r\nX-Empty:\r\n"
        b"X-Obs: caf\xc3\xa9\r\n\r\n",
        [
            _req(b"GET", b"/", b"example.com",
                 H((b"host", b"example.com"), (b"x-multi", b"a  b"), (b"x-empty", b""),
                   (b"x-obs", b"caf\xc3\xa9")), end_stream=True),
        ],
    ),
    Case(
        "post_content_length",
        b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        [
            _req(b"POST", b"/submit", b"a", H((b"host", b"a"), (b"content-length", b"11")),
                 content_length=11),
            Data(b"hello world", end_stream=True),
        ],
    ),
    Case(
        "post_empty_body",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        [
            _req(b"POST", b"/", b"a", H((b"host", b"a"), (b"content-length", b"0")),
                 content_length=0, end_stream=True),
        ],
    ),
    Case(
        "same_content_length_twice",
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc",
        [
            _req(b"PUT", b"/", b"a", H((b"host", b"a"), (b"content-length", b"3, 3"),
                 (b"content-length", b"3")), content_length=3),
            Data(b"abc", end_stream=True),
        ],
    ),
    Case(
        "chunked_extensions_trailers",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value\r\nhello\r\n6 ; a="q;\\"x" ; b\r\n world\r\nA\r\n0123456789\r\n'
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
        [
            _req(b"POST", b"/up", b"a", H((b"host", b"a"), (b"transfer-encoding", b"chunked"))),
            Data(b"hello"),
            Data(b" world"),
            Data(b"0123456789"),
            Trailers(H((b"x-checksum", b"abc"), (b"x-other", b"1"))),
        ],
    ),
    Case(
        "chunked_no_trailers",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        [
            _req(b"POST", b"/", b"a", H((b"host", b"a"), (b"transfer-encoding", b"Chunked"))),
            Data(b"abc"),
            Data(b"", end_stream=True),
        ],
    ),
    Case(
        "absolute_form",
        b"GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        [
            _req(b"GET", b"/p?q=1", b"example.com:8080", H((b"host", b"other")),
                 end_stream=True),
        ],
    ),
    Case(
        "absolute_form_without_path",
        b"GET HTTPS://Example.com?x HTTP/1.1\r\nHost: Example.com\r\n\r\n",
        [
            _req(b"GET", b"/?x", b"Example.com", H((b"host", b"Example.com")), scheme=b"https",
                 end_stream=True),
        ],
    ),
    Case(
        "options_asterisk",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        [_req(b"OPTIONS", b"*", b"a", H((b"host", b"a")), end_stream=True)],
    ),
    Case(
        "ipv6_host",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        [_req(b"GET", b"/", b"[::1]:8080", H((b"host", b"[::1]:8080")), end_stream=True)],
    ),
    Case(
        "http10_closes",
        b"GET / HTTP/1.0\r\n\r\n",
        [_req(b"GET", b"/", b"", H(), version=b"HTTP/1.0", keep_alive=False, end_stream=True)],
    ),
    Case(
        "http10_keep_alive",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        [
            _req(b"GET", b"/", b"", H((b"connection", b"Keep-Alive")), version=b"HTTP/1.0",
                 end_stream=True),
        ],
    ),
    Case(
        "connection_close",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n",
        [
            _req(b"GET", b"/", b"a", H((b"host", b"a"), (b"connection", b"foo, Close")),
                 keep_alive=False, end_stream=True),
        ],
    ),
    Case(
        "expect_continue",
        b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
        [
            _req(b"PUT", b"/f", b"a", H((b"host", b"a"), (b"expect", b"100-Continue"),
                 (b"content-length", b"3")), expect_continue=True, content_length=3),
            Data(b"abc", end_stream=True),
        ],
    ),
    Case(
        "upgrade_tunnel",
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x81\x05hello",
        [
            _req(b"GET", b"/chat", b"a", H((b"host", b"a"), (b"connection", b"Upgrade"),
                 (b"upgrade", b"websocket")), upgrade=b"websocket", keep_alive=False),
            Data(b"\x81\x05hello"),
            Data(b"", end_stream=True),
        ],
    ),
    Case(
        "connect_tunnel",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\r\n",
        [
            _req(b"CONNECT", b"example.com:443", b"example.com:443",
                 H((b"host", b"example.com:443")), keep_alive=False),
            Data(b"\x16\x03\x01\r\n"),
            Data(b"", end_stream=True),
        ],
    ),
    Case(
        "upgrade_needs_connection_token",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        [_req(b"GET", b"/", b"a", H((b"host", b"a"), (b"upgrade", b"websocket")),
              end_stream=True)],
    ),
    Case(
        "upgrade_ignored_with_body",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 2\r\n\r\nhi",
        [
            _req(b"POST", b"/", b"a", H((b"host", b"a"), (b"connection", b"upgrade"),
                 (b"upgrade", b"h2c"), (b"content-length", b"2")), content_length=2),
            Data(b"hi", end_stream=True),
        ],
    ),
    Case(
        "leading_empty_lines",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        [_req(b"GET", b"/", b"a", H((b"host", b"a")), end_stream=True)],
    ),
    Case(
        "pipelined",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2"
        b"\r\n\r\nhi\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /4 HTTP/1.1",
        [
            _req(b"GET", b"/1", b"a", H((b"host", b"a")), end_stream=True),
            _req(b"POST", b"/2", b"a", H((b"host", b"a"), (b"content-length", b"2")),
                 content_length=2),
            Data(b"hi", end_stream=True),
            _req(b"GET", b"/3", b"a", H((b"host", b"a"), (b"connection", b"close")),
                 keep_alive=False, end_stream=True),
        ],
    ),
]  # fmt: skip


@dataclass
class Bad:
    id: str
    data: bytes
    status: int
    limits: H1Limits = field(default_factory=H1Limits)


def _get(*lines: bytes, version: bytes = b"HTTP/1.1", head: bytes = b"GET / ") -> bytes:
    return head + version + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


SMALL = H1Limits(max_head=256, max_headers=4, max_body=10)

BAD_REQUESTS = [
    Bad("no_target", b"GET\r\n\r\n", 400),
    Bad("bad_method_char", _get(b"Host: a", head=b"G(T / "), 400),
    Bad("double_space", _get(b"Host: a", head=b"GET  / "), 400),
    Bad("lowercase_version", _get(b"Host: a", version=b"http/1.1"), 400),
    Bad("version_suffix", _get(b"Host: a", version=b"HTTP/1.1x"), 400),
    Bad("http2", _get(b"Host: a", version=b"HTTP/2.0"), 505),
    Bad("http12", _get(b"Host: a", version=b"HTTP/1.2"), 505),
    Bad("http09", _get(b"Host: a", version=b"HTTP/0.9"), 505),
    Bad("space_in_name", _get(b"Host: a", b"Bad Name: x"), 400),
    Bad("space_before_colon", _get(b"Host : a"), 400),
    Bad("no_colon", _get(b"Host: a", b"Nocolon"), 400),
    Bad("empty_name", _get(b"Host: a", b": x"), 400),
    Bad("obs_fold", _get(b"Host: a", b"X: 1", b" 2"), 400),
    Bad("bare_lf", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    Bad("bare_lf_in_headers", b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400),
    Bad("bare_cr", _get(b"Host: a", b"X: 1\r2"), 400),
    Bad("nul_in_value", _get(b"Host: a", b"X: a\x00b"), 400),
    Bad("ctl_in_value", _get(b"Host: a", b"X: a\x01b"), 400),
    Bad("del_in_value", _get(b"Host: a", b"X: a\x7fb"), 400),
    Bad("missing_host", _get(b"X: 1"), 400),
    Bad("two_hosts", _get(b"Host: a", b"Host: b"), 400),
    Bad("invalid_host", _get(b"Host: a/b"), 400),
    Bad("origin_form_required", _get(b"Host: a", head=b"GET foo "), 400),
    Bad("userinfo_in_absolute_form", _get(b"Host: a", head=b"GET http://u@a/ "), 400),
    Bad("connect_not_authority", _get(b"Host: a", head=b"CONNECT / "), 400),
    Bad("connect_with_body",
        _get(b"Host: a:1", b"Content-Length: 1", head=b"CONNECT a:1 ") + b"x", 400),
    Bad("content_length_letters", _get(b"Host: a", b"Content-Length: abc"), 400),
    Bad("content_length_sign", _get(b"Host: a", b"Content-Length: +5"), 400),
    Bad("content_length_negative", _get(b"Host: a", b"Content-Length: -1"), 400),
    Bad("content_length_hex", _get(b"Host: a", b"Content-Length: 0x5"), 400),
    Bad("content_length_empty", _get(b"Host: a", b"Content-Length:"), 400),
    Bad("content_lengths_differ", _get(b"Host: a", b"Content-Length: 1", b"Content-Length: 2"),
        400),
    Bad("content_length_list_differs", _get(b"Host: a", b"Content-Length: 1, 2"), 400),
    Bad("te_and_cl", _get(b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 5")
        + b"0\r\n\r\n", 400),
    Bad("te_not_chunked", _get(b"Host: a", b"Transfer-Encoding: gzip"), 400),
    Bad("te_chunked_not_final", _get(b"Host: a", b"Transfer-Encoding: chunked, gzip"), 400),
    Bad("te_chunked_twice", _get(b"Host: a", b"Transfer-Encoding: chunked, chunked"), 400),
    Bad("te_unknown_coding", _get(b"Host: a", b"Transfer-Encoding: gzip, chunked"), 501),
    Bad("te_http10", _get(b"Transfer-Encoding: chunked", version=b"HTTP/1.0") + b"0\r\n\r\n",
        400),
    Bad("chunk_size_not_hex", _get(b"Host: a", b"Transfer-Encoding: chunked") + b"zz\r\n",
        400),
    Bad("chunk_size_negative", _get(b"Host: a", b"Transfer-Encoding: chunked") + b"-1\r\n",
        400),
    Bad("chunk_size_too_long",
        _get(b"Host: a", b"Transfer-Encoding: chunked") + b"1" * 17 + b"\r\n", 400),
    Bad("chunk_size_trailing_space",
        _get(b"Host: a", b"Transfer-Encoding: chunked") + b"1 \r\nx\r\n0\r\n\r\n", 400),
    Bad("chunk_ext_bad",
        _get(b"Host: a", b"Transfer-Encoding: chunked") + b"1;=x\r\nx\r\n0\r\n\r\n", 400),
    Bad("chunk_missing_crlf",
        _get(b"Host: a", b"Transfer-Encoding: chunked") + b"1\r\nxy\r\n0\r\n\r\n", 400),
    Bad("chunk_bare_lf", _get(b"Host: a", b"Transfer-Encoding: chunked") + b"1\nx\n0\n\n",
        400),
    Bad("bad_trailer",
        _get(b"Host: a", b"Transfer-Encoding: chunked") + b"0\r\nBad Trailer: 1\r\n\r\n", 400),
    Bad("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    Bad("eof_in_head", b"GET / HTTP/1.1\r\nHost: a\r\n", 400),
    Bad("eof_in_body", _get(b"Host: a", b"Content-Length: 5") + b"abc", 400),
    Bad("eof_in_chunked_body", _get(b"Host: a", b"Transfer-Encoding: chunked") + b"5\r\nab",
        400),
    Bad("request_line_too_long", _get(b"Host: a", head=b"GET /" + b"a" * 9000 + b" "), 414),
    Bad("request_line_too_long_unfinished", b"GET /" + b"a" * 9000, 414),
    Bad("head_too_large", _get(b"Host: a", b"X: " + b"a" * 300), 431, SMALL),
    Bad("head_too_large_unfinished", b"GET / HTTP/1.1\r\nX: " + b"a" * 300, 431, SMALL),
    Bad("too_many_headers", _get(b"Host: a", b"A: 1", b"B: 2", b"C: 3", b"D: 4"), 431, SMALL),
    Bad("trailers_too_large", _get(b"Host: a", b"Transfer-Encoding: chunked")
        + b"0\r\nX: " + b"a" * 300, 431, SMALL),
    Bad("body_too_large", _get(b"Host: a", b"Content-Length: 11") + b"a" * 11, 413, SMALL),
    Bad("chunked_body_too_large",
        _get(b"Host: a", b"Transfer-Encoding: chunked")
        + b"6\r\naaaaaa\r\n5\r\naaaaa\r\n0\r\n\r\n", 413, SMALL),
    Bad("content_length_huge", _get(b"Host: a", b"Content-Length: " + b"9" * 19), 413),
]  # fmt: skip

H11_ACCEPTS = {
    # Deliberate differences: inputs that h11 0.16 accepts and we reject, and why.
    "http2": "h11 parses any HTTP/x.y version; we answer 505 beyond 1.0/1.1 (RFC 9110 15.6.6)",
    "http12": "same as http2",
    "http09": "same as http2",
    "bare_lf": "h11 accepts bare LF line endings; we require CRLF (RFC 9112 2.2 allows either)",
    "bare_lf_in_headers": "same as bare_lf",
    "ctl_in_value": "h11 tolerates control characters in values; RFC 9110 5.5 forbids them",
    "del_in_value": "same as ctl_in_value",
    "invalid_host": "h11 does not validate the Host value (RFC 9112 3.2 asks for 400)",
    "origin_form_required": "h11 accepts any visible target; we check the four target forms",
    "userinfo_in_absolute_form": "h11 does not parse targets; userinfo is deprecated for http",
    "connect_not_authority": "same as origin_form_required",
    "connect_with_body": "h11 allows a CONNECT body; its meaning is undefined (RFC 9110 9.3.6)",
    "te_and_cl": "h11 lets Transfer-Encoding win; we refuse both (request smuggling guard)",
    "te_http10": "h11 accepts Transfer-Encoding in HTTP/1.0; RFC 9112 6.1 says it is faulty",
    "chunk_size_trailing_space": "h11 tolerates whitespace after the chunk size",
    "chunk_ext_bad": "h11 does not validate chunk extensions",
    "obs_fold": "h11 unfolds obsolete line folding; RFC 9112 5.2 lets a server reject it",
    "head_too_large": "h11's default limit is 16 KiB; ours is configurable (SMALL here)",
    "too_many_headers": "h11 has no header-count limit",
    "request_line_too_long": "h11 only limits the whole head (16 KiB); we answer 414 at 8 KiB",
    "body_too_large": "h11 has no body limit",
    "chunked_body_too_large": "same as body_too_large",
}


# -- responses -------------------------------------------------------------------------------


def request(method: bytes = b"GET", upgrade: bytes | None = None) -> RequestHeaders:
    target = b"example.com:443" if method == b"CONNECT" else b"/"
    return RequestHeaders(method, target, b"example.com", H(), end_stream=True, upgrade=upgrade)


def _resp(status: int, headers: Headers, reason: bytes = b"", **kw: object) -> Event:
    return ResponseHeaders(status, headers, reason, **kw)  # type: ignore[arg-type]


RESPONSES = [
    Case(
        "ok_content_length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        [
            _resp(200, H((b"content-length", b"5"), (b"content-type", b"text/plain")), b"OK",
                  content_length=5),
            Data(b"hello", end_stream=True),
        ],
        [request()],
    ),
    Case(
        "chunked_trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n"
        b"5\r\npedia\r\n0\r\nGrpc-Status: 0\r\n\r\n",
        [
            _resp(200, H((b"transfer-encoding", b"chunked")), b"OK"),
            Data(b"wiki"),
            Data(b"pedia"),
            Trailers(H((b"grpc-status", b"0"))),
        ],
        [request()],
    ),
    Case(
        "no_content",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        [_resp(204, H(), b"No Content", end_stream=True)],
        [request(b"DELETE")],
    ),
    Case(
        "not_modified_ignores_length",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        [_resp(304, H((b"content-length", b"10")), b"Not Modified", content_length=10,
               end_stream=True)],
        [request()],
    ),
    Case(
        "head_has_no_body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        [_resp(200, H((b"content-length", b"1234")), b"OK", content_length=1234,
               end_stream=True)],
        [request(b"HEAD")],
    ),
    Case(
        "close_delimited",
        b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nsome body",
        [
            _resp(200, H((b"server", b"x")), b"OK", keep_alive=False),
            Data(b"some body"),
            Data(b"", end_stream=True),
        ],
        [request()],
    ),
    Case(
        "http10_closes",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        [
            _resp(200, H((b"content-length", b"2")), b"OK", version=b"HTTP/1.0",
                  keep_alive=False, content_length=2),
            Data(b"hi", end_stream=True),
        ],
        [request()],
    ),
    Case(
        "http10_keep_alive",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        [_resp(200, H((b"connection", b"keep-alive"), (b"content-length", b"0")), b"OK",
               version=b"HTTP/1.0", content_length=0, end_stream=True)],
        [request()],
    ),
    Case(
        "connection_close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        [_resp(200, H((b"connection", b"close"), (b"content-length", b"0")), b"OK",
               keep_alive=False, content_length=0, end_stream=True)],
        [request()],
    ),
    Case(
        "continue_then_final",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        [
            _resp(100, H(), b"Continue"),
            _resp(103, H((b"link", b"</a.css>")), b"Early Hints"),
            _resp(201, H((b"content-length", b"0")), b"Created", content_length=0,
                  end_stream=True),
        ],
        [request(b"POST")],
    ),
    Case(
        "no_reason_phrase",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        [_resp(200, H((b"content-length", b"0")), content_length=0, end_stream=True)],
        [request()],
    ),
    Case(
        "switching_protocols",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x81\x00",
        [
            _resp(101, H((b"connection", b"Upgrade"), (b"upgrade", b"websocket")),
                  b"Switching Protocols", keep_alive=False),
            Data(b"\x81\x00"),
            Data(b"", end_stream=True),
        ],
        [request(upgrade=b"websocket")],
    ),
    Case(
        "connect_established",
        b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03",
        [
            _resp(200, H(), b"Connection Established", keep_alive=False),
            Data(b"\x16\x03"),
            Data(b"", end_stream=True),
        ],
        [request(b"CONNECT")],
    ),
    Case(
        "connect_established_no_content",
        b"HTTP/1.1 204 No Content\r\n\r\n\x16\x03",
        [
            _resp(204, H(), b"No Content", keep_alive=False),
            Data(b"\x16\x03"),
            Data(b"", end_stream=True),
        ],
        [request(b"CONNECT")],
    ),
    Case(
        "connect_refused",
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
        [_resp(407, H((b"content-length", b"0")), b"Proxy Authentication Required",
               content_length=0, end_stream=True)],
        [request(b"CONNECT")],
    ),
    Case(
        "pipelined",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n",
        [
            _resp(200, H((b"content-length", b"1")), b"OK", content_length=1),
            Data(b"a", end_stream=True),
            _resp(404, H((b"transfer-encoding", b"chunked")), b"Not Found"),
            Data(b"b"),
            Data(b"", end_stream=True),
        ],
        [request(), request()],
    ),
]  # fmt: skip


def _ok(*lines: bytes, status_line: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return status_line + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


BAD_RESPONSES = [
    Bad("garbage", b"hello\r\n\r\n", 502),
    Bad("no_status", _ok(status_line=b"HTTP/1.1"), 502),
    Bad("status_two_digits", _ok(status_line=b"HTTP/1.1 20 OK"), 502),
    Bad("status_below_100", _ok(status_line=b"HTTP/1.1 099 Odd"), 502),
    Bad("http2", _ok(status_line=b"HTTP/2.0 200 OK"), 502),
    Bad("te_and_cl", _ok(b"Transfer-Encoding: chunked", b"Content-Length: 1") + b"0\r\n\r\n",
        502),
    Bad("te_gzip", _ok(b"Transfer-Encoding: gzip"), 502),
    Bad("te_http10", _ok(b"Transfer-Encoding: chunked", status_line=b"HTTP/1.0 200 OK"), 502),
    Bad("content_length_letters", _ok(b"Content-Length: x"), 502),
    Bad("content_lengths_differ", _ok(b"Content-Length: 1", b"Content-Length: 2"), 502),
    Bad("bad_chunk", _ok(b"Transfer-Encoding: chunked") + b"g\r\n", 502),
    Bad("obs_fold", _ok(b"X: 1", b"\t2"), 502),
    Bad("bare_lf", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", 502),
    Bad("switching_unasked", _ok(status_line=b"HTTP/1.1 101 Switching Protocols"), 502),
    Bad("eof_in_body", _ok(b"Content-Length: 5") + b"abc", 502),
    Bad("eof_before_response", b"", 502),
    Bad("eof_in_head", b"HTTP/1.1 200 OK\r\n", 502),
    Bad("head_too_large", _ok(b"X: " + b"a" * 300), 502, SMALL),
    Bad("body_too_large", _ok(b"Content-Length: 11"), 502, SMALL),
    Bad("unsolicited_second_response", _ok(b"Content-Length: 0") * 2, 502),
]  # fmt: skip


@dataclass
class Late:
    """Whole responses followed, in the same read, by bytes that cannot start another: the
    feed hands out the responses, the connection cannot be reused, and the next feed (or
    EOF) raises."""

    id: str
    data: bytes
    events: list[Event]
    requests: list[RequestHeaders]


LATE_RESPONSES = [
    Late(
        "excess_body_bytes",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello",
        [_resp(200, H((b"content-length", b"2")), b"OK", content_length=2),
         Data(b"he", end_stream=True)],
        [request()],
    ),
    Late(
        "garbage_after_no_content",
        b"HTTP/1.1 204 No Content\r\n\r\n\x16\x03\x01",
        [_resp(204, H(), b"No Content", end_stream=True)],
        [request(b"DELETE")],
    ),
    Late(
        "unsolicited_second_response",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 2,
        [_resp(200, H((b"content-length", b"0")), b"OK", content_length=0, end_stream=True)],
        [request()],
    ),
    Late(
        "pipelined_then_bad_chunk",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        [_resp(200, H((b"content-length", b"1")), b"OK", content_length=1),
         Data(b"a", end_stream=True)],
        [request(), request()],
    ),
]  # fmt: skip
