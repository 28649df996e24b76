"""`lock.redis`: Dapr's Redis lock (one key per resource) with fencing tokens, on a
standalone Redis or a Redis Cluster.

A lock is the key `resource_id` holding its owner, set with SET NX PX (Dapr's layout).
Granting it also increments the resource's fencing counter in the same Lua script, so the
token returned is strictly increasing per resource across grants, expiries and restarts of
mecha. The counter lives at `{<resource_id>}||fence` — in the same Redis Cluster slot as the
lock — or at `<resource_id>||fence` when the id already carries a {hash tag}. It never
expires, like Dapr's sequencer keys. unlock and renew check the owner in Lua and answer with
Dapr's UnlockStatus numbers; try_lock by the current owner fails (locks are not re-entrant).

Metadata: the connection keys of runtime/components/redis_common.py. In cluster mode a
resource id that contains `}` but no valid {hash tag} is refused (its counter could not be
placed in the lock's slot).
"""

from __future__ import annotations

import math

from runtime.components.api import LockResult, UnlockStatus
from runtime.components.errors import ComponentError
from runtime.components.redis_common import (
    RedisBacked,
    Script,
    guarded,
    hash_tag,
)

_TRY_LOCK = Script("""
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return redis.call("INCR", KEYS[2])
end
return 0
""")

# Dapr's numbers: 0 success, 1 the lock does not exist, 2 it belongs to someone else.
_UNLOCK = Script("""
local owner = redis.call("GET", KEYS[1])
if not owner then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call("DEL", KEYS[1])
return 0
""")

_RENEW = Script("""
local owner = redis.call("GET", KEYS[1])
if not owner then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 0
""")


class RedisLockStore(RedisBacked):
    kind = "redis lock store"

    async def try_lock(self, resource_id: str, owner: str, expiry: float) -> LockResult:
        fence = self.fence_key(resource_id)
        async with guarded(f"lock {resource_id!r}", self._settings.deadline):
            token = await _TRY_LOCK(
                self._connected(), [resource_id, fence], [owner, _milliseconds(expiry)]
            )
        return LockResult(success=int(token) > 0, fencing_token=int(token))

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus:
        async with guarded(f"unlock {resource_id!r}", self._settings.deadline):
            status = await _UNLOCK(self._connected(), [resource_id], [owner])
        return UnlockStatus(int(status))

    async def renew(self, resource_id: str, owner: str, expiry: float) -> UnlockStatus:
        async with guarded(f"renew {resource_id!r}", self._settings.deadline):
            status = await _RENEW(self._connected(), [resource_id], [owner, _milliseconds(expiry)])
        return UnlockStatus(int(status))

    def fence_key(self, resource_id: str) -> str:
        """The fencing counter's key, in the lock key's cluster slot."""
        if hash_tag(resource_id) is not None:
            return f"{resource_id}||fence"
        if "}" not in resource_id:
            return f"{{{resource_id}}}||fence"
        if self._settings.cluster:
            raise ComponentError(
                f"redis cluster: lock resource id {resource_id!r} has a '}}' but no {{hash tag}}",
                retryable=False,
            )
        return f"{resource_id}||fence"


def _milliseconds(seconds: float) -> int:
    if not 0 < seconds < math.inf:
        raise ComponentError(
            f"lock expiry must be a positive number of seconds, got {seconds!r}", retryable=False
        )
    return max(1, math.ceil(seconds * 1000))
