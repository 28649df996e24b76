"""`sequencer.in-memory`: ids strictly increasing per key, starting at 1 (Layotto's in-memory
sequencer). Held in this process only: a new instance starts every key at 1 again.
"""

from __future__ import annotations

from runtime.components.api import Metadata
from runtime.components.errors import ComponentError


class InMemorySequencer:
    runs_inline = True

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._open = False

    async def init(self, metadata: Metadata) -> None:
        self._open = True

    async def ping(self) -> None:
        if not self._open:
            raise ComponentError("in-memory sequencer is not initialised (or closed)")

    async def close(self) -> None:
        self._open = False
        self._last.clear()

    async def next_id(self, key: str, metadata: Metadata) -> int:
        value = self._last.get(key, 0) + 1
        self._last[key] = value
        return value
