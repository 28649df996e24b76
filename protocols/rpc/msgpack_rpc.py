"""msgpack-RPC (github.com/msgpack-rpc/msgpack-rpc, spec.md) as an RpcCodec.

Messages, each one msgpack array on a plain stream (no other framing):
    request       [0, msgid, method, params]
    response      [1, msgid, error, result]
    notification  [2, method, params]          (ONEWAY: no msgid, no response)
msgid is a uint32, method a str or a bin holding UTF-8 (the spec says str; Neovim and its
clients, pynvim among them, send bin, and servers take either: the frame is forwarded as it
came, the name is only read to route on), params an array; error and result are anything.
Any valid msgpack encoding of these is accepted (an array16 header, a type or msgid in a
wider or signed integer format), as msgpack itself accepts it.

Framing: msgpack's streaming C Unpacker finds where each message ends with `skip()`
(no object is built, the body is never decoded) and `tell()` gives its end offset, so
`Frame.raw` is the exact slice of the input. Only the envelope is read, in Python, from
the complete message: array header, type, msgid, method, and the first byte of params.
The proxy rewrites msgids by splicing: the id is re-encoded, everything else is copied.

What is bounded, for a decoder made with max_message_size = M:
- a message longer than M bytes is refused once M of its bytes have arrived at the
  latest; the decoder holds at most M bytes of an incomplete message (`buffered`), in its
  own tail buffer and in the Unpacker's (`max_buffer_size` = M; input is fed to it in
  slices that keep what it holds within M, so many small messages in one large read are
  fine);
- earlier, as soon as a header arrives: while a message is incomplete its headers are
  read in order (the first WALK_BUDGET of them per message) and the message is refused
  when what they declare cannot fit in M: a str/bin/ext whose declared length runs past
  M, or array/map counts that promise more elements than the bytes left (each element
  takes at least one byte). So `[0, 1, "m", [<bin32 of 1 GiB>]]` is refused when its
  first 11 bytes have arrived, not after M. Past the budget (deeply nested or very long
  incomplete messages) only the first bound applies;
- nesting deeper than msgpack's own limit (1024) is refused as malformed;
- after a message larger than RENEW_ABOVE, or a read that large, the Unpacker (whose
  buffer never shrinks) is replaced once the stream is between messages.
"""

from __future__ import annotations

from struct import Struct

import msgpack
from msgpack.exceptions import OutOfData

from protocols.rpc.api import Frame, FrameKind, RpcError

MAX_ID = 0xFFFF_FFFF
"""msgids are uint32."""
WALK_BUDGET = 64
"""Headers of one incomplete message checked against max_message_size (see above)."""
RENEW_ABOVE = 64 * 1024
"""Bytes one Unpacker may have buffered before it is replaced between messages."""

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
_REQUEST, _RESPONSE, _ONEWAY = FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ONEWAY
"""Plain module globals: looking a member up on the Enum class costs more, per message."""
_SIZES = (4, 4, 3)
_NAMES = ("request", "response", "notification")

# -- msgpack formats, by first byte ---------------------------------------------------------

_INT_WIDTHS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
"""uint8..uint64, int8..int64: bytes after the format byte (fixints are read directly)."""
_STR_WIDTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_ARRAY_WIDTHS = {0xDC: 2, 0xDD: 4}
_BIN_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_NAME_WIDTHS = {**_STR_WIDTHS, **_BIN_WIDTHS}
"""A method name is a str or a bin: Neovim and its clients (pynvim) send names as bin."""


