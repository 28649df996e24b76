"""An ordered header list that can stay the raw HTTP/1 block it was received as.

A proxy reads few fields of most messages: forwarding an unmodified HTTP/1 head must not
build a (name, value) list, nor re-serialise every header. `Headers.from_block` keeps the
block the codec validated and builds the items only when something reads them (`get`,
iteration, ...). What a proxy does on the hot path works on the block itself:
`select(fields)` finds the lines of a few names (a `FieldSet`) in one regex pass,
`remove` cuts lines out, `add` appends one, and `h1_block()` returns the block as it is.
Headers made from items (HTTP/2, local replies) have no block and serialise their items.

Names are stored lowercased (HTTP/2 requires it and lookups need it); the raw block keeps
the sender's spelling. Lines in a raw block are `name:value\\r\\n` with optional blanks
around the value, and nothing else (the codec validated them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

HeaderItems = list[tuple[bytes, bytes]]

_LINE_PATTERNS: dict[bytes, re.Pattern[bytes]] = {}


def _line_pattern(name: bytes) -> re.Pattern[bytes]:
    """Matches every `\\nName: value\\r` line of `name` (any letter case) in `\\n` + block."""
    pattern = _LINE_PATTERNS.get(name)
    if pattern is None:
        pattern = re.compile(rb"(?i)\n" + re.escape(name) + rb"[ \t]*:[^\r\n]*\r")
        if len(_LINE_PATTERNS) < 256:
            _LINE_PATTERNS[name] = pattern
    return pattern


def parse_block(block: bytes) -> HeaderItems:
    """`Name: value\\r\\n` lines -> [(lowercase name, value without surrounding blanks)]."""
    items: HeaderItems = []
    lines = block.split(b"\r\n")
    lines.pop()
    for line in lines:
        name, _, value = line.partition(b":")
        items.append((name.lower(), value.strip()))
    return items


class FieldSet:
    """A few lowercase header names, with the regex that finds their lines in a raw block.

    Made once (module level): `Headers.select` is the per-message part.
    """

    __slots__ = ("common", "names", "pattern")

    def __init__(self, *names: bytes) -> None:
        self.names = frozenset(names)
        alternatives = b"|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        # A literal "\n" first lets the regex engine skip from line start to line start.
        self.pattern = re.compile(rb"(?i)\n(" + alternatives + rb")[ \t]*:[ \t]*([^\r\n]*)")
        self.common = self.names <= _COMMON_NAMES
        """Only names of _COMMON: answered from the block's one _COMMON scan."""

    def find(self, block: bytes) -> HeaderItems:
        """[(lowercase name, value)] of the lines of these names in a raw block, in order."""
        found = self.pattern.findall(b"\n" + block)
        return [(name.lower(), value.rstrip(b" \t")) for name, value in found]


_COMMON_NAMES = frozenset((
    b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect",
    b"keep-alive", b"proxy-connection", b"te", b"trailer",
))  # fmt: skip
_COMMON = FieldSet(*_COMMON_NAMES)
"""What HTTP/1 framing and hop-by-hop handling look up in nearly every message: a raw
block is scanned for all of them once, and each `select` of some of them reuses that."""


class Headers:
    __slots__ = ("_common", "_items", "_raw")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = (), raw: bytes | None = None):
        self._items: HeaderItems | None = list(items)
        """The fields, or None while they are only in the raw block (not parsed yet)."""
        self._raw = raw
        """The HTTP/1 block of these fields as received (and changed since), or None."""
        self._common: HeaderItems | None = None
        """While there are no items: the _COMMON fields of the raw block, once looked up."""

    @classmethod
    def from_block(cls, block: bytes) -> Headers:
        """Headers over a validated `Name: value\\r\\n...` block, parsed on first read."""
        headers = cls.__new__(cls)
        headers._items = None
        headers._raw = block
        headers._common = None
        return headers

    def _fields(self) -> HeaderItems:
        items = self._items
        if items is None:
            assert self._raw is not None
            items = self._items = parse_block(self._raw)
        return items

    # -- reading --------------------------------------------------------------------------

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of `name` (lowercase), or default."""
        items = self._items
        if items is None:
            items = self._fields()
        for key, value in items:
            if key == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self._fields() if key == name]

    def select(self, fields: FieldSet) -> HeaderItems:
        """The fields named in `fields`, in order, without parsing the other lines."""
        items = self._items
        if items is None:
            assert self._raw is not None
            if not fields.common:
                return fields.find(self._raw)
            items = self._common
            if items is None:
                items = self._common = _COMMON.find(self._raw)
        names = fields.names
        return [(key, value) for key, value in items if key in names]

    def __contains__(self, name: object) -> bool:
        for key, _ in self._fields():  # noqa: SIM110 - any() with a generator costs 3x here
            if key == name:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._fields() == other._fields()
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._fields()!r})"

    @property
    def items(self) -> HeaderItems:
        return list(self._fields())

    # -- changing -------------------------------------------------------------------------

    def add(self, name: bytes, value: bytes) -> None:
        self._fields().append((name, value))
        if self._raw is not None:
            self._raw += name + b": " + value + b"\r\n"

    def set(self, name: bytes, value: bytes) -> None:
        """Replace every `name` with one value (appended if absent)."""
        if name in self:
            self.remove(name)
        self.add(name, value)

    def remove(self, name: bytes) -> bool:
        """Drop every `name` field (lowercase); whether there was one."""
        items = self._items
        if items is not None:
            kept = [(k, v) for k, v in items if k != name]
            if len(kept) == len(items):
                return False
            self._items = kept
        if self._raw is not None:
            # Cut the lines out of the raw block (any spelling) instead of dropping it.
            block, count = _line_pattern(name).subn(b"", b"\n" + self._raw)
            if count:
                self._raw = block[1:]
            elif items is None:
                return False
            if self._common is not None:
                self._common = [(k, v) for k, v in self._common if k != name]
        return True

    def setdefault(self, name: bytes, value: bytes) -> bytes:
        found = self.get(name)
        if found is None:
            self.add(name, value)
            return value
        return found

    # -- HTTP/1 serialisation -------------------------------------------------------------

    def h1_block(self) -> bytes:
        """`Name: value\\r\\n` lines, reusing the raw block when there is one."""
        if self._raw is not None:
            return self._raw
        return b"".join([k + b": " + v + b"\r\n" for k, v in self._fields()])
