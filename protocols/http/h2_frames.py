"""HTTP/2 frames (RFC 9113 §4, §6), sans-IO: the frame header read and checked before its
payload is buffered, and the frames mecha writes.

`FrameReader.feed` returns whole frames as (type, flags, stream id, payload) tuples; a
header declaring more than our SETTINGS_MAX_FRAME_SIZE raises `H2ConnectionError`
(FRAME_SIZE_ERROR) at once, so a 16 MB declaration costs 9 bytes, not 16 MB of buffer.
"""

from __future__ import annotations

from enum import IntEnum

from protocols.http.errors import HttpError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9

END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 1, 2, 3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 4, 5, 6
ENABLE_CONNECT_PROTOCOL = 8

DEFAULT_WINDOW = 65535
MAX_WINDOW = (1 << 31) - 1
MIN_FRAME_SIZE = 16384
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1


class ErrorCode(IntEnum):
    """RFC 9113 §7 (the same values as h2.errors.ErrorCodes)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class H2ConnectionError(HttpError):
    """A connection error (§5.4.1): GOAWAY with `code`, then close."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(f"HTTP/2 {code.name}: {reason}")
        self.code = code


_STREAM_RULE = (True, True, True, True, False, True, False, False, None, True)
"""Per frame type: on a stream (True), on stream 0 (False), either (None); checked with the
header, before the length (as hyperframe does)."""

Frame = tuple[int, int, int, bytes]
"""(type, flags, stream id, payload)."""


class FrameReader:
    """Bytes in, whole frames out; the client preface first when `expect_preface`.

    A bad frame header stops the reading: `feed` returns the frames before it and sets
    `error`, which the caller raises once it has handled them (errors come in wire order).
    """

    __slots__ = ("_buffer", "_preface", "error", "max_frame_size")

    def __init__(self, expect_preface: bool, max_frame_size: int = MIN_FRAME_SIZE) -> None:
        self.error: H2ConnectionError | None = None
        """A bad frame header: the frames before it are returned first, then this is raised."""
        self._buffer = b""
        self._preface = expect_preface
        self.max_frame_size = max_frame_size

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer + data if self._buffer else data
        if self._preface:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(buffer):
                    raise H2ConnectionError("not the HTTP/2 connection preface")
                self._buffer = buffer
                return []
            if not buffer.startswith(PREFACE):
                raise H2ConnectionError("not the HTTP/2 connection preface")
            buffer = buffer[len(PREFACE) :]
            self._preface = False
        frames: list[Frame] = []
        pos, end, limit = 0, len(buffer), self.max_frame_size
        while end - pos >= 9:
            length = int.from_bytes(buffer[pos : pos + 3], "big")
            kind = buffer[pos + 3]
            sid = int.from_bytes(buffer[pos + 5 : pos + 9], "big") & MAX_WINDOW
            if kind < 10 and _STREAM_RULE[kind] not in (None, sid != 0):
                self.error = H2ConnectionError(f"a frame of type {kind} on the wrong stream")
                break
            if length > limit:
                self.error = H2ConnectionError(
                    f"a frame of {length} bytes, above {limit}", ErrorCode.FRAME_SIZE_ERROR
                )
                break
            stop = pos + 9 + length
            if stop > end:
                break
            frames.append((kind, buffer[pos + 4], sid, buffer[pos + 9 : stop]))
            pos = stop
        self._buffer = buffer[pos:] if pos < end else b""
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def partial_kind(self) -> int | None:
        """The type of the frame partly received, once its header says it."""
        return self._buffer[3] if len(self._buffer) > 3 and not self._preface else None


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def settings_frame(values: dict[int, int]) -> bytes:
    payload = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items())
    return frame(SETTINGS, 0, 0, payload)


def window_update(sid: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, increment.to_bytes(4, "big"))


def rst_stream(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, code.to_bytes(4, "big"))


def goaway(last_sid: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, last_sid.to_bytes(4, "big") + code.to_bytes(4, "big") + debug)


def header_frames(sid: int, block: bytes, end_stream: bool, max_size: int) -> bytes:
    """HEADERS, then CONTINUATION frames if the block is larger than a frame."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_size:
        return frame(HEADERS, flags | END_HEADERS, sid, block)
    pieces = [block[i : i + max_size] for i in range(0, len(block), max_size)]
    out = [frame(HEADERS, flags, sid, pieces[0])]
    out.extend(frame(CONTINUATION, 0, sid, piece) for piece in pieces[1:-1])
    out.append(frame(CONTINUATION, END_HEADERS, sid, pieces[-1]))
    return b"".join(out)


def unpad(flags: int, payload: bytes) -> tuple[bytes, int]:
    """The payload without its padding (§6.1), and how many bytes the padding took."""
    if not flags & PADDED:
        return payload, 0
    if not payload:
        raise H2ConnectionError("no pad length", ErrorCode.FRAME_SIZE_ERROR)
    if payload[0] >= len(payload):
        raise H2ConnectionError("padding longer than the frame")
    pad = payload[0]
    return payload[1 : len(payload) - pad], pad + 1


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise H2ConnectionError(
            "SETTINGS of a length not a multiple of 6", ErrorCode.FRAME_SIZE_ERROR
        )
    return [
        (int.from_bytes(payload[i : i + 2], "big"), int.from_bytes(payload[i + 2 : i + 6], "big"))
        for i in range(0, len(payload), 6)
    ]
