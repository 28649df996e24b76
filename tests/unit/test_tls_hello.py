"""The ClientHello reader (SNI and ALPN without terminating TLS), on real hellos from OpenSSL.

Real hellos: Python's ssl module writes them into a memory BIO, with and without a server
name and ALPN, for TLS 1.2 and 1.3. Every prefix of one is NEED_MORE until the record is
complete. Fuzzing, one invariant: any input (arbitrary bytes, or a real hello with bytes
changed, cut or inserted) gives a ClientHello, NEED_MORE or TlsHelloError, nothing else.
Set TLS_HELLO_FUZZ_EXAMPLES=20000 for a deep run.
"""

from __future__ import annotations

import contextlib
import os
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.tls_hello import (
    MAX_HELLO,
    NEED_MORE,
    ClientHello,
    TlsHelloError,
    looks_like_tls,
    parse_client_hello,
)

EXAMPLES = int(os.environ.get("TLS_HELLO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def client_hello(
    server_name: str | None = None, alpn: tuple[str, ...] = (), maximum: str = "1.3"
) -> bytes:
    """What an OpenSSL client sends first, as bytes."""
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
    context.maximum_version = getattr(ssl.TLSVersion, f"TLSv1_{maximum[-1]}")
    if alpn:
        context.set_alpn_protocols(list(alpn))
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for a ServerHello
        tls.do_handshake()
    return outgoing.read()


HELLO = client_hello("api.example.com", ("h2", "http/1.1"))


@pytest.mark.parametrize(
    ("server_name", "alpn", "maximum"),
    [
        ("api.example.com", ("h2", "http/1.1"), "1.3"),
        ("a.test", ("http/1.1",), "1.2"),
        (None, ("h2",), "1.3"),
        ("only-sni.test", (), "1.3"),
        (None, (), "1.2"),
    ],
)
def test_real_hellos(server_name: str | None, alpn: tuple[str, ...], maximum: str) -> None:
    hello = client_hello(server_name, alpn, maximum)
    assert looks_like_tls(hello)
    assert parse_client_hello(hello) == ClientHello(server_name, alpn)


def test_every_prefix_needs_more_and_trailing_bytes_are_ignored() -> None:
    for end in range(len(HELLO)):
        assert parse_client_hello(HELLO[:end]) is NEED_MORE, end
    expected = ClientHello("api.example.com", ("h2", "http/1.1"))
    assert parse_client_hello(HELLO + b"\x17\x03\x03 more records") == expected


@pytest.mark.parametrize(
    ("prefix", "verdict"),
    [(b"", None), (b"\x16", None), (b"\x16\x03", True), (b"\x16\x03\x01\x02", True),
     (b"GET", False), (b"\x16\x02", False), (b"*1\r\n", False), (b"\x10", False)],
)  # fmt: skip
def test_looks_like_tls(prefix: bytes, verdict: bool | None) -> None:
    assert looks_like_tls(prefix) is verdict


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "not a TLS handshake record"),
        (b"\x16\x03\x01\x00\x02\x01\x00", "bad TLS record length 2"),
        (b"\x16\x03\x01\x40\x01", "bad TLS record length 16385"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "the first handshake message is not"),
    ],
)
def test_what_is_not_a_client_hello(data: bytes, reason: str) -> None:
    with pytest.raises(TlsHelloError, match=reason):
        parse_client_hello(data)


def test_a_hello_continued_in_another_record_is_reported_without_names() -> None:
    record = HELLO[5:]
    declared = int.from_bytes(record[1:4], "big")
    longer = record[:1] + (declared + 100).to_bytes(3, "big") + record[4:]
    first = HELLO[:3] + len(longer).to_bytes(2, "big") + longer
    assert parse_client_hello(first) == ClientHello(None, ())


def check(data: bytes) -> None:
    try:
        result = parse_client_hello(data)
    except TlsHelloError:
        return
    assert result is NEED_MORE or isinstance(result, ClientHello)
    if isinstance(result, ClientHello):
        assert looks_like_tls(data)
        assert result.server_name is None or isinstance(result.server_name, str)
        assert all(isinstance(name, str) for name in result.alpn)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    check(data)
    check(b"\x16\x03\x01" + data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(HELLO) - 1), st.binary(max_size=4)), max_size=6),
       st.integers(0, len(HELLO)))  # fmt: skip
def test_fuzz_mutated_hellos(edits: list[tuple[int, bytes]], cut: int) -> None:
    data = bytearray(HELLO)
    for position, replacement in edits:
        data[position : position + len(replacement)] = replacement
    check(bytes(data))
    check(bytes(data[:cut]))
    assert len(data) <= MAX_HELLO
