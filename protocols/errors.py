"""The root of every codec's error type."""

from __future__ import annotations


class ProtocolError(Exception):
    """Input that a codec cannot accept; `reason` says why in a way fit for a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
