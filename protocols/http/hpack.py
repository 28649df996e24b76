"""HPACK (RFC 7541), sans-IO: header blocks <-> lists of (name, value) byte pairs.

One `Decoder` and one `Encoder` per HTTP/2 connection, each with its dynamic table.

- Decoding is bounded: integers of at most 5 continuation bytes, strings no longer than the
  block, a decoded header list of at most `max_header_list_size` (RFC 9113 §6.5.2 sizes:
  name + value + 32 a field, so an HPACK bomb fails at the bound, not in memory), table
  size updates only at the start of a block and never above `max_allowed_table_size`
  (what we advertised). Any bad block raises `HpackError` (an `HttpError`); the
  compression context is then lost, so it is the connection's error.
- Repeated blocks cost a dict lookup: a block that leaves the dynamic table as it was is
  remembered by its bytes until the table next changes (peers that index every field send
  the same few bytes for the same request). Encoded blocks are remembered the same way,
  by their header list.
- Encoding indexes what is worth it (nghttp2's choices: not :path, content-length and the
  like, nothing over 3/4 of the table), never indexes credentials (RFC 7541 §7.1.3) and
  Huffman-codes a string only where that makes it shorter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from protocols.http.hpack_huffman import (
    HpackError,
    huffman_decode,
    huffman_encode,
    huffman_length,
)

__all__ = ["Decoder", "Encoder", "HeaderListTooLarge", "HpackError"]

Field = tuple[bytes, bytes]

STATIC_TABLE: tuple[Field, ...] = (
    (b":authority", b""), (b":method", b"GET"), (b":method", b"POST"), (b":path", b"/"),
    (b":path", b"/index.html"), (b":scheme", b"http"), (b":scheme", b"https"),
    (b":status", b"200"), (b":status", b"204"), (b":status", b"206"), (b":status", b"304"),
    (b":status", b"400"), (b":status", b"404"), (b":status", b"500"), (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"), (b"accept-language", b""), (b"accept-ranges", b""),
    (b"accept", b""), (b"access-control-allow-origin", b""), (b"age", b""), (b"allow", b""),
    (b"authorization", b""), (b"cache-control", b""), (b"content-disposition", b""),
    (b"content-encoding", b""), (b"content-language", b""), (b"content-length", b""),
    (b"content-location", b""), (b"content-range", b""), (b"content-type", b""),
    (b"cookie", b""), (b"date", b""), (b"etag", b""), (b"expect", b""), (b"expires", b""),
    (b"from", b""), (b"host", b""), (b"if-match", b""), (b"if-modified-since", b""),
    (b"if-none-match", b""), (b"if-range", b""), (b"if-unmodified-since", b""),
    (b"last-modified", b""), (b"link", b""), (b"location", b""), (b"max-forwards", b""),
    (b"proxy-authenticate", b""), (b"proxy-authorization", b""), (b"range", b""),
    (b"referer", b""), (b"refresh", b""), (b"retry-after", b""), (b"server", b""),
    (b"set-cookie", b""), (b"strict-transport-security", b""), (b"transfer-encoding", b""),
    (b"user-agent", b""), (b"vary", b""), (b"via", b""), (b"www-authenticate", b""),
)  # fmt: skip
"""RFC 7541 Appendix A; index i + 1."""

_STATIC = len(STATIC_TABLE)
_ENTRY_OVERHEAD = 32
_MAX_INT_BYTES = 5
"""Continuation bytes an integer may take: 2^35, beyond any size we would accept."""
DEFAULT_TABLE_SIZE = 4096
_CACHE_ENTRIES = 256
_CACHE_BLOCK = 2048
"""Blocks longer than this are not remembered (they are rarely repeated)."""


class HeaderListTooLarge(HpackError):
    """The decoded header list passed `max_header_list_size` (an HPACK bomb, or just big)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 431)


class _Table:
    """The dynamic table (§2.3.2): newest first, sizes per §4.1."""

    __slots__ = ("changes", "entries", "maxsize", "size")

    def __init__(self) -> None:
        self.entries: deque[Field] = deque()
        self.size = 0
        self.maxsize = DEFAULT_TABLE_SIZE
        self.changes = 0
        """Insertions and resizes so far: what was decoded against the table is stale once
        this moves."""

    def add(self, field: Field) -> list[Field]:
        """Insert `field`; the entries evicted to make room (all, if it does not fit)."""
        self.entries.appendleft(field)
        self.changes += 1
        self.size += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        return self._evict()

    def resize(self, maxsize: int) -> list[Field]:
        self.maxsize = maxsize
        self.changes += 1
        return self._evict()

    def _evict(self) -> list[Field]:
        evicted: list[Field] = []
        entries = self.entries
        while self.size > self.maxsize:
            name, value = entries.pop()
            self.size -= len(name) + len(value) + _ENTRY_OVERHEAD
            evicted.append((name, value))
        return evicted


