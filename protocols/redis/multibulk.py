"""Multibulk commands read by Redis's own rules (networking.c processMultibulkBuffer).

`Command` is what RequestParser uses where hiredis cannot be trusted: to read one command
in Python, and to vet the headers of an incomplete command (skipping its payloads by
arithmetic) before hiredis gets its bytes.
"""

from __future__ import annotations

import re

from protocols.redis.errors import RespError
from protocols.redis.limits import INT_MAX, RespLimits

DOLLAR, CR, LF = 36, 13, 10
_HEADER_MAX = 24
"""No valid header line (type byte, sign, 19 digits, CRLF) is this long."""
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,19}|0")
"""string2ll's grammar (then the value must fit in 64 bits)."""
_INTEGER_PREFIX = re.compile(rb"-?(?:[1-9][0-9]{0,19})?|0")
"""What a string2ll-valid number can start with."""


class Command:
    """Walks one multibulk command by Redis's rules (processMultibulkBuffer), across feeds.

    `walk(data, pos)` returns the offset just past the command, or -1 when `data` ends
    first (call again with the next data at pos 0). Payloads are skipped by arithmetic;
    with `collect` the arguments of a command that completes within one `walk` call are
    kept in `args`. Errors, with Redis's texts:
        "invalid multibulk length"    count not a valid integer, or above max_array
        "expected '$', got 'x'"        an element that is not a bulk string
        "invalid bulk length"         length not a valid integer, negative, above max_bulk
    A count <= 0 is an empty command (Redis skips it). The payload's trailing CRLF is not
    checked (Redis and hiredis skip those two bytes unseen).
    """

    __slots__ = ("args", "count", "left", "line", "max_array", "max_bulk", "skip")

    def __init__(self, limits: RespLimits, collect: bool = False) -> None:
        self.max_array = min(limits.max_array, INT_MAX)
        self.max_bulk = limits.max_bulk
        self.count = 0
        self.left = -1
        """Elements still to come; -1 while the `*` header is incomplete."""
        self.skip = 0
        """Bytes of the current element's payload (and its CRLF) still to come."""
        self.line = b""
        """The start of a header line that the previous data cut short."""
        self.args: list[bytes] | None = [] if collect else None

    def walk(self, data: bytes, pos: int) -> int:
        end = len(data)
        while True:
            if self.skip:
                stop = pos + self.skip
                if stop > end:
                    self.skip = stop - end
                    self.args = None
                    return -1
                if self.args is not None:
                    self.args.append(data[pos : stop - 2])
                pos = stop
                self.skip = 0
                self.left -= 1
                if not self.left:
                    return pos
            pos = self._header(data, pos)
            if pos < 0:
                self.args = None
                return -1
            if not self.left:
                return pos

    def _header(self, data: bytes, pos: int) -> int:
        """Read a header line at data[pos:] (after self.line); where it ends, or -1."""
        carried = self.line
        buf, start = (carried + data[pos : pos + _HEADER_MAX], 0) if carried else (data, pos)
        cr = buf.find(b"\r", start, start + _HEADER_MAX)
        if cr < 0 or cr + 1 == len(buf):
            head = buf[start : start + _HEADER_MAX]
            self._check_start(head)
            self.line = head
            return -1
        self.line = b""
        value = self._value(buf[start:cr], buf[cr + 1] == LF)
        if self.left < 0:
            self.count = value
            self.left = max(value, 0)
        else:
            self.skip = value + 2
        return pos + cr + 2 - start - len(carried)

    def _value(self, head: bytes, crlf: bool) -> int:
        """The count or length in a complete header line `head` (type byte included)."""
        array = self.left < 0
        if not array and head[:1] != b"$":
            raise RespError(f"expected '$', got '{_show(head[0] if head else CR)}'")
        digits = head[1:]
        if crlf and _INTEGER.fullmatch(digits) is not None:
            value = int(digits)
            if array and -(1 << 63) <= value <= self.max_array:
                return value
            if not array and 0 <= value <= self.max_bulk:
                return value
        raise RespError("invalid multibulk length" if array else "invalid bulk length")

    def _check_start(self, head: bytes) -> None:
        """Refuse an incomplete header line (maybe ending in its CR) that no further bytes
        could make valid."""
        if not head:
            return
        array = self.left < 0
        if not array and head[0] != DOLLAR:
            raise RespError(f"expected '$', got '{_show(head[0])}'")
        digits = head[1:-1] if head[-1] == CR else head[1:]
        if _INTEGER_PREFIX.fullmatch(digits) is not None:
            if digits[:1] != b"-":
                if not digits or int(digits) <= (self.max_array if array else self.max_bulk):
                    return
            elif array and (digits == b"-" or int(digits) >= -(1 << 63)):
                return
        raise RespError("invalid multibulk length" if array else "invalid bulk length")


def _show(byte: int) -> str:
    """A byte in an error text: itself when printable, else \\xHH (Redis sends it raw)."""
    return chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"
