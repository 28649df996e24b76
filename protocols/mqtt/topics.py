"""Topic names, topic filters and matching (MQTT 3.1.1 section 4.7, 5.0 section 4.7-4.8).

A topic name (what PUBLISH carries) is a non-empty UTF-8 string without U+0000 and
without the wildcards `+` and `#`. A topic filter (what SUBSCRIBE carries) may use them:
`+` stands for exactly one level (an empty one too) and fills its whole level; `#` stands
for any number of levels (none too: `sport/#` matches `sport`), fills its whole level and
is the last one. Levels are separated by `/`; empty levels are levels.

Topics starting with `$` (`$SYS/...`) are not matched by a filter whose first level is a
wildcard: `#` and `+/monitor` do not match `$SYS/monitor`, `$SYS/#` does.

An MQTT 5 shared subscription is `$share/{ShareName}/{filter}`: the share name is not
empty and has no `/`, `+` or `#`, the filter is valid. In 3.1.1 `$share/...` is an ordinary
filter (`shared=False`).

`matches` tests one filter against one topic; `TopicMatcher` holds many filters in a trie
of levels, so a lookup costs one step per level and per matching wildcard, whatever the
number of filters. `overlap` and `covers` compare two filters by the topics they match
(what an ACL asks of a subscription), under the same rules, `$` included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

SHARE_PREFIX = "$share/"
MAX_BYTES = 0xFFFF


def _well_formed(text: str) -> bool:
    """Non-empty, no U+0000, encodable as UTF-8 (no lone surrogates) in <= 65535 bytes."""
    if not text or "\x00" in text:
        return False
    if text.isascii():
        return len(text) <= MAX_BYTES
    try:
        return len(text.encode()) <= MAX_BYTES
    except UnicodeEncodeError:
        return False


def is_topic_name(topic: str) -> bool:
    return "+" not in topic and "#" not in topic and _well_formed(topic)


def is_topic_filter(topic_filter: str, shared: bool = True) -> bool:
    """A valid topic filter; with `shared` (MQTT 5), `$share/...` must be a valid shared
    subscription."""
    if not _well_formed(topic_filter):
        return False
    if shared and topic_filter.startswith(SHARE_PREFIX):
        if split_shared(topic_filter) is None:
            return False
        topic_filter = topic_filter.split("/", 2)[2]
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if level == "#":
            if i != last:
                return False
        elif level != "+" and ("+" in level or "#" in level):
            return False
    return True


def split_shared(topic_filter: str) -> tuple[str, str] | None:
    """`$share/name/filter` -> (name, filter); None when not a (well-formed) shared one."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    name, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not name or not sep or not rest or "+" in name or "#" in name:
        return None
    return name, rest


def matches(topic_filter: str, topic: str) -> bool:
    """Does `topic_filter` (valid, not shared) match the topic name `topic`?"""
    if topic_filter == topic:
        return True
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    levels = topic.split("/")
    count = len(levels)
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= count or (part != "+" and part != levels[i]):
            return False
    return len(parts) == count


def overlap(first: str, second: str) -> bool:
    """Is there a topic name that both filters (valid, not shared) match?"""
    if _dollar_excluded(first, second) or _dollar_excluded(second, first):
        return False
    if {first, second} == {"+", "/#"}:
        return False  # the one topic both match would be "", which is no topic name
    a, b = first.split("/"), second.split("/")
    for i in range(min(len(a), len(b))):
        if a[i] == "#" or b[i] == "#":
            return True
        if a[i] != b[i] and a[i] != "+" and b[i] != "+":
            return False
    # One filter ran out: the other matches a topic that ends here only through `/#`.
    longer = a if len(a) > len(b) else b
    return abs(len(a) - len(b)) <= 1 and (len(a) == len(b) or longer[-1] == "#")


def covers(outer: str, inner: str) -> bool:
    """Does `outer` match every topic name that `inner` matches (both valid, not shared)?"""
    if _dollar_excluded(outer, inner):
        return False
    a, b = outer.split("/"), inner.split("/")
    for i, level in enumerate(a):
        if level == "#":
            return True
        if i >= len(b):
            return False
        if b[i] == "#":
            # `inner` matches any further levels, and none unless that leaves "" (no topic):
            # only `+/#` takes every further level and never none.
            return a[i:] == ["+", "#"] and not "/".join(b[:i])
        if level != "+" and level != b[i]:
            return False
    return len(a) == len(b)


def _dollar_excluded(wild: str, literal: str) -> bool:
    """`wild` starts with a wildcard and `literal` only matches topics starting with `$`,
    which no such filter matches (MQTT-4.7.2-1)."""
    return wild[:1] in ("+", "#") and literal[:1] == "$"


class _Node(Generic[T]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: list[T] = []


class TopicMatcher(Generic[T]):
    """Topic filters -> values (a subscriber, a route, ...); `match(topic)` gives the values
    of every filter that matches, each filter's values in the order they were added."""

    __slots__ = ("_count", "_root")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, topic_filter: str, value: T) -> None:
        """Add `value` under `topic_filter` (ValueError when not a valid filter)."""
        if not is_topic_filter(topic_filter, shared=False):
            raise ValueError(f"invalid topic filter {topic_filter!r}")
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.values.append(value)
        self._count += 1

    def remove(self, topic_filter: str, value: T) -> bool:
        """Remove one `value` from `topic_filter`; False when it was not there."""
        path = [self._root]
        levels = topic_filter.split("/")
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        try:
            path[-1].values.remove(value)
        except ValueError:
            return False
        self._count -= 1
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.values or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def match(self, topic: str) -> list[T]:
        """The values of all filters matching the topic name `topic`."""
        return list(self.iter_match(topic))

    def iter_match(self, topic: str) -> Iterator[T]:
        levels = topic.split("/")
        count = len(levels)
        dollar = topic[:1] == "$"
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            children = node.children
            wild = i or not dollar
            if wild and "#" in children:
                yield from children["#"].values
            if i == count:
                yield from node.values
                continue
            if wild and "+" in children:
                stack.append((children["+"], i + 1))
            child = children.get(levels[i])
            if child is not None:
                stack.append((child, i + 1))