class Decoder:
    """Header blocks in, header lists out. See the module docstring for the bounds."""

    __slots__ = ("_cache", "_max_allowed", "_max_list", "_table")

    def __init__(
        self, max_header_list_size: int = 65536, table_size: int = DEFAULT_TABLE_SIZE
    ) -> None:
        self._table = _Table()
        self._table.maxsize = table_size
        self._max_allowed = table_size
        self._max_list = max_header_list_size
        self._cache: dict[bytes, list[Field]] = {}

    @property
    def max_header_list_size(self) -> int:
        return self._max_list

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        self._max_list = value
        self._cache.clear()  # what fitted before may not now

    @property
    def max_allowed_table_size(self) -> int:
        """The SETTINGS_HEADER_TABLE_SIZE the peer has acknowledged: its ceiling."""
        return self._max_allowed

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self._max_allowed = value

    @property
    def header_table_size(self) -> int:
        return self._table.maxsize

    def decode(self, block: bytes) -> list[Field]:
        """The header list `block` encodes (a list the caller must not change)."""
        cached = self._cache.get(block)
        if cached is not None:
            self._check_table_size()
            return cached
        changes = self._table.changes
        fields = _Block(self, block).run()
        self._check_table_size()
        if self._table.changes != changes:
            self._cache.clear()  # what was decoded against the old table is stale
        elif len(block) <= _CACHE_BLOCK:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[block] = fields
        return fields

    def _check_table_size(self) -> None:
        # After we lowered the ceiling, the peer must shrink the table in its next block.
        if self._table.maxsize > self._max_allowed:
            raise HpackError("HPACK: the table was not shrunk to the advertised size")

    def _resize(self, size: int) -> None:
        if size > self._max_allowed:
            raise HpackError(f"HPACK: table size update {size} above {self._max_allowed}")
        self._table.resize(size)

    def _field(self, index: int) -> Field:
        if 0 < index <= _STATIC:
            return STATIC_TABLE[index - 1]
        entries = self._table.entries
        if _STATIC < index <= _STATIC + len(entries):
            return entries[index - _STATIC - 1]
        raise HpackError(f"HPACK: no table entry {index}")


