"""RequestParser: a client's byte stream -> commands (lists of arguments).

Like Redis (networking.c processInputBuffer) the first byte of each command picks its form:
`*` starts a multibulk command (an array of bulk strings), anything else an inline line.

Multibulk commands take a fast path: hiredis.Reader splits and decodes whole runs of them
in C. hiredis accepts more than Redis does (any RESP type, nested arrays, no size limits),
so a run is trusted only when checks costing a few C-level passes per `feed` prove it is
exactly what Redis would have read: every parsed element is `bytes` and the raw input
holds none of the bytes that start the other RESP types hiredis would turn into bytes or
lists (`+ ( = % ~ > |`), so each element was a `$` bulk and each command a `*` array; and
hiredis stopped at a command boundary (a `*-1` probe it must answer with None). When a
check fails, exact end offsets are recomputed (from lengths, or by re-encoding and
comparing) to find the trusted prefix, and the next command is read by `Command` in
Python with Redis's rules and error texts.

A command left incomplete at the end of `feed` is walked by `Command` (headers only:
payloads are skipped by arithmetic) while hiredis buffers and parses its bytes, so an
oversized count or length is refused as soon as its header has arrived, and hiredis only
ever holds one command the walk has vetted. Inline lines are parsed in Python (inline.py).

Deliberate differences from Redis:
    - a header line must end with CRLF (Redis looks for CR and skips the next byte
      unseen); a header is refused as soon as its first bytes cannot start a valid one
      (Redis waits for the CR), with the reason Redis gives once the line is complete
    - an inline line longer than max_inline is refused even when its newline arrived in
      the same read (Redis checks only lines still waiting for one)
    - an inline line with a NUL byte is split like sdssplitargs does (the NUL ends it);
      Redis never finds the newline past a NUL (strchr) and waits for more
    - `*N` counts above max_array are refused ("invalid multibulk length"), as Redis 6 did
      for counts above 1024*1024 (Redis 7 allows up to INT_MAX)
"""

from __future__ import annotations

import re
from itertools import chain
from typing import cast

import hiredis

from protocols.redis.encode import ARRAY_HEADERS, TABLE_SIZE, encode_command
from protocols.redis.errors import RespError
from protocols.redis.inline import split_args
from protocols.redis.limits import DEFAULT_LIMITS, INT_MAX, RespLimits

__all__ = ["Command", "RequestParser", "RespLimits"]

ASTERISK, DOLLAR, CR, LF = 42, 36, 13, 10
_PROBE = b"*-1\r\n"
_OTHER_TYPES = b"+(=%~>|"
"""RESP type bytes that hiredis turns into bytes or lists like `$` and `*`."""
_NOT_OTHER_TYPES = bytes(b for b in range(256) if b not in _OTHER_TYPES)
_HEADER_MAX = 24
"""No valid header line (type byte, sign, 19 digits, CRLF) is this long."""
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,19}|0")
"""string2ll's grammar (then the value must fit in 64 bits)."""
_INTEGER_PREFIX = re.compile(rb"-?(?:[1-9][0-9]{0,19})?|0")
_ELEMENT_SIZES = [n + len(b"$%d\r\n" % n) + 2 for n in range(TABLE_SIZE)]
_ARRAY_SIZES = [len(h) for h in ARRAY_HEADERS]


