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
check fails, exact end offsets are recomputed (from lengths, which also prove payloads
holding some of those bytes, or by re-encoding and comparing) to find the trusted
prefix, and the next command is read by `Command` in Python with Redis's rules and
error texts.

hiredis also allocates a list as long as an array's count as soon as it reads the header
(and freeing one of 2**31 slots takes seconds), so input where a count could exceed
max_array (a `*` followed by that many digits, found by a regex with a literal prefix)
is read in Python instead.

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

from protocols.redis.encode import ARRAY_HEADERS, CRLF, TABLE_SIZE, encode_command
from protocols.redis.errors import RespError
from protocols.redis.inline import split_args
from protocols.redis.limits import DEFAULT_LIMITS, INT_MAX, RespLimits
from protocols.redis.multibulk import Command

__all__ = ["RequestParser", "RespLimits"]

ASTERISK, DOLLAR = 42, 36
_PROBE = b"*-1\r\n"
SHRINKS, GROWS, CAUGHT, BLIND = 1, 2, 4, 8
_OTHER_TYPES = tuple(
    zip(b"+(=%>~|", (SHRINKS, SHRINKS, GROWS, CAUGHT, CAUGHT, BLIND, BLIND), strict=True)
)
"""RESP type bytes (besides `$` and `*`) that hiredis turns into bytes or lists, and what
an element or command of that type does to the length computed as if it were `$` or `*`:
`+ (` elements make it longer than the real input, `=` ones shorter; `% >` become dicts
and pushes, which the type checks catch; `~ |` become plain lists no check can tell from
`*` arrays. Only a byte present in the input can stand for a type there."""
_ELEMENT_SIZES = [n + len(b"$%d\r\n" % n) + 2 for n in range(TABLE_SIZE)]
QUICK_BYTES = 256
"""Reads up to this long are tried in Python first (see RequestParser._quick)."""
_QUICK_COUNT = 9
_NEXT_COMMAND = b"\r\n*"
_LENGTHS = {b"%d" % n: n for n in range(TABLE_SIZE)}
"""Bulk lengths in their only valid spelling (no sign, no leading zero)."""
_ARRAY_SIZES = [len(h) for h in ARRAY_HEADERS]


