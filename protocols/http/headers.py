"""An ordered header list that remembers the raw HTTP/1 block it was parsed from.

Forwarding an HTTP/1 head must not re-serialise every header: `Headers` keeps the block
as received and serialises as that block, with added lines appended to it and removed
fields cut out of it. Names are stored lowercased (HTTP/2 requires it and lookups need
it); the raw block keeps the sender's spelling.

A proxy asks about a few fields of nearly every message (framing, hop-by-hop, the request
id and forwarding fields): `indexed()` maps the INDEXED ones present to their values, built
once (the HTTP/1 parser hands it over with the items) and kept in step with changes, so
such questions cost a dict lookup instead of a pass over every header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

HeaderItems = list[tuple[bytes, bytes]]
Index = dict[bytes, list[bytes]]

INDEXED = frozenset((
    # framing and hop-by-hop (RFC 9110 7.6.1, RFC 9112 6)
    b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect",
    b"keep-alive", b"proxy-connection", b"te", b"trailer",
    # what the connection manager reads or sets on every proxied request
    b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"traceparent",
    b"content-type", b"user-agent",
))  # fmt: skip

_LINE_PATTERNS: dict[bytes, re.Pattern[bytes]] = {}


def _line_pattern(name: bytes) -> re.Pattern[bytes]:
    """Matches every `\\nName: value\\r` line of `name` (any letter case) in b"\\n" + block.

    (The literal "\\n" first lets the regex engine skip from line start to line start.)
    """
    pattern = _LINE_PATTERNS.get(name)
    if pattern is None:
        pattern = re.compile(rb"(?i)\n" + re.escape(name) + rb"[ \t]*:[^\r\n]*\r")
        if len(_LINE_PATTERNS) < 256:
            _LINE_PATTERNS[name] = pattern
    return pattern


class Headers:
    __slots__ = ("_index", "_items", "_raw")

    def __init__(
        self,
        items: Iterable[tuple[bytes, bytes]] = (),
        raw: bytes | None = None,
        index: Index | None = None,
    ) -> None:
        self._items: HeaderItems = list(items)
        self._raw = raw
        """The `Name: value\\r\\n...` block of these fields (without the final empty line)
        as received and changed since, or None (serialise the items)."""
        self._index = index
        """The INDEXED fields of the items, when known (a parser may pass it along)."""

    # -- reading --------------------------------------------------------------------------

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of `name` (lowercase), or default."""
        index = self._index
        if index is not None and name in INDEXED:
            values = index.get(name)
            return values[0] if values else default
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self._items if key == name]

    def indexed(self) -> Mapping[bytes, list[bytes]]:
        """The INDEXED fields present: lowercase name -> values in order (don't change them)."""
        index = self._index
        if index is None:
            index = self._index = {}
            for name, value in self._items:
                if name in INDEXED:
                    if name in index:
                        index[name].append(value)
                    else:
                        index[name] = [value]
        return index

    def __contains__(self, name: object) -> bool:
        index = self._index
        if index is not None and name in INDEXED:
            return name in index
        for key, _ in self._items:  # noqa: SIM110 - any() with a generator costs 3x here
            if key == name:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    @property
    def items(self) -> HeaderItems:
        return list(self._items)

    # -- changing -------------------------------------------------------------------------

    def add(self, name: bytes, value: bytes) -> None:
        self._items.append((name, value))
        if self._raw is not None:
            self._raw += name + b": " + value + b"\r\n"
        if name in INDEXED and self._index is not None:
            _index_add(self._index, name, value)

    def extend(self, fields: Iterable[tuple[bytes, bytes]]) -> None:
        """`add` each (name, value), in order."""
        items = self._items
        lines: list[bytes] = []
        for name, value in fields:
            items.append((name, value))
            lines.append(name + b": " + value + b"\r\n")
            if name in INDEXED and self._index is not None:
                _index_add(self._index, name, value)
        if self._raw is not None:
            self._raw += b"".join(lines)

    def set(self, name: bytes, value: bytes) -> None:
        """Replace every `name` with one value (appended if absent)."""
        if name in self:
            self.remove(name)
        self.add(name, value)

    def remove(self, name: bytes) -> bool:
        """Drop every `name` field (lowercase); whether there was one."""
        index = self._index
        if index is not None and name in INDEXED:
            values = index.get(name)
            if values is None:
                return False
            index = self._index = index.copy()  # (callers may hold the old ones)
            del index[name]
            items = self._items = self._items.copy()
            for value in values:
                items.remove((name, value))
        else:
            items = self._items
            kept = [(k, v) for k, v in items if k != name]
            if len(kept) == len(items):
                return False
            self._items = kept
        if self._raw is not None:
            # Cut the lines out of the raw block (any spelling) instead of re-serialising.
            self._raw = _line_pattern(name).sub(b"", b"\n" + self._raw)[1:]
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
        return b"".join([k + b": " + v + b"\r\n" for k, v in self._items])


def _index_add(index: Index, name: bytes, value: bytes) -> None:
    """One more value of `name`, in a new list (callers may hold the old values)."""
    values = index.get(name)
    index[name] = [value] if values is None else [*values, value]
