"""Typed values from a component's metadata (all strings, as Dapr gives them).

An empty or missing value means the default; a value that does not parse raises
`BadMetadata` naming the key, so a bad component fails at init with a clear message.
"""

from __future__ import annotations

from proxy.config.units import parse_duration, parse_size
from runtime.components.api import Metadata
from runtime.components.errors import BadMetadata

# What Dapr accepts as truthy (its utils.IsTruthy), and the matching falsy words.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def text(metadata: Metadata, key: str) -> str | None:
    return metadata.get(key, "").strip() or None


def flag(metadata: Metadata, key: str, default: bool = False) -> bool:
    value = metadata.get(key, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadMetadata(key, f"expected true or false, got {metadata[key]!r}")


def integer(metadata: Metadata, key: str, default: int, minimum: int | None = None) -> int:
    value = metadata.get(key, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.lstrip("-").isdigit()):
        raise BadMetadata(key, f"expected an integer, got {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise BadMetadata(key, f"must be at least {minimum}, got {number}")
    return number


def duration(metadata: Metadata, key: str, default: float, positive: bool = False) -> float:
    """Seconds from `250ms`, `5s`, `1m` or a plain number of seconds."""
    value = metadata.get(key, "").strip()
    if not value:
        return default
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise BadMetadata(key, str(error)) from None
    if positive and seconds <= 0:
        raise BadMetadata(key, "must be positive")
    return seconds


def size(metadata: Metadata, key: str, default: int) -> int:
    """Bytes from `64KiB`, `1MB` or a plain number; zero or less is refused."""
    value = metadata.get(key, "").strip()
    if not value:
        return default
    try:
        number = parse_size(value)
    except ValueError as error:
        raise BadMetadata(key, str(error)) from None
    if number <= 0:
        raise BadMetadata(key, "must be positive")
    return number


def choice(metadata: Metadata, key: str, choices: dict[str, int], default: int) -> int:
    value = metadata.get(key, "").strip()
    if not value:
        return default
    if value not in choices:
        raise BadMetadata(key, f"one of {', '.join(choices)}, not {value!r}")
    return choices[value]
