"""Headers: the raw HTTP/1 block and the index of framing / hop-by-hop fields stay in step
with the items through every change, and hop-by-hop stripping matches the plain rule."""

from __future__ import annotations

import pytest

from filters.network.http.prepare import HOP_BY_HOP, UPGRADE_HEADERS, strip_hop_by_hop
from protocols.http.events import RequestHeaders
from protocols.http.h1 import H1ServerCodec
from protocols.http.headers import INDEXED, Headers

Items = list[tuple[bytes, bytes]]


def parsed(*lines: bytes) -> Headers:
    """Headers as the HTTP/1 parser makes them (items, raw block and index)."""
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(line + b"\r\n" for line in lines)
    (request,) = H1ServerCodec().feed(head + b"\r\n")
    assert isinstance(request, RequestHeaders)
    return request.headers


def reparsed(headers: Headers) -> Items:
    """What a peer reads from the serialised block."""
    block = headers.h1_block()
    return [(n.strip().lower(), v.strip()) for n, _, v in
            (line.partition(b":") for line in block.split(b"\r\n")[:-1])]  # fmt: skip


def reference_index(items: Items) -> dict[bytes, list[bytes]]:
    index: dict[bytes, list[bytes]] = {}
    for name, value in items:
        if name in INDEXED:
            index.setdefault(name, []).append(value)
    return index


def check(headers: Headers) -> None:
    items = headers.items
    assert dict(headers.indexed()) == reference_index(items)
    assert reparsed(headers) == items


def test_the_parser_hands_over_items_block_and_index() -> None:
    headers = parsed(b"X-A: 1", b"Connection:  keep-alive ", b"content-LENGTH: 0")
    assert headers.items == [
        (b"host", b"a"), (b"x-a", b"1"), (b"connection", b"keep-alive"), (b"content-length", b"0")
    ]  # fmt: skip
    assert headers.indexed() == {
        b"host": [b"a"], b"connection": [b"keep-alive"], b"content-length": [b"0"]
    }  # fmt: skip
    assert (
        headers.h1_block()
        == b"Host: a\r\nX-A: 1\r\nConnection:  keep-alive \r\ncontent-LENGTH: 0\r\n"
    )


@pytest.mark.parametrize("raw", [True, False], ids=["parsed", "from-items"])
def test_changes_keep_block_and_index_in_step(raw: bool) -> None:
    lines = (b"X-A: 1", b"Connection: close", b"x-a: 2", b"TE: trailers", b"connection: x-a")
    headers = parsed(*lines) if raw else Headers(parsed(*lines).items)
    check(headers)
    assert headers.get(b"connection") == b"close"
    assert headers.get_all(b"x-a") == [b"1", b"2"]
    assert headers.remove(b"connection")
    assert b"connection" not in headers and headers.get(b"connection") is None
    check(headers)
    assert not headers.remove(b"connection")
    assert not headers.remove(b"upgrade")
    assert headers.remove(b"x-a")
    check(headers)
    headers.add(b"content-length", b"5")
    headers.extend([(b"x-b", b"3"), (b"transfer-encoding", b"chunked")])
    assert headers.indexed()[b"content-length"] == [b"5"]
    check(headers)
    headers.set(b"te", b"gzip")
    assert headers.get_all(b"te") == [b"gzip"]
    check(headers)
    assert headers.items == [
        (b"host", b"a"), (b"content-length", b"5"), (b"x-b", b"3"),
        (b"transfer-encoding", b"chunked"), (b"te", b"gzip"),
    ]  # fmt: skip


def test_an_index_handed_out_is_not_changed_by_later_removals() -> None:
    headers = parsed(b"Connection: close")
    index = headers.indexed()
    headers.remove(b"connection")
    assert index[b"connection"] == [b"close"] and b"connection" not in headers.indexed()


def reference_strip(items: Items, keep_upgrade: bool) -> Items:
    """The rule, one field at a time (what strip_hop_by_hop must match)."""
    doomed: set[bytes] = set()
    for name, value in items:
        if name not in HOP_BY_HOP or (keep_upgrade and name in UPGRADE_HEADERS):
            continue
        if name == b"te" and value.strip().lower() == b"trailers":
            continue
        doomed.add(name)
        if name == b"connection" and not keep_upgrade:
            doomed.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return [(name, value) for name, value in items if name not in doomed]


STRIP_CASES = [
    [],
    [b"Connection: keep-alive"],
    [b"Connection: close, X-Trace", b"x-trace: 1", b"X-Other: 2"],
    [b"Keep-Alive: timeout=5", b"Proxy-Connection: keep-alive", b"Trailer: x"],
    [b"TE: trailers", b"Content-Type: application/grpc"],
    [b"TE: trailers", b"Connection: te"],
    [b"TE: gzip", b"te: trailers"],
    [b"Upgrade: websocket", b"Connection: Upgrade, keep-alive", b"Keep-Alive: 1"],
    [b"Transfer-Encoding: chunked", b"Connection: ,  , x-gone", b"X-Gone: 1", b"X-Kept: 2"],
    [b"Connection: x-a", b"Connection: x-b", b"x-a: 1", b"x-b: 2", b"x-c: 3"],
]


@pytest.mark.parametrize("lines", STRIP_CASES)
@pytest.mark.parametrize("keep_upgrade", [False, True])
@pytest.mark.parametrize("raw", [True, False], ids=["parsed", "from-items"])
def test_strip_hop_by_hop_follows_the_rule(
    lines: list[bytes], keep_upgrade: bool, raw: bool
) -> None:
    headers = parsed(*lines) if raw else Headers(parsed(*lines).items)
    before = headers.items
    removed = strip_hop_by_hop(headers, keep_upgrade)
    assert headers.items == reference_strip(before, keep_upgrade)
    assert removed == (headers.items != before)
    check(headers)