def _formats() -> tuple[list[tuple[int, int, int] | None], list[tuple[int, int, int] | None]]:
    """Per first byte: FIXED (header bytes, payload bytes, elements) when the byte alone
    says, else VAR (length bytes, header bytes after them, elements per count; 0: the
    count is a payload length). 0xc1 (never used) is in neither."""
    fixed: list[tuple[int, int, int] | None] = [None] * 256
    var: list[tuple[int, int, int] | None] = [None] * 256
    for b in range(256):
        if b < 0x80 or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            fixed[b] = (1, 0, 0)  # fixints, nil, false, true
        elif b < 0x90:
            fixed[b] = (1, 0, 2 * (b & 0x0F))  # fixmap
        elif b < 0xA0:
            fixed[b] = (1, 0, b & 0x0F)  # fixarray
        elif b < 0xC0:
            fixed[b] = (1, b & 0x1F, 0)  # fixstr
    for b, size in ((0xCA, 5), (0xCB, 9), (0xD4, 3), (0xD5, 4), (0xD6, 6), (0xD7, 10)):
        fixed[b] = (size, 0, 0)  # floats, fixext 1/2/4/8
    fixed[0xD8] = (18, 0, 0)  # fixext16
    for b, width in _INT_WIDTHS.items():
        fixed[b] = (1 + width, 0, 0)
    for b, width in (*_BIN_WIDTHS.items(), *_STR_WIDTHS.items()):
        var[b] = (width, 0, 0)  # bin, str
    for b, width in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        var[b] = (width, 1, 0)  # ext: a type byte follows the length
    for b, width in _ARRAY_WIDTHS.items():
        var[b] = (width, 0, 1)
    for b, width in ((0xDE, 2), (0xDF, 4)):
        var[b] = (width, 0, 2)  # map: two elements per entry
    return fixed, var


_FIXED, _VAR = _formats()

_UINT8, _UINT16, _UINT32 = Struct(">BB"), Struct(">BH"), Struct(">BI")
_FIXINTS = [bytes((n,)) for n in range(0x80)]


def encode_uint32(value: int) -> bytes:
    """The shortest msgpack encoding of 0 <= value <= MAX_ID (1, 2, 3 or 5 bytes)."""
    if value < 0x80:
        return _FIXINTS[value]
    if value < 0x100:
        return _UINT8.pack(0xCC, value)
    if value < 0x1_0000:
        return _UINT16.pack(0xCD, value)
    return _UINT32.pack(0xCE, value)


# -- the envelope of a complete message ------------------------------------------------------


def _int_at(raw: bytes, pos: int, what: str) -> tuple[int, int]:
    """(integer at raw[pos], offset after it); RpcError when it is not an integer."""
    first = raw[pos]
    if first < 0x80:
        return first, pos + 1
    if first >= 0xE0:
        return first - 0x100, pos + 1
    width = _INT_WIDTHS.get(first)
    if width is None:
        raise RpcError(f"{what} is not an integer")
    end = pos + 1 + width
    return int.from_bytes(raw[pos + 1 : end], signed=first >= 0xD0), end


def _array_at(raw: bytes, pos: int) -> tuple[int, int] | None:
    """(element count, offset after the header) of an array header at raw[pos], or None."""
    first = raw[pos]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, pos + 1
    width = _ARRAY_WIDTHS.get(first)
    if width is None:
        return None
    end = pos + 1 + width
    return int.from_bytes(raw[pos + 1 : end]), end


def _routing(raw: bytes, pos: int) -> str:
    """The method at raw[pos], after checking that params (which follows it) is an array."""
    first = raw[pos]
    if 0xA0 <= first <= 0xBF:  # fixstr, the usual
        start, stop = pos + 1, pos + 1 + (first & 0x1F)
    elif (width := _NAME_WIDTHS.get(first)) is not None:
        start = pos + 1 + width
        stop = start + int.from_bytes(raw[pos + 1 : start])
    else:
        raise RpcError("method is not a string")
    params = raw[stop]
    if params & 0xF0 != 0x90 and params != 0xDC and params != 0xDD:
        raise RpcError("params is not an array")
    try:
        return raw[start:stop].decode()
    except UnicodeDecodeError:
        raise RpcError("method is not valid UTF-8") from None


