"""The one error type of the RESP codecs."""

from __future__ import annotations

from protocols.errors import ProtocolError
from protocols.redis.encode import error_span


class RespError(ProtocolError):
    """Input a RESP codec refuses. `reason` is Redis's text, e.g. "invalid bulk length".

    A server answers `-ERR Protocol error: <reason>` (see `reply`) and closes. `commands`
    (RequestParser) and `replies` (ReplyParser) hold what the same `feed` call completed
    before the error: Redis runs the commands that precede a protocol error in a pipeline.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.commands: list[list[bytes]] = []
        self.replies: list[bytes] = []

    @property
    def reply(self) -> bytes:
        """The error reply a server sends before closing the connection."""
        return error_span(f"Protocol error: {self.reason}")
