"""gRPC's length-prefixed messages and `grpc-timeout`, as the gRPC-over-HTTP/2 spec has them.

On the wire a message is a 1-byte compressed flag, a 4-byte big-endian length and the
payload. `MessageDecoder` cuts a stream of DATA bytes into payloads: it refuses a message
over its limit as soon as the prefix announces it (RESOURCE_EXHAUSTED), so it never holds
more than one prefix and one message of at most `max_message_size` bytes; a compressed
message (no compression is negotiated here) is refused with UNIMPLEMENTED, and a stream that
ends inside a message is INTERNAL, as gRPC servers answer them.
"""

from __future__ import annotations

import struct

from protocols.errors import ProtocolError
from protocols.grpc.status import StatusCode

PREFIX = struct.Struct(">BI")
PREFIX_SIZE = PREFIX.size
DEFAULT_MAX_MESSAGE = 4 << 20
"""gRPC's default receive limit (4 MiB)."""
TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
MAX_TIMEOUT_DIGITS = 8


class GrpcError(ProtocolError):
    """Input gRPC refuses; `code` is the status to end the call with."""

    def __init__(self, code: StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.messages: list[bytes] = []
        """Whole messages the same `feed` decoded before the refused one."""


def encode_message(payload: bytes) -> bytes:
    """One uncompressed message, prefix and payload."""
    return PREFIX.pack(0, len(payload)) + payload


class MessageDecoder:
    """DATA bytes of one direction of one call in, whole message payloads out."""

    __slots__ = ("_buffer", "_expected", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._expected: int | None = None
        """The payload length of the message being read, once its prefix is in."""

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every message that `data` completes; raises GrpcError on a refused message."""
        messages: list[bytes] = []
        try:
            self._decode(data, messages)
        except GrpcError as error:
            error.messages = messages
            raise
        return messages

    def _decode(self, data: bytes, messages: list[bytes]) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            expected = self._expected
            if expected is None:
                if len(buffer) < PREFIX_SIZE:
                    return
                flag, length = PREFIX.unpack_from(buffer)
                if flag not in (0, 1):
                    raise GrpcError(StatusCode.INTERNAL, f"invalid compressed flag {flag}")
                if flag == 1:
                    raise GrpcError(
                        StatusCode.UNIMPLEMENTED, "compressed messages are not supported"
                    )
                if length > self.max_message_size:
                    raise GrpcError(
                        StatusCode.RESOURCE_EXHAUSTED,
                        f"received message larger than max ({length} vs. {self.max_message_size})",
                    )
                del buffer[:PREFIX_SIZE]
                self._expected = expected = length
            if len(buffer) < expected:
                return
            messages.append(bytes(buffer[:expected]))
            del buffer[:expected]
            self._expected = None

    def end(self) -> None:
        """The sender finished: anything left over is a truncated message."""
        if self._buffer or self._expected is not None:
            raise GrpcError(StatusCode.INTERNAL, "the stream ended inside a message")


def parse_timeout(value: bytes) -> float:
    """`grpc-timeout` (1 to 8 digits and a unit: H M S m u n) in seconds."""
    if not 2 <= len(value) <= MAX_TIMEOUT_DIGITS + 1:
        raise GrpcError(StatusCode.INTERNAL, f"malformed grpc-timeout {value[:16]!r}")
    digits, unit = value[:-1], value[-1]
    if not digits.isdigit() or unit not in TIMEOUT_UNITS:
        raise GrpcError(StatusCode.INTERNAL, f"malformed grpc-timeout {value!r}")
    return int(digits) * TIMEOUT_UNITS[unit]


def format_timeout(seconds: float) -> bytes:
    """A `grpc-timeout` value for `seconds` (rounded up, in the finest unit that fits)."""
    seconds = max(seconds, 0.0)
    for unit, scale in ((b"n", 1e-9), (b"u", 1e-6), (b"m", 1e-3), (b"S", 1.0), (b"M", 60.0)):
        count = -int(-seconds // scale)  # ceil: a deadline is never made shorter
        if count < 10**MAX_TIMEOUT_DIGITS:
            return b"%d%s" % (count, unit)
    return b"%dH" % min(-int(-seconds // 3600), 10**MAX_TIMEOUT_DIGITS - 1)