def parse_message(raw: bytes) -> Frame:
    """The Frame of `raw`, one complete, well-formed msgpack object; RpcError when it is
    not a msgpack-RPC message. (Bounds need no checks: the object is complete.)"""
    first = raw[0]
    if first == 0x94 or first == 0x93:  # the usual fixarray headers
        size, pos = first & 0x0F, 1
    else:
        header = _array_at(raw, 0)
        if header is None:
            raise RpcError(f"message is not an array (first byte 0x{first:02x})")
        size, pos = header
    if size != 4 and size != 3:
        raise RpcError(f"message is an array of {size} elements, not 3 or 4")
    kind = raw[pos]
    if kind > NOTIFICATION:  # not a fixint 0..2: another integer format, or no integer
        kind, pos = _int_at(raw, pos, "message type")
        if not REQUEST <= kind <= NOTIFICATION:
            raise RpcError(f"unknown message type {kind}")
    else:
        pos += 1
    if size != _SIZES[kind]:
        raise RpcError(f"{_NAMES[kind]} is an array of {size} elements, not {_SIZES[kind]}")
    if kind == NOTIFICATION:
        return Frame(_ONEWAY, None, _routing(raw, pos), raw)
    msgid = raw[pos]
    if msgid < 0x80:  # fixint
        end = pos + 1
    elif msgid == 0xCD:  # uint16
        end = pos + 3
        msgid = raw[pos + 1] << 8 | raw[pos + 2]
    elif msgid == 0xCE:  # uint32
        end = pos + 5
        msgid = int.from_bytes(raw[pos + 1 : end])
    else:
        msgid, end = _int_at(raw, pos, "msgid")
        if not 0 <= msgid <= MAX_ID:
            raise RpcError(f"msgid {msgid} is not a uint32")
    if kind == RESPONSE:
        return Frame(_RESPONSE, msgid, "", raw, pos, end - pos)
    return Frame(_REQUEST, msgid, _routing(raw, end), raw, pos, end - pos)


# -- the decoder -----------------------------------------------------------------------------


