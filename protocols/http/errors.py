"""Errors of the HTTP codecs, each with the status a server should answer with."""

from __future__ import annotations

from protocols.errors import ProtocolError


class HttpError(ProtocolError):
    """Malformed or unacceptable HTTP. `status` is the response to send (when one can be)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status
