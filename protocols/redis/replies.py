"""ReplyParser: a server's byte stream -> complete raw replies, forwarded untouched.

The parser finds boundaries only: each reply leaves as the exact bytes received (one
`bytes` span), so the proxy never re-encodes what it does not need to look inside. The
helpers below look into a span when it must (merging answers from several shards).

Reply types (first byte), RESP2 then RESP3:
    + - :              a line (simple string, error, integer)
    $                  bulk string `$<n>\\r\\n<n bytes>\\r\\n`; `$-1\\r\\n` is the RESP2 null
    *                  array of <n> replies; `*-1\\r\\n` is the RESP2 null array
    _ , # (            a line (null, double, boolean, big number)
    ! =                like `$` (blob error, verbatim string)
    % ~ >              map (2n replies), set, push (n replies)
    |                  attribute (2n replies) that precedes the reply it annotates: the
                       two leave as one span
A top-level push (`>`) is a span of its own: span[0] == ord(">"). Streamed strings and
aggregates (`$?`, `*?`, ...) are refused: "streamed replies are not supported".

The scan is a loop over one buffer with `find` and `int`, no per-byte Python. When the
data ends inside a reply, the scanned part is set aside and the scan resumes at the item
it stopped in; while a bulk item (or a line) is still incomplete, further data is only
collected until enough has arrived, so a large bulk arriving in pieces is joined once,
not rescanned.

Limits (RespError raised as soon as the header that breaks one is read):
    max_bulk     declared `$ ! =` length -> "invalid bulk length"
    max_array    declared aggregate count -> "invalid multibulk length"
    max_nesting  aggregates inside aggregates -> "reply nested too deeply"
    max_reply    bytes of one reply -> "reply too large"
    max_inline   a line (`+ - :`...) -> "reply line too long"
"""

from __future__ import annotations

from protocols.redis.encode import error_span
from protocols.redis.errors import RespError
from protocols.redis.limits import DEFAULT_LIMITS, RespLimits

__all__ = [
    "ReplyParser",
    "RespLimits",
    "array_elements",
    "error_span",
    "reply_integer",
    "reply_is_error",
]

DOLLAR, STAR, PIPE, PERCENT = b"$*|%"
_LINES = frozenset(b"+-:_,#(")
_BLOBS = frozenset(b"$!=")
_AGGREGATES = {STAR: 1, ord("~"): 1, ord(">"): 1, PERCENT: 2, PIPE: 2}
_HEADER_MAX = 24
"""No valid header line (type byte, sign, 19 digits, CRLF) is this long."""
_TOO_LONG = {b: "invalid bulk length" for b in _BLOBS} | {
    b: "invalid multibulk length" for b in _AGGREGATES
}
_LENGTHS = {b"%d" % n: n for n in range(10_000)}
"""Bulk lengths the scan loop reads with one dict lookup (cheaper than isdigit + int)."""
DONE, OPEN, STOP = "done", "open", "stop"