class MsgpackRpcDecoder:
    """`feed(data)` -> the frames `data` completes (see the module doc for the bounds).

    Offsets are positions in the stream given to the current Unpacker: `_fed` bytes so
    far, of which the incomplete message starts at `_start`; `_tail` holds
    stream[_start:_fed]. `_walk_*` is where the header walk of that message stands.
    """

    __slots__ = (
        "_error", "_fed", "_max", "_peak", "_start", "_tail", "_unpacker", "_walk_budget",
        "_walk_owed", "_walk_pos", "_walk_start",
    )  # fmt: skip

    def __init__(self, max_message_size: int) -> None:
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be positive, not {max_message_size}")
        self._max = max_message_size
        self._error: RpcError | None = None
        self._tail = bytearray()
        self._renew()

    def _renew(self) -> None:
        self._unpacker = msgpack.Unpacker(max_buffer_size=self._max)
        self._fed = self._start = self._peak = 0
        self._walk_start = -1
        self._walk_pos = self._walk_owed = self._walk_budget = 0

    @property
    def buffered(self) -> int:
        return self._fed - self._start

    def feed(self, data: bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        frames: list[Frame] = []
        try:
            self._feed(data, frames)
        except RpcError as error:
            error.frames = frames
            self._error = error
            self._tail = bytearray()
            self._renew()
            raise
        return frames

    def _feed(self, data: bytes, frames: list[Frame]) -> None:
        begin = self._fed  # the stream offset of data[0]
        size = len(data)
        room = self._max - (begin - self._start)
        self._peak = max(self._peak, min(size, room) + begin - self._start)
        if size <= room:  # the usual case: all of it at once
            self._unpacker.feed(data)
            self._fed += size
            self._drain(data, begin, frames)
        else:
            self._feed_slices(data, begin, frames)
        self._keep(data, begin)
        if self._fed != self._start:
            self._walk()
        elif self._peak > RENEW_ABOVE:
            self._renew()

    def _feed_slices(self, data: bytes, begin: int, frames: list[Frame]) -> None:
        """Feed `data` in slices that keep the Unpacker within max_message_size."""
        view = memoryview(data)
        done = 0
        while done < len(data):
            room = self._max - (self._fed - self._start)  # > 0: see _drain
            piece = view[done : done + room]
            self._unpacker.feed(piece)
            self._fed += len(piece)
            done += len(piece)
            self._drain(data, begin, frames)

    def _drain(self, data: bytes, begin: int, frames: list[Frame]) -> None:
        """Frame every message the Unpacker holds complete; refuse an incomplete one that
        already fills max_message_size."""
        unpacker = self._unpacker
        while self._start < self._fed:
            try:
                unpacker.skip()
            except OutOfData:
                break
            except ValueError as error:  # FormatError, StackError
                raise RpcError(_malformed(error)) from None
            stop = unpacker.tell()
            start = self._start
            if start >= begin:
                raw = data[start - begin : stop - begin]
            else:  # the message began in an earlier feed
                raw = b"".join((self._tail, memoryview(data)[: stop - begin]))
            self._start = stop
            frames.append(parse_message(raw))
        if self._fed - self._start >= self._max:
            raise RpcError(f"message larger than max_message_size ({self._max} bytes)")

    def _keep(self, data: bytes, begin: int) -> None:
        """Hold the bytes of the incomplete message, if any, in _tail."""
        start = self._start
        if start == self._fed:
            if self._tail:
                self._tail = bytearray()
        elif start < begin:  # nothing completed: all of data continues the message
            self._tail += data
        else:
            self._tail = bytearray(memoryview(data)[start - begin :])

    def _walk(self) -> None:
        """Refuse the incomplete message as soon as its headers declare more than fits."""
        if self._walk_start != self._start:
            self._walk_start = self._start
            self._walk_pos = self._walk_owed = 0
            self._walk_budget = WALK_BUDGET
        tail, pos, owed, budget = self._tail, self._walk_pos, self._walk_owed, self._walk_budget
        end = len(tail)
        while budget and pos < end:
            first = tail[pos]
            head = _FIXED[first]
            if head is not None:
                header, payload, elements = head
            else:
                width, extra, per = _VAR[first] or (0, 0, 0)  # 0xc1 never gets here
                if pos + 1 + width > end:
                    break
                count = int.from_bytes(tail[pos + 1 : pos + 1 + width])
                header = 1 + width + extra
                payload, elements = (0, count * per) if per else (count, 0)
            pos += header + payload
            owed += elements - (owed > 0)  # the top-level object is owed to no one
            budget -= 1
            if pos + owed > self._max:
                raise RpcError(f"message declares more than max_message_size ({self._max} bytes)")
        self._walk_pos, self._walk_owed, self._walk_budget = pos, owed, budget


def _malformed(error: ValueError) -> str:
    if isinstance(error, msgpack.StackError):
        return "malformed msgpack: nested too deep"
    if isinstance(error, msgpack.FormatError):
        return "malformed msgpack: reserved byte 0xc1"
    return f"malformed msgpack: {error}"


# -- the codec -------------------------------------------------------------------------------


class MsgpackRpc:
    """The msgpack-RPC RpcCodec (stateless; use MSGPACK_RPC)."""

    name = "msgpack_rpc"
    max_request_id = MAX_ID

    def decoder(self, max_message_size: int) -> MsgpackRpcDecoder:
        return MsgpackRpcDecoder(max_message_size)

    def with_request_id(self, frame: Frame, new_id: int) -> bytes:
        """Splice: raw[:id] + the new msgid (shortest encoding) + raw[id end:]."""
        if frame.kind is _ONEWAY:
            raise ValueError("a notification has no msgid")
        if not 0 <= new_id <= MAX_ID:
            raise ValueError(f"msgid {new_id} is not a uint32")
        raw = frame.raw
        at = frame.id_offset
        rest = at + frame.id_length
        if len(raw) < 256:  # slicing small bytes beats making memoryviews
            return raw[:at] + encode_uint32(new_id) + raw[rest:]
        view = memoryview(raw)
        return b"".join((view[:at], encode_uint32(new_id), view[rest:]))

    def response_failed(self, frame: Frame) -> bool:
        """The error element after the msgid is not nil (0xc0)."""
        position = frame.id_offset + frame.id_length
        return position < len(frame.raw) and frame.raw[position] != 0xC0

    def error_response(self, request_id: int, message: str) -> bytes:
        """`[1, request_id, message, nil]`."""
        if not 0 <= request_id <= MAX_ID:
            raise ValueError(f"msgid {request_id} is not a uint32")
        return bytes(msgpack.packb([RESPONSE, request_id, message, None]))

    def sniff(self, prefix: bytes) -> bool | None:
        """True for `0x94 0x00|0x01` (request, response) or `0x93 0x02` (notification): the
        fixarray header and type every implementation writes. Other valid encodings
        (array16 headers, wide type integers) are not recognised here."""
        if not prefix:
            return None
        first = prefix[0]
        if first != 0x94 and first != 0x93:
            return False
        if len(prefix) < 2:
            return None
        kind = prefix[1]
        return kind <= RESPONSE if first == 0x94 else kind == NOTIFICATION


MSGPACK_RPC = MsgpackRpc()
