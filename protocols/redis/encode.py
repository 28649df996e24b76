"""RESP encoders: commands for upstreams, replies the proxy makes up itself.

Headers of small sizes come from precomputed tables (`$3\\r\\n` is one list index, not a
`%d` format): commands are encoded once per forwarded request, on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CRLF = b"\r\n"
TABLE_SIZE = 1024
"""Lengths and counts below this have their header precomputed."""

BULK_HEADERS = [b"$%d\r\n" % n for n in range(TABLE_SIZE)]
ARRAY_HEADERS = [b"*%d\r\n" % n for n in range(TABLE_SIZE)]
NULL_BULK = b"$-1\r\n"
NULL = b"_\r\n"
_INTEGERS = [b":%d\r\n" % n for n in range(TABLE_SIZE)]

MapValue = str | bytes | int | None | Sequence["MapValue"] | Mapping[str, "MapValue"]
"""What encode_map accepts as a value: text and bytes become bulk strings."""


_COUNTS = [b"*%d" % n for n in range(TABLE_SIZE)]
_LENGTHS = [b"$%d" % n for n in range(TABLE_SIZE)]


def encode_command(args: Sequence[bytes]) -> bytes:
    """`*<n>` then each argument as a bulk string (how clients send commands)."""
    # Every line ends in CRLF, so one CRLF join of the headers and arguments (and an empty
    # last part) builds the whole command, with no per-argument concatenation.
    try:
        parts = [_COUNTS[len(args)]]
        append = parts.append
        for arg in args:
            append(_LENGTHS[len(arg)])
            append(arg)
    except IndexError:
        return _encode_large(args)
    append(b"")
    return CRLF.join(parts)


def _encode_large(args: Sequence[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, CRLF)
    return b"".join(parts)


def encode_array(spans: Sequence[bytes]) -> bytes:
    """An array whose elements are already-encoded replies (e.g. spans from shards)."""
    count = len(spans)
    header = ARRAY_HEADERS[count] if count < TABLE_SIZE else b"*%d\r\n" % count
    return header + b"".join(spans)


def encode_integer(n: int) -> bytes:
    return _INTEGERS[n] if 0 <= n < TABLE_SIZE else b":%d\r\n" % n


def encode_bulk(data: bytes | None) -> bytes:
    """A bulk string; None is the RESP2 null bulk `$-1` (which RESP3 clients accept too)."""
    if data is None:
        return NULL_BULK
    size = len(data)
    return (BULK_HEADERS[size] if size < TABLE_SIZE else b"$%d\r\n" % size) + data + CRLF


def encode_simple(text: str) -> bytes:
    """A simple string such as `+OK`; CR and LF (which would end it early) become spaces."""
    return b"+" + _line(text) + CRLF


def error_span(message: str) -> bytes:
    """An error reply, the way Redis's addReplyError writes one.

    The message gets the generic `ERR ` code unless it starts with `-` and its own code
    (`error_span("-WRONGTYPE ...")`); CR and LF become spaces so the reply stays one line.
    """
    line = _line(message)
    return (line if line[:1] == b"-" else b"-ERR " + line) + CRLF


def encode_map(fields: Mapping[str, MapValue], resp3: bool = True) -> bytes:
    """A map reply (HELLO): RESP3 `%<n>`, or for RESP2 the flattened `*<2n>` array."""
    parts: list[bytes] = []
    _value(fields, resp3, parts)
    return b"".join(parts)


def _value(value: MapValue, resp3: bool, parts: list[bytes]) -> None:
    if isinstance(value, str):
        parts.append(encode_bulk(value.encode()))
    elif isinstance(value, bytes):
        parts.append(encode_bulk(value))
    elif isinstance(value, bool):
        parts.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else encode_integer(value))
    elif isinstance(value, int):
        parts.append(encode_integer(value))
    elif value is None:
        parts.append(NULL if resp3 else NULL_BULK)
    elif isinstance(value, Mapping):
        parts.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) * (1 if resp3 else 2)))
        for key, item in value.items():
            parts.append(encode_bulk(key.encode()))
            _value(item, resp3, parts)
    else:
        parts.append(b"*%d\r\n" % len(value))
        for item in value:
            _value(item, resp3, parts)


def _line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode()