class _Block:
    """One header block being decoded (§6)."""

    __slots__ = ("data", "decoder", "fields", "pos", "size")

    def __init__(self, decoder: Decoder, data: bytes) -> None:
        self.decoder = decoder
        self.data = data
        self.pos = 0
        self.fields: list[Field] = []
        self.size = 0

    def run(self) -> list[Field]:
        data = self.data
        end = len(data)
        decoder = self.decoder
        while self.pos < end:
            first = data[self.pos]
            if first & 0x80:  # indexed field (§6.1)
                self._emit(decoder._field(self._int(7)))
            elif first & 0x40:  # literal, incremental indexing (§6.2.1)
                field = self._literal(6)
                decoder._table.add(field)
                self._emit(field)
            elif first & 0x20:  # dynamic table size update (§6.3)
                if self.fields:
                    raise HpackError("HPACK: table size update after a field")
                decoder._resize(self._int(5))
            else:  # literal without indexing / never indexed (§6.2.2, §6.2.3)
                self._emit(self._literal(4))
        return self.fields

    def _emit(self, field: Field) -> None:
        self.size += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if self.size > self.decoder._max_list:
            raise HeaderListTooLarge(
                f"HPACK: header list larger than {self.decoder._max_list} bytes"
            )
        self.fields.append(field)

    def _literal(self, prefix: int) -> Field:
        index = self._int(prefix)
        name = self.decoder._field(index)[0] if index else self._string()
        return name, self._string()

    def _int(self, prefix: int) -> int:
        """An integer with an N-bit prefix (§5.1), from `pos`."""
        data = self.data
        limit = (1 << prefix) - 1
        value = data[self.pos] & limit
        self.pos += 1
        if value < limit:
            return value
        shift = 0
        for _ in range(_MAX_INT_BYTES):
            if self.pos >= len(data):
                raise HpackError("HPACK: truncated integer")
            byte = data[self.pos]
            self.pos += 1
            value += (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise HpackError("HPACK: integer too long")

    def _string(self) -> bytes:
        """A string literal (§5.2), from `pos`."""
        data = self.data
        if self.pos >= len(data):
            raise HpackError("HPACK: truncated string")
        huffman = data[self.pos] & 0x80
        length = self._int(7)
        start = self.pos
        self.pos = start + length
        if self.pos > len(data):
            raise HpackError("HPACK: truncated string")
        # Every decoded byte counts toward the list bound; refuse the absurd before work.
        if length > self.decoder._max_list:
            raise HeaderListTooLarge(
                f"HPACK: header list larger than {self.decoder._max_list} bytes"
            )
        raw = data[start : self.pos]
        return huffman_decode(raw) if huffman else raw


# -- encoding -----------------------------------------------------------------------------

_STATIC_FIELDS: dict[Field, int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _i, _field in enumerate(STATIC_TABLE, 1):
    _STATIC_FIELDS.setdefault(_field, _i)
    _STATIC_NAMES.setdefault(_field[0], _i)

NEVER_INDEXED = frozenset((b"authorization", b"proxy-authorization"))
"""Credentials kept out of every table (as h2 and nghttp2 do; so are short cookies)."""
_NOT_INDEXED = frozenset(
    (b":path", b"age", b"content-length", b"etag", b"if-modified-since", b"if-none-match",
     b"location", b"set-cookie")
)  # fmt: skip
"""Fields that rarely repeat a value: indexing them would only evict those that do."""


def encode_int(value: int, prefix: int, flags: int) -> bytes:
    """`value` with an N-bit prefix (§5.1), the first byte or'ed with `flags`."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(value: bytes) -> bytes:
    """A string literal (§5.2), Huffman-coded where that is shorter."""
    coded = huffman_length(value)
    if coded < len(value):
        return encode_int(coded, 7, 0x80) + huffman_encode(value)
    return encode_int(len(value), 7, 0) + value


class Encoder:
    """Header lists in, header blocks out. See the module docstring for the choices."""

    __slots__ = ("_added", "_cache", "_fields", "_names", "_pending", "_table")

    def __init__(self) -> None:
        self._table = _Table()
        self._added = 0
        """Entries ever inserted: entry number k has index _STATIC + 1 + _added - k."""
        self._fields: dict[Field, int] = {}
        self._names: dict[bytes, int] = {}
        self._pending: list[int] = []
        """Table sizes to announce at the start of the next block (§4.2)."""
        self._cache: dict[tuple[Field, ...], bytes] = {}

    @property
    def header_table_size(self) -> int:
        return self._table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: we may use up to that much."""
        if value == self._table.maxsize and not self._pending:
            return
        self._pending.append(value)
        self._forget(self._table.resize(value))
        self._cache.clear()

    def encode(self, headers: Iterable[Field]) -> bytes:
        key = tuple(headers)
        if not self._pending:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
        parts = self._size_updates()
        added = self._added
        parts.extend(self._field(name, value) for name, value in key)
        block = b"".join(parts)
        if self._added != added:
            self._cache.clear()  # indices moved: older blocks would now mean other fields
        elif len(block) <= _CACHE_BLOCK:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = block
        return block

    def _size_updates(self) -> list[bytes]:
        """The smallest size since the last block, then the current one (§4.2)."""
        pending = self._pending
        if not pending:
            return []
        sizes = [min(pending), pending[-1]]
        pending.clear()
        if sizes[0] == sizes[1]:
            sizes.pop()
        return [encode_int(size, 5, 0x20) for size in sizes]

    def _field(self, name: bytes, value: bytes) -> bytes:
        field = (name, value)
        sensitive = name in NEVER_INDEXED or (name == b"cookie" and len(value) < 20)
        if not sensitive:
            index = _STATIC_FIELDS.get(field) or self._index(self._fields.get(field))
            if index:
                return encode_int(index, 7, 0x80)
        name_index = _STATIC_NAMES.get(name) or self._index(self._names.get(name))
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if sensitive:
            head = encode_int(name_index, 4, 0x10)
        elif name in _NOT_INDEXED or size > self._table.maxsize * 3 // 4:
            head = encode_int(name_index, 4, 0)
        else:
            head = encode_int(name_index, 6, 0x40)
            self._insert(field)
        if name_index:
            return head + encode_string(value)
        return head + encode_string(name) + encode_string(value)

    def _index(self, number: int | None) -> int:
        return 0 if number is None else _STATIC + 1 + self._added - number

    def _insert(self, field: Field) -> None:
        self._added += 1
        self._fields[field] = self._added
        self._names[field[0]] = self._added
        self._forget(self._table.add(field))

    def _forget(self, evicted: list[Field]) -> None:
        """Drop lookups that pointed at evicted entries (the oldest entries)."""
        if not evicted:
            return
        oldest = self._added - len(self._table.entries)  # numbers <= this are gone
        for name, value in evicted:
            if self._fields.get((name, value), oldest + 1) <= oldest:
                del self._fields[(name, value)]
            if self._names.get(name, oldest + 1) <= oldest:
                del self._names[name]
