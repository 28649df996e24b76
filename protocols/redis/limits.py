"""Bounds on what one RESP connection may make the codecs accept or buffer."""

from __future__ import annotations

from dataclasses import dataclass

INT_MAX = (1 << 31) - 1
"""Redis refuses a multibulk count above this whatever its configuration."""


@dataclass(frozen=True, slots=True)
class RespLimits:
    """Limits shared by RequestParser and ReplyParser (Redis's defaults where it has one).

    Beyond a limit the parsers raise RespError as soon as the header that declares the
    size has arrived, never after buffering the payload.
    """

    max_bulk: int = 512 * 1024 * 1024
    """Length of one bulk string (proto-max-bulk-len) -> "invalid bulk length"."""
    max_array: int = 1024 * 1024
    """Elements of one command or aggregate reply -> "invalid multibulk length"."""
    max_inline: int = 64 * 1024
    """Bytes of one inline command line (PROTO_INLINE_MAX_SIZE) or one reply line."""
    max_nesting: int = 64
    """Depth of nested aggregates in a reply."""
    max_reply: int = 1024 * 1024 * 1024
    """Total bytes of one reply."""


DEFAULT_LIMITS = RespLimits()