class RequestParser:
    """`feed(data)` -> the commands completed by `data`, in order (see the module doc).

    Raises RespError for input Redis would refuse (and for every later feed). Buffers at
    most one incomplete command, within the limits; EOF needs no call.
    """

    __slots__ = (
        "_big_count", "_big_other_count", "_error", "_lengths", "_limits", "_line",
        "_quick_count", "_reader", "_unchecked", "_walk",
    )  # fmt: skip

    def __init__(self, limits: RespLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._reader = hiredis.Reader()
        self._walk: Command | None = None
        self._line = bytearray()
        self._error: RespError | None = None
        self._unchecked = min(limits.max_bulk, 6 * limits.max_array + 5)
        """A run of complete commands this short cannot break max_bulk or max_array."""
        digits = max(len(str(min(limits.max_array, INT_MAX))), 4)
        self._big_count = re.compile(rb"\*[0-9]{%d}" % digits)
        self._big_other_count = re.compile(rb"[*~>|][0-9]{%d}" % digits)
        """What may be an aggregate count beyond max_array (see the module doc)."""
        self._quick_count = min(_QUICK_COUNT, limits.max_array)
        self._lengths = (
            _LENGTHS
            if limits.max_bulk >= TABLE_SIZE
            else {k: n for k, n in _LENGTHS.items() if n <= limits.max_bulk}
        )

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
        elif 4 <= len(data) <= QUICK_BYTES and _NEXT_COMMAND not in data:  # not pipelined
            pos = self._quick(data, out)
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

    def _quick(self, data: bytes, out: list[list[bytes]]) -> int:
        """A read holding one command of the usual small shape (`*1`..`*9`, bulks shorter
        than TABLE_SIZE), as a client that does not pipeline sends it, read in Python:
        where it ends, or 0 when data starts otherwise. For one command this costs less
        than hiredis and its checks; for a pipeline, more (the general path reads the rest,
        and a read holding CRLF `*` probably is one: it is not tried here)."""
        count = data[1] - 48  # one digit
        if data[0] != ASTERISK or not 0 < count <= self._quick_count or data[2:4] != CRLF:
            return 0
        lengths = self._lengths
        find = data.find
        size = len(data)
        at = 4
        args: list[bytes] = []
        for _ in range(count):
            cr = find(CRLF, at + 1, at + 7)
            if cr < 0 or data[at] != DOLLAR:
                return 0
            length = lengths.get(data[at + 1 : cr], -1)
            at = cr + 4 + length
            if length < 0 or at > size:
                return 0
            args.append(data[cr + 2 : at - 2])  # the CRLF after it is not checked, as Redis does
        out.append(args)
        return at

    def _run(self, data: bytes, pos: int, out: list[list[bytes]]) -> tuple[int, bool]:
        """Commands from data[pos:] through hiredis: (offset after the trusted ones, slow).

        `slow` says hiredis read past a command it got wrong, so feeding it the rest of
        `data` again could cost time quadratic in the number of commands.
        """
        region = data[pos:] if pos else data
        hazards = _hazards(region)
        big = self._big_other_count if hazards & (CAUGHT | BLIND) else self._big_count
        if big.search(region) is not None:
            return pos, True  # hiredis would allocate (and free) a list that long: no
        reader = self._reader
        parsed: list[object] = []
        try:
            reader.feed(data, pos)
            gets = reader.gets
            while (command := gets()) is not False:
                parsed.append(command)
            boundary = not reader.has_data() and _at_boundary(reader)
        except Exception:  # hiredis.ProtocolError, ...
            boundary = False
        if boundary and not hazards and _all_bytes(parsed):
            self._take(cast(list[list[bytes]], parsed), len(region), out)
            return len(data), False
        commands, stop, whole = _trusted(parsed, data, pos, hazards, boundary)
        if not (boundary and whole and stop == len(data)):
            self._reader = hiredis.Reader()  # its state past `stop` is not what Redis sees
        self._take(commands, stop - pos, out)
        return stop, not whole

    def _take(self, commands: list[list[bytes]], size: int, out: list[list[bytes]]) -> None:
        """Append commands hiredis read from `size` bytes, within max_array and max_bulk."""
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
        if (newline if newline >= 0 else len(data)) - pos > self._limits.max_inline:
            raise RespError("too big inline request")
        if newline < 0:
            self._line += data[pos:] if pos else data
            return len(data)
        self._split(data[pos:newline], out)
        return newline + 1

    def _resume_line(self, data: bytes, out: list[list[bytes]]) -> int:
        newline = data.find(b"\n")
        if len(self._line) + (newline if newline >= 0 else len(data)) > self._limits.max_inline:
            raise RespError("too big inline request")
        if newline < 0:
            self._line += data
            return len(data)
        line = bytes(self._line) + data[:newline]
        self._line = bytearray()
        self._split(line, out)
        return newline + 1

    @staticmethod
    def _split(line: bytes, out: list[list[bytes]]) -> None:
        """One inline line (at most max_inline bytes, without its \\n) -> a command."""
        if line[-1:] == b"\r":
            line = line[:-1]
        args = split_args(line)
        if args is None:
            raise RespError("unbalanced quotes in request")
        if args:
            out.append(args)


def _hazards(region: bytes) -> int:
    """The flags of the _OTHER_TYPES bytes in region (seven memchr calls)."""
    found = 0
    for byte, flag in _OTHER_TYPES:
        if byte in region:
            found |= flag
    return found


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


def _trusted(parsed: list[object], data: bytes, pos: int, hazards: int, boundary: bool) -> Trusted:
    """The leading commands in `parsed` that are exactly what Redis reads at data[pos:].

    Lengths prove it when data holds no other type byte; and also when hiredis consumed
    all of data, only types that err in one direction may be present, and the lengths
    add up to all of data. Otherwise each command is re-encoded and compared.
    """
    if not hazards & BLIND and hazards & (SHRINKS | GROWS) != SHRINKS | GROWS:
        trusted = _trusted_by_length(parsed, data, pos)
        if not hazards or (boundary and trusted[2] and trusted[1] == len(data)):
            return trusted
    return _trusted_by_encoding(parsed, data, pos)


def _trusted_by_length(parsed: list[object], data: bytes, pos: int) -> Trusted:
    """The leading commands that are genuine if every list was a `*` array and all bytes
    a `$` bulk, and where they end (see _trusted)."""
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
