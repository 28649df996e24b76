"""HTTP/2 header blocks <-> our vocabulary: what arrives is checked (RFC 9113 §8.2, §8.3), what
leaves is made fit for HTTP/2.

A block that breaks a rule is *malformed*: `Malformed` is raised, and the codec resets only
that stream (§8.1.1).
"""

from __future__ import annotations

import re

from protocols.http.errors import HttpError
from protocols.http.h1_parse import content_length
from protocols.http.headers import Headers

HeaderList = list[tuple[bytes, bytes]]

# Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is kept as `trailers`.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority", b":protocol"))
_RESPONSE_PSEUDO = frozenset((b":status",))
_BLANKS = b" \t"


class Malformed(HttpError):
    """A malformed message: its stream's error, not the connection's."""


def split_block(raw: HeaderList, allowed: frozenset[bytes]) -> tuple[dict[bytes, bytes], Headers]:
    """Pseudo-headers by name and the regular headers, every rule checked."""
    pseudo: dict[bytes, bytes] = {}
    regular: HeaderList = []
    cookies: list[bytes] = []
    for name, value in raw:
        if name[:1] == b":":
            if regular or cookies or name not in allowed or name in pseudo:
                raise Malformed(f"pseudo-header {name[:32]!r} misplaced or unknown")
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            _check_regular(name, value)
            regular.append((name, value))
        if _BAD_VALUE.search(value) or (value and (value[0] in _BLANKS or value[-1] in _BLANKS)):
            raise Malformed(f"a bad value for {name[:32]!r}")
    if cookies:  # one field for HTTP/1.1, as RFC 9113 §8.2.3 asks (h2 puts it last too)
        regular.append((b"cookie", b"; ".join(cookies)))
    return pseudo, Headers(regular)


def _check_regular(name: bytes, value: bytes) -> None:
    if _FIELD_NAME.fullmatch(name) is None:
        raise Malformed(f"a bad field name {name[:32]!r}")
    if name in HOP_BY_HOP or (name == b"te" and value.lower() != b"trailers"):
        raise Malformed(f"connection-specific field {name!r}")


def request_block(raw: HeaderList) -> tuple[dict[bytes, bytes], Headers]:
    pseudo, headers = split_block(raw, _REQUEST_PSEUDO)
    method = pseudo.get(b":method")
    if method is None:
        raise Malformed("a request without :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo or b":authority" not in pseudo:
            raise Malformed("CONNECT takes :authority only")
    elif b":scheme" not in pseudo or not pseudo.get(b":path"):
        raise Malformed("a request without :scheme or :path")
    host = headers.get(b"host")
    authority = pseudo.get(b":authority")
    if authority is None and host is None:
        raise Malformed("a request without :authority or host")
    if authority is not None and host is not None and host != authority:
        raise Malformed(":authority and host differ")
    return pseudo, headers


def response_block(raw: HeaderList) -> tuple[bytes, Headers]:
    pseudo, headers = split_block(raw, _RESPONSE_PSEUDO)
    status = pseudo.get(b":status", b"")
    if len(status) != 3 or not status.isdigit() or status[0] == 0x30:
        raise Malformed(f"malformed :status {status[:8]!r}")
    return status, headers


def trailer_block(raw: HeaderList) -> Headers:
    return split_block(raw, frozenset())[1]


def declared_length(headers: Headers) -> int | None:
    """The declared body length, by HTTP/1.1's rules, so that what is forwarded on either
    version is a length mecha can send: Malformed for differing values, a value that is no
    number, or one too long for any body (20 digits)."""
    values = headers.get_all(b"content-length")
    if not values:
        return None
    try:
        return content_length(values)
    except HttpError as exc:
        raise Malformed(str(exc)) from exc


# -- outbound ------------------------------------------------------------------------------


def regular(headers: Headers, request: bool) -> HeaderList:
    """Headers fit for an HTTP/2 block: no connection-specific fields, no pseudo-headers.

    `host` is dropped from requests (it went into :authority). Fields named by
    `connection` go too, as hop-by-hop. A name or value HTTP/2 cannot carry raises
    HttpError(500) before the encoder sees it, so the HPACK context is never touched by a
    bad block. Values lose surrounding blanks (RFC 9113 §8.2.1).
    """
    named: set[bytes] = set()
    for value in headers.get_all(b"connection"):
        named.update(token.strip().lower() for token in value.split(b","))
    block: HeaderList = []
    for name, value in headers:
        name = name.lower()
        if name in HOP_BY_HOP or name in named or name[:1] == b":":
            continue
        if name == b"te":
            if b"trailers" in (token.strip().lower() for token in value.split(b",")):
                block.append((b"te", b"trailers"))
            continue
        if name == b"host" and request:
            continue
        if _FIELD_NAME.fullmatch(name) is None or _BAD_VALUE.search(value) is not None:
            raise HttpError(f"header {name!r} cannot be sent over HTTP/2", 500)
        block.append((name, value.strip()))  # the encoder keeps credentials out of tables
    return block


def outbound_request(
    method: bytes, scheme: bytes, authority: bytes, path: bytes, headers: Headers
) -> HeaderList:
    authority = authority or headers.get(b"host") or b""
    if method == b"CONNECT":
        pseudo = [(b":method", b"CONNECT"), (b":authority", authority or path)]
    else:
        if not authority:
            raise HttpError("an HTTP/2 request needs an authority (Host)", 400)
        pseudo = [
            (b":method", method),
            (b":scheme", scheme or b"http"),
            (b":authority", authority),
            (b":path", path or b"/"),
        ]
    return pseudo + regular(headers, True)


class CheckedBlocks:
    """The HPACK decoder hands out the same list object for the same block while its table
    is unchanged, so a repeated header list is checked once: the verdict is kept by the
    list's identity (the list held with it, so the identity stays its own). Malformed lists
    are not kept; they raise each time."""

    __slots__ = ("_requests", "_responses")

    LIMIT = 64

    def __init__(self) -> None:
        self._requests: dict[
            int, tuple[HeaderList, dict[bytes, bytes], HeaderList, int | None]
        ] = {}
        self._responses: dict[int, tuple[HeaderList, bytes, HeaderList, int | None]] = {}

    def request(self, fields: HeaderList) -> tuple[dict[bytes, bytes], Headers, int | None]:
        hit = self._requests.get(id(fields))
        if hit is not None and hit[0] is fields:
            return hit[1], Headers(hit[2]), hit[3]
        pseudo, headers = request_block(fields)
        length = declared_length(headers)
        if len(self._requests) >= self.LIMIT:
            self._requests.clear()
        self._requests[id(fields)] = (fields, pseudo, list(headers), length)
        return pseudo, headers, length

    def response(self, fields: HeaderList) -> tuple[bytes, Headers, int | None]:
        hit = self._responses.get(id(fields))
        if hit is not None and hit[0] is fields:
            return hit[1], Headers(hit[2]), hit[3]
        status, headers = response_block(fields)
        length = declared_length(headers)
        if len(self._responses) >= self.LIMIT:
            self._responses.clear()
        self._responses[id(fields)] = (fields, status, list(headers), length)
        return status, headers, length
