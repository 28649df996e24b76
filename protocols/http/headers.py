"""An ordered header list that remembers the raw HTTP/1 block it was parsed from.

Forwarding an unmodified HTTP/1 head must not re-serialise every header: `Headers` keeps
the original block and, as long as headers are only appended, serialises as
`raw block + appended lines`. Only a removal or replacement forces a rebuild.
Names are stored lowercased (HTTP/2 requires it and lookups need it); the raw block
keeps the sender's spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

HeaderItems = list[tuple[bytes, bytes]]

_LINE_PATTERNS: dict[bytes, re.Pattern[bytes]] = {}


def _line_pattern(name: bytes) -> re.Pattern[bytes]:
    """Matches every `Name: value\r\n` line of `name` in a raw block, any letter case."""
    pattern = _LINE_PATTERNS.get(name)
    if pattern is None:
        pattern = re.compile(rb"(?im)^" + re.escape(name) + rb"[ \t]*:[^\r\n]*\r\n")
        if len(_LINE_PATTERNS) < 256:
            _LINE_PATTERNS[name] = pattern
    return pattern


class Headers:
    __slots__ = ("_appended", "_items", "_raw")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = (), raw: bytes | None = None):
        self._items: HeaderItems = list(items)
        self._raw = raw
        """The original `Name: value\\r\\n...` block (without the final empty line), or None."""
        self._appended = b""
        """Lines added since parsing, already serialised, to go after the raw block."""

    # -- reading --------------------------------------------------------------------------

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of `name` (lowercase), or default."""
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self._items if key == name]

    def __contains__(self, name: object) -> bool:
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
            self._appended += name + b": " + value + b"\r\n"

    def set(self, name: bytes, value: bytes) -> None:
        """Replace every `name` with one value (appended if absent)."""
        if name in self:
            self.remove(name)
        self.add(name, value)

    def remove(self, name: bytes) -> bool:
        kept = [(k, v) for k, v in self._items if k != name]
        if len(kept) == len(self._items):
            return False
        self._items = kept
        if self._raw is not None:
            # Cut the lines out of the raw block (any spelling) instead of dropping it.
            pattern = _line_pattern(name)
            self._raw = pattern.sub(b"", self._raw)
            self._appended = pattern.sub(b"", self._appended)
        return True

    def setdefault(self, name: bytes, value: bytes) -> bytes:
        found = self.get(name)
        if found is None:
            self.add(name, value)
            return value
        return found

    # -- HTTP/1 serialisation -------------------------------------------------------------

    def h1_block(self) -> bytes:
        """`Name: value\\r\\n` lines, reusing the raw block when it is still valid."""
        if self._raw is not None:
            return self._raw + self._appended if self._appended else self._raw
        return b"".join([k + b": " + v + b"\r\n" for k, v in self._items])
