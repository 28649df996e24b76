"""Value grammars the HTTP stream filters share: string lists, header names and values, percents.

Each reader records problems on the given `Node` (with the YAML path) and returns a
harmless placeholder, like the typed getters of `proxy.config.reader`.
"""

from __future__ import annotations

import re

from proxy.config.reader import Node

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
"""RFC 9110 token, lowercase: what a header name may be once lowercased."""
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters (HTAB is allowed) that would break or smuggle a header line."""


def string_list(node: Node, key: str) -> list[str]:
    """A list of strings, or one comma-separated string (what a `${VAR}` expands to)."""
    raw = node.child(key).value
    if raw is None:
        return []
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list):
        node.problem("expected a list of strings or one comma-separated string", key)
        return []
    result: list[str] = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            result.append(item)
        else:
            node.problem(f"expected a string, got {type(item).__name__}", f"{key}[{index}]")
    return result


def header_name(node: Node, key: str, text: str) -> bytes:
    """`text` as a lowercase header name; pseudo-headers and non-tokens are reported."""
    name = text.strip().lower()
    if not _TOKEN.fullmatch(name):
        node.problem(f"{text!r} is not a valid header name", key)
    return name.encode("ascii", "replace")


def header_names(node: Node, key: str) -> tuple[bytes, ...]:
    return tuple(header_name(node, key, text) for text in string_list(node, key))


def header_value(node: Node, key: str, text: str) -> bytes:
    """`text` as a header value: control characters (CR, LF, NUL, ...) are reported."""
    if _BAD_VALUE.search(text):
        node.problem("a header value must not contain control characters", key)
    return text.strip(" \t").encode()


def percentage(node: Node, key: str, default: float = 100.0) -> float:
    """A percentage from 0 to 100; fractions are allowed (0.5 is one request in 200)."""
    return node.number(key, default, minimum=0, maximum=100)