class ReplyParser:
    """`feed(data)` -> the replies completed by `data`, each as the raw bytes received.

    Raises RespError for a malformed or oversized reply (and for every later feed).
    """

    __slots__ = (
        "_error", "_have", "_lengths", "_limits", "_line_max", "_need", "_partlen", "_parts",
        "_rest", "_stack", "_wait",
    )  # fmt: skip

    def __init__(self, limits: RespLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._line_max = limits.max_inline + 2
        self._lengths = _LENGTHS if limits.max_bulk >= len(_LENGTHS) else {}
        self._stack: list[int] = []
        """Items still to come in each open aggregate; negative for an attribute."""
        self._parts: list[bytes] = []
        """Scanned bytes of the current, incomplete reply."""
        self._partlen = 0
        self._rest = b""
        """Unscanned bytes, from the start of an item."""
        self._wait: list[bytes] = []
        """Data collected while the item at the start of _rest cannot be complete yet."""
        self._have = 0
        self._need = 0
        """Bytes (from _rest's start) the incomplete item needs; if negative, the item is a
        line that cannot end (or be refused as too long) before a \\n or -_need bytes."""
        self._error: RespError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete reply held."""
        return self._partlen + len(self._rest) + sum(map(len, self._wait))

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        if self._rest:
            have = self._have + len(data)
            need = self._need
            if have < need or (need < 0 and have < -need and data.find(b"\n") < 0):
                self._have = have
                self._wait.append(data)
                return []
            data = b"".join((self._rest, *self._wait, data))
            self._rest = b""
            self._wait = []
        out: list[bytes] = []
        try:
            self._scan(data, out)
        except RespError as error:
            error.replies = out
            self._error = error
            self._parts.clear()
            self._rest = b""
            self._wait = []
            raise
        return out

    def _scan(self, buf: bytes, out: list[bytes]) -> None:
        """Split buf (which starts at an item boundary) into replies; keep the remainder.

        The loop reads small bulk strings and lines itself; everything else (aggregates,
        nulls, incomplete items, errors) goes through _item.
        """
        stack = self._stack
        parts = self._parts
        lengths = self._lengths
        lines = _LINES
        line_max = self._line_max
        room = self._limits.max_reply - self._partlen
        find = buf.find
        size = len(buf)
        pos = start = 0
        while pos < size:
            kind = buf[pos]
            if kind == 36:  # $
                cr = find(b"\r\n", pos + 1, pos + 24)  # _HEADER_MAX
                length = lengths.get(buf[pos + 1 : cr], -1)
                end = cr + 4 + length
                fast = (
                    length >= 0 and cr > 0 and end <= size and end - start <= room
                    and buf[end - 2] == 13 and buf[end - 1] == 10
                )  # fmt: skip
            elif kind in lines:
                end = find(b"\r\n", pos + 1, pos + line_max) + 2
                fast = end > 1
            else:
                fast = False
            if not fast:
                end, state = self._item(buf, pos, start)
                if state is not DONE:
                    if state is STOP:
                        return
                    pos = end
                    continue
            pos = end
            if stack and not self._item_done(stack, pos - start):
                continue
            if parts:
                out.append(self._join(buf[start:pos]))
                room = self._limits.max_reply
            else:
                out.append(buf[start:pos])
            start = pos
        self._stop(buf, start, pos, 0)

    def _item(self, buf: bytes, pos: int, start: int) -> tuple[int, str]:
        """Read the item at buf[pos] in full: (where it ends, DONE), (after the header of an
        aggregate it opens, OPEN), or (-1, STOP) once the incomplete rest is put aside."""
        kind = buf[pos]
        limits = self._limits
        if kind in _LINES:
            window = self._line_max
        elif kind in _BLOBS or kind in _AGGREGATES:
            window = _HEADER_MAX
        else:
            raise RespError(f"unexpected reply type {chr(kind)!r}")
        cr = buf.find(b"\r\n", pos + 1, pos + window)
        if cr < 0:
            if len(buf) - pos >= window:
                raise RespError(_TOO_LONG.get(kind, "reply line too long"))
            self._stop(buf, start, pos, -window)
            return -1, STOP
        if kind in _LINES:
            return cr + 2, DONE
        digits = buf[pos + 1 : cr]
        if kind in _AGGREGATES:
            count = self._count(digits, kind)
            if count == 0:
                return cr + 2, (OPEN if kind == PIPE else DONE)
            if len(self._stack) >= limits.max_nesting:
                raise RespError("reply nested too deeply")
            self._stack.append(-count if kind == PIPE else count)
            return cr + 2, OPEN
        if digits == b"-1" and kind == DOLLAR:
            return cr + 2, DONE
        if not digits.isdigit():
            raise RespError(_bad_header(digits, "invalid bulk length"))
        length = int(digits)
        end = cr + 4 + length
        if length > limits.max_bulk:
            raise RespError("invalid bulk length")
        if end - start + self._partlen > limits.max_reply:
            raise RespError("reply too large")
        if end > len(buf):
            self._stop(buf, start, pos, end - pos)
            return -1, STOP
        if buf[end - 2] != 13 or buf[end - 1] != 10:
            raise RespError("bulk data not followed by CRLF")
        return end, DONE

    def _count(self, digits: bytes, kind: int) -> int:
        """The element count of an aggregate header (items, so x2 for maps, attributes)."""
        if digits.isdigit():
            count = int(digits)
            if count > self._limits.max_array:
                raise RespError("invalid multibulk length")
            return count * _AGGREGATES[kind]
        if digits == b"-1" and kind == STAR:
            return 0
        raise RespError(_bad_header(digits, "invalid multibulk length"))

    def _item_done(self, stack: list[int], scanned: int) -> bool:
        """An item inside an aggregate ended: whether that completes the reply."""
        if self._partlen + scanned > self._limits.max_reply:
            raise RespError("reply too large")
        while stack:
            top = stack[-1]
            if top > 1:
                stack[-1] = top - 1
                return False
            if top == 1:
                stack.pop()
                continue
            if top < -1:
                stack[-1] = top + 1
            else:  # the attribute is complete: the reply it annotates comes next
                stack.pop()
            return False
        return True

    def _stop(self, buf: bytes, start: int, pos: int, need: int) -> None:
        """Keep what buf holds of the reply begun at `start`: scanned up to `pos`, and the
        rest, whose first item needs `need` bytes, or (when negative) a line end within
        -need bytes."""
        if pos > start:
            self._parts.append(buf[start:pos])
            self._partlen += pos - start
        self._rest = buf[pos:]
        self._have = len(self._rest)
        self._need = need

    def _join(self, last: bytes) -> bytes:
        parts = self._parts
        parts.append(last)
        span = b"".join(parts)
        parts.clear()
        self._partlen = 0
        return span


def _bad_header(digits: bytes, reason: str) -> str:
    return "streamed replies are not supported" if digits == b"?" else reason


# -- looking into a span -------------------------------------------------------------------


def reply_integer(span: bytes) -> int | None:
    """The value of an integer reply (`:<n>`, after any attribute), None for any other."""
    pos = _skip_attributes(span)
    if span[pos : pos + 1] != b":":
        return None
    digits = span[pos + 1 : -2]
    body = digits[1:] if digits[:1] in (b"-", b"+") else digits
    return int(digits) if body.isdigit() else None


def reply_is_error(span: bytes) -> bool:
    """Whether a reply (after any attribute) is an error (`-` or RESP3 `!`)."""
    pos = _skip_attributes(span)
    return span[pos : pos + 1] in (b"-", b"!")


def array_elements(span: bytes) -> list[bytes] | None:
    """The spans of the top-level elements of an aggregate reply (`*`, `~`, `>`, or `%`
    with keys and values alternating); None for anything else, including a null array.

    An element's attribute stays in its span; the reply's own attribute is skipped.
    """
    pos = _skip_attributes(span)
    kind = span[pos] if pos < len(span) else 0
    if kind not in _AGGREGATES or kind == PIPE:
        return None
    cr = span.find(b"\r\n", pos)
    digits = span[pos + 1 : cr]
    if not digits.isdigit():
        return None
    elements = []
    pos = cr + 2
    for _ in range(int(digits) * _AGGREGATES[kind]):
        end = _item_end(span, pos)
        elements.append(span[pos:end])
        pos = end
    return elements


def _skip_attributes(span: bytes) -> int:
    """The offset of the reply that attributes at the start of a complete span annotate."""
    pos = 0
    while span[pos : pos + 1] == b"|":
        cr = span.find(b"\r\n", pos)
        count = int(span[pos + 1 : cr]) * 2
        pos = cr + 2
        for _ in range(count):
            pos = _item_end(span, pos)
    return pos


def _item_end(span: bytes, pos: int) -> int:
    """Where the item (with any attribute before it) starting at span[pos] ends.

    `span` is a complete reply the parser accepted, so its framing is not checked again.
    """
    left = 1
    while left:
        kind = span[pos]
        cr = span.find(b"\r\n", pos)
        digits = span[pos + 1 : cr]
        pos = cr + 2
        if kind in _BLOBS:
            if digits != b"-1":
                pos += int(digits) + 2
            left -= 1
        elif kind in _AGGREGATES:
            count = 0 if digits == b"-1" else int(digits) * _AGGREGATES[kind]
            left += count if kind == PIPE else count - 1
        else:
            left -= 1
    return pos