class RequestParser:
    """`feed(data)` -> the commands completed by `data`, in order (see the module doc).

    Raises RespError for input Redis would refuse (and for every later feed). Buffers at
    most one incomplete command, within the limits; EOF needs no call.
    """

    __slots__ = ("_error", "_limits", "_line", "_reader", "_unchecked", "_walk")

    def __init__(self, limits: RespLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._reader = hiredis.Reader()
        self._walk: Command | None = None
        self._line = bytearray()
        self._error: RespError | None = None
        self._unchecked = min(limits.max_bulk, 6 * limits.max_array + 5)
        """A run of complete commands this short cannot break max_bulk or max_array."""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete command held (by hiredis or as an inline line)."""
        return len(self._line) + (self._reader.len() if self._walk is not None else 0)

    def feed(self, data: bytes) -> list[list[bytes]]:
        if self._error is not None:
            raise self._error
        out: list[list[bytes]] = []
        try:
            self._feed(data, out)
        except RespError as error:
            error.commands = out
            self._error = error
            self._walk = None
            self._line = bytearray()
            self._reader = hiredis.Reader()
            raise
        return out

    def _feed(self, data: bytes, out: list[list[bytes]]) -> None:
        pos = 0
        if self._walk is not None:
            pos = self._resume(data, out)
        elif self._line:
            pos = self._resume_line(data, out)
        end = len(data)
        slow = False
        while pos < end:
            if data[pos] != ASTERISK:
                pos = self._inline(data, pos, out)
            elif slow:
                pos = self._command(data, pos, out)
            else:
                pos, slow = self._run(data, pos, out)
                if pos < end and data[pos] == ASTERISK:
                    pos = self._command(data, pos, out)

    # -- multibulk -------------------------------------------------------------------------

    def _run(self, data: bytes, pos: int, out: list[list[bytes]]) -> tuple[int, bool]:
        """Commands from data[pos:] through hiredis: (offset after the trusted ones, slow).

        `slow` says hiredis read past a command it got wrong, so feeding it the rest of
        `data` again could cost time quadratic in the number of commands.
        """
        reader = self._reader
        parsed: list[object] = []
        try:
            reader.feed(data, pos)
            gets = reader.gets
            while (command := gets()) is not False:
                parsed.append(command)
            boundary = not reader.has_data() and _at_boundary(reader)
        except Exception:  # hiredis.ProtocolError, MemoryError for a huge count, ...
            boundary = False
        region = data[pos:] if pos else data
        clean = not region.translate(None, _NOT_OTHER_TYPES)
        if boundary and clean and _all_bytes(parsed):
            self._take(cast(list[list[bytes]], parsed), len(region), out)
            return len(data), False
        self._reader = hiredis.Reader()
        trusted = _trusted_by_length if clean else _trusted_by_encoding
        commands, stop, whole = trusted(parsed, data, pos)
        self._take(commands, stop - pos, out)
        return stop, not whole

    def _take(self, commands: list[list[bytes]], size: int, out: list[list[bytes]]) -> None:
        if size <= self._unchecked:
            out += commands
            return
        limits = self._limits
        for command in commands:
            if len(command) > limits.max_array:
                raise RespError("invalid multibulk length")
            if max(map(len, command)) > limits.max_bulk:
                raise RespError("invalid bulk length")
            out.append(command)

    def _command(self, data: bytes, pos: int, out: list[list[bytes]]) -> int:
        """One multibulk command read in Python; an incomplete one is left to hiredis."""
        walk = Command(self._limits, collect=True)
        end = walk.walk(data, pos)
        if end < 0:
            self._walk = walk
            self._reader.feed(data, pos)
            self._poll()
            return len(data)
        if walk.args:
            out.append(walk.args)
        return end

    def _resume(self, data: bytes, out: list[list[bytes]]) -> int:
        """Carry on with the incomplete command: walk its headers, let hiredis decode it."""
        walk = cast(Command, self._walk)
        end = walk.walk(data, 0)
        reader = self._reader
        if end < 0:
            reader.feed(data)
            self._poll()
            return len(data)
        self._walk = None
        if walk.count <= 0:  # `*0`, `*-1`: nothing to run, and hiredis disagrees on `*-2`
            self._reader = hiredis.Reader()
            return end
        try:
            reader.feed(data, 0, end)
            command: object = reader.gets()
        except Exception as error:
            raise RespError("undecodable request") from error
        if not _all_bytes([command]):
            raise RespError("undecodable request")  # unreachable: hiredis reads as Command does
        out.append(cast(list[bytes], command))
        return end

    def _poll(self) -> None:
        """Let hiredis decode what it holds so far, so it keeps elements, not raw bytes."""
        try:
            parsed: object = self._reader.gets()
        except Exception as error:
            raise RespError("undecodable request") from error
        if parsed is not False:
            raise RespError("undecodable request")  # unreachable, as above

    # -- inline ----------------------------------------------------------------------------

    def _inline(self, data: bytes, pos: int, out: list[list[bytes]]) -> int:
        newline = data.find(b"\n", pos)
        if newline < 0:
            if len(data) - pos > self._limits.max_inline:
                raise RespError("too big inline request")
            self._line += data[pos:] if pos else data
            return len(data)
        self._split(data[pos:newline], out)
        return newline + 1

    def _resume_line(self, data: bytes, out: list[list[bytes]]) -> int:
        newline = data.find(b"\n")
        if newline < 0:
            if len(self._line) + len(data) > self._limits.max_inline:
                raise RespError("too big inline request")
            self._line += data
            return len(data)
        line = bytes(self._line) + data[:newline]
        self._line = bytearray()
        self._split(line, out)
        return newline + 1

    def _split(self, line: bytes, out: list[list[bytes]]) -> None:
        if len(line) > self._limits.max_inline:
            raise RespError("too big inline request")
        if line[-1:] == b"\r":
            line = line[:-1]
        args = split_args(line)
        if args is None:
            raise RespError("unbalanced quotes in request")
        if args:
            out.append(args)


def _at_boundary(reader: hiredis.Reader) -> bool:
    """Whether hiredis, having consumed all it was fed, is between commands.

    Only a reader about to be discarded may fail: mid-command, the probe becomes part of
    (or breaks) that command.
    """
    reader.feed(_PROBE)
    return reader.gets() is None


def _all_bytes(parsed: list[object]) -> bool:
    """Every item is a non-empty sequence of bytes (one C-level pass over the elements)."""
    try:
        b"".join(chain.from_iterable(cast(list[list[bytes]], parsed)))
    except TypeError:
        return False
    return all(parsed)


Trusted = tuple[list[list[bytes]], int, bool]
"""(commands, offset just past them, whether they are all that hiredis returned)."""


def _trusted_by_length(parsed: list[object], data: bytes, pos: int) -> Trusted:
    """The leading commands that are genuine, when the raw input held none of _OTHER_TYPES:
    then a list was a `*` array and bytes a `$` bulk, so lengths give exact offsets."""
    commands: list[list[bytes]] = []
    for command in parsed:
        if command.__class__ is not list or not command:
            raw = _empty(command)
            if not raw or not data.startswith(raw, pos):
                return commands, pos, False
            pos += len(raw)
            continue
        args = cast(list[bytes], command)
        n = len(args)
        size = _ARRAY_SIZES[n] if n < TABLE_SIZE else len(b"*%d\r\n" % n)
        for arg in args:
            if arg.__class__ is not bytes:
                return commands, pos, False
            n = len(arg)
            size += _ELEMENT_SIZES[n] if n < TABLE_SIZE else n + len(b"$%d\r\n" % n) + 2
        commands.append(args)
        pos += size
    return commands, pos, True


def _trusted_by_encoding(parsed: list[object], data: bytes, pos: int) -> Trusted:
    """Like _trusted_by_length, proving each command by re-encoding it."""
    commands: list[list[bytes]] = []
    for command in parsed:
        if command.__class__ is not list or not command:
            raw = _empty(command)
        else:
            try:
                raw = encode_command(cast(list[bytes], command))
            except TypeError:
                raw = b""
        if not raw or not data.startswith(raw, pos):
            return commands, pos, False
        if command:
            commands.append(cast(list[bytes], command))
        pos += len(raw)
    return commands, pos, True


def _empty(command: object) -> bytes:
    """How an empty command (Redis runs nothing) must look for hiredis to return `command`."""
    if command is None:
        return b"*-1\r\n"
    return b"*0\r\n" if command.__class__ is list and not command else b""


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
            self._check_start(head[:-1] if cr >= 0 else head)
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
        if not array and head[0] != DOLLAR:
            raise RespError(f"expected '$', got '{_show(head[0])}'")
        digits = head[1:]
        if crlf and _INTEGER.fullmatch(digits) is not None:
            value = int(digits)
            if array and -(1 << 63) <= value <= self.max_array:
                return value
            if not array and 0 <= value <= self.max_bulk:
                return value
        raise RespError("invalid multibulk length" if array else "invalid bulk length")

    def _check_start(self, head: bytes) -> None:
        """Refuse an incomplete header line that no further bytes could make valid."""
        if not head:
            return
        array = self.left < 0
        if not array and head[0] != DOLLAR:
            raise RespError(f"expected '$', got '{_show(head[0])}'")
        digits = head[1:]
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
