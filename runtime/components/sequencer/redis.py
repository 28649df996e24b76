"""`sequencer.redis`: Layotto's Redis sequencer, INCR per key on a standalone Redis or a
Redis Cluster.

Each sequence is the integer at its key (as given: the API layer namespaces it); INCR makes
ids strictly increasing per key, starting at 1, and they survive restarts of mecha (and of
Redis, as far as its persistence is configured).

Metadata: the connection keys of runtime/components/redis_common.py.
"""

from __future__ import annotations

from runtime.components.api import Metadata
from runtime.components.errors import ComponentError
from runtime.components.redis_common import (
    Client,
    RedisSettings,
    close,
    guarded,
    parse_settings,
    ping,
)


class RedisSequencer:
    def __init__(self) -> None:
        self._client: Client | None = None
        self._settings = RedisSettings(hosts=(("localhost", 6379),))

    async def init(self, metadata: Metadata) -> None:
        self._settings = parse_settings(metadata)
        self._client = self._settings.connect()
        await ping(self._client, self._settings)

    async def ping(self) -> None:
        await ping(self._connected(), self._settings)

    async def close(self) -> None:
        await close(self._client)
        self._client = None

    async def next_id(self, key: str, metadata: Metadata) -> int:
        async with guarded(f"next id of {key!r}", self._settings.deadline):
            return int(await self._connected().incr(key))

    def _connected(self) -> Client:
        if self._client is None:
            raise ComponentError("redis sequencer is not initialised (or closed)")
        return self._client
