"""`sequencer.redis`: Layotto's Redis sequencer, INCR per key on a standalone Redis or a
Redis Cluster.

Each sequence is the integer at its key (as given: the API layer namespaces it); INCR makes
ids strictly increasing per key, starting at 1, and they survive restarts of mecha (and of
Redis, as far as its persistence is configured).

Metadata: the connection keys of runtime/components/redis_common.py.
"""

from __future__ import annotations

from runtime.components.api import Metadata
from runtime.components.redis_common import (
    RedisBacked,
    guarded,
)


class RedisSequencer(RedisBacked):
    kind = "redis sequencer"

    async def next_id(self, key: str, metadata: Metadata) -> int:
        async with guarded(f"next id of {key!r}", self._settings.deadline):
            return int(await self._connected().incr(key))
