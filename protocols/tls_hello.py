"""Read SNI and ALPN from a TLS ClientHello without terminating TLS (sans-IO).

`parse_client_hello(prefix)` looks at the first bytes a client sent: it answers NEED_MORE
until the first handshake record is complete (up to MAX_HELLO bytes), then the server
name and ALPN protocols it offers; anything that is not a well-formed ClientHello raises
TlsHelloError. Only the first record is read: ClientHellos split over several records
(rare, very large hellos) are reported without SNI/ALPN rather than buffered further.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import ProtocolError

MAX_HELLO = 16384 + 5
HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
EXT_SERVER_NAME = 0x0000
EXT_ALPN = 0x0010


class TlsHelloError(ProtocolError):
    pass


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str | None
    alpn: tuple[str, ...]


NEED_MORE = None


def looks_like_tls(prefix: bytes) -> bool | None:
    """True for a TLS handshake record start, False if not, None if too short to tell."""
    if len(prefix) < 2:
        return None if not prefix or prefix[0] == HANDSHAKE else False
    return prefix[0] == HANDSHAKE and prefix[1] == 0x03


def parse_client_hello(prefix: bytes) -> ClientHello | None:
    """The ClientHello in `prefix`, or NEED_MORE (None) until its record is complete."""
    if len(prefix) < 5:
        return NEED_MORE
    if prefix[0] != HANDSHAKE or prefix[1] != 0x03:
        raise TlsHelloError("not a TLS handshake record")
    length = int.from_bytes(prefix[3:5], "big")
    if length < 4 or length > 16384:
        raise TlsHelloError(f"bad TLS record length {length}")
    if len(prefix) < 5 + length:
        return NEED_MORE
    record = prefix[5 : 5 + length]
    if record[0] != CLIENT_HELLO:
        raise TlsHelloError("the first handshake message is not a ClientHello")
    body_length = int.from_bytes(record[1:4], "big")
    body = record[4 : 4 + body_length]
    if body_length > len(body):  # continued in another record: report what we can
        return ClientHello(None, ())
    return _client_hello(body)


def _client_hello(body: bytes) -> ClientHello:
    reader = _Reader(body)
    reader.skip(2 + 32)  # legacy_version, random
    reader.skip(reader.int(1))  # session id
    reader.skip(reader.int(2))  # cipher suites
    reader.skip(reader.int(1))  # compression methods
    if reader.remaining == 0:
        return ClientHello(None, ())
    extensions = _Reader(reader.take(reader.int(2)))
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    while extensions.remaining:
        kind = extensions.int(2)
        data = extensions.take(extensions.int(2))
        if kind == EXT_SERVER_NAME:
            server_name = _server_name(data)
        elif kind == EXT_ALPN:
            alpn = _alpn(data)
    return ClientHello(server_name, alpn)


def _server_name(data: bytes) -> str | None:
    names = _Reader(data)
    entries = _Reader(names.take(names.int(2)))
    while entries.remaining:
        name_type = entries.int(1)
        name = entries.take(entries.int(2))
        if name_type == 0:
            try:
                return name.decode("ascii").lower()
            except UnicodeDecodeError:
                raise TlsHelloError("server name is not ASCII") from None
    return None


def _alpn(data: bytes) -> tuple[str, ...]:
    outer = _Reader(data)
    entries = _Reader(outer.take(outer.int(2)))
    protocols = []
    while entries.remaining:
        protocols.append(entries.take(entries.int(1)).decode("latin-1"))
    return tuple(protocols)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count > self.remaining:
            raise TlsHelloError("truncated ClientHello")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def skip(self, count: int) -> None:
        self.take(count)

    def int(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")
