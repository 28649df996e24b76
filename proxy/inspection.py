"""Runs a listener's listener filters on a new connection, peeking at its first bytes.

Bytes are kept, not consumed: once every filter has decided, the connection hands them
to the chosen network filter chain as its first data. Bounded by the largest amount any
filter said it may need and by the listener's listener_filters_timeout.
"""

from __future__ import annotations

from collections.abc import Sequence

from filters.listener.api import CLOSE, CONTINUE, ConnectionMetadata, ListenerFilter


class Inspection:
    __slots__ = ("_filters", "_index", "_limit", "metadata", "prefix", "refused")

    def __init__(self, filters: Sequence[ListenerFilter], metadata: ConnectionMetadata) -> None:
        self._filters = list(filters)
        self._index = 0
        self._limit = max((f.max_bytes() for f in self._filters), default=0)
        self.metadata = metadata
        self.prefix = b""
        self.refused = False
        """A filter answered CLOSE: the connection must be closed."""

    def start(self) -> bool:
        """True when every filter decided without needing data (or one refused)."""
        while self._index < len(self._filters):
            status = self._filters[self._index].on_accept(self.metadata)
            if status is CLOSE:
                self.refused = True
                return True
            if status is not CONTINUE:
                return False
            self._index += 1
        return True

    def feed(self, data: bytes) -> bool:
        """True when every filter has decided (the prefix may have hit the limit)."""
        self.prefix += data
        while self._index < len(self._filters):
            status = self._filters[self._index].on_data(self.prefix, self.metadata)
            if status is CLOSE:
                self.refused = True
                return True
            if status is not CONTINUE and len(self.prefix) < self._limit:
                return False
            self._index += 1
        return True

    def end_of_input(self) -> None:
        """The client closed first: let every filter decide on what it has."""
        self._index = len(self._filters)
