"""`bindings.redis`: Dapr's Redis output binding on a standalone Redis or a Redis Cluster.

Operations (the request's metadata `key` names the Redis key; required):

| operation | Redis | response data |
| --- | --- | --- |
| `create` | SET key data, with EX when metadata `ttlInSeconds` > 0 | empty |
| `get` | GET key | the value (empty when the key does not exist) |
| `delete` | DEL key | empty |
| `increment` | INCR key, then EXPIRE when `ttlInSeconds` > 0 | the new value (Dapr: empty) |

Metadata: the connection keys of runtime/components/redis_common.py.
"""

from __future__ import annotations

from typing import Any

from runtime.components.api import BindingResponse, Metadata
from runtime.components.errors import ComponentError, NotSupported
from runtime.components.redis_common import (
    RedisBacked,
    guarded,
)


class RedisOutputBinding(RedisBacked):
    kind = "redis binding"
    operations = ("create", "get", "delete", "increment")

    async def invoke(self, operation: str, data: bytes, metadata: Metadata) -> BindingResponse:
        if operation not in self.operations:
            raise NotSupported(f"operation {operation!r}", "bindings.redis")
        key = metadata.get("key", "")
        if not key:
            raise ComponentError("bindings.redis: metadata 'key' is required", retryable=False)
        ttl = _ttl(metadata.get("ttlInSeconds", ""))
        client = self._connected()
        async with guarded(f"{operation} {key!r}", self._settings.deadline):
            if operation == "create":
                await client.set(key, data, ex=ttl)
            elif operation == "get":
                value: Any = await client.get(key)
                return BindingResponse(data=value or b"")
            elif operation == "delete":
                await client.delete(key)
            else:
                value = await client.incr(key)
                if ttl:
                    await client.expire(key, ttl)
                return BindingResponse(data=str(value).encode())
        return BindingResponse()


def _ttl(value: str) -> int | None:
    if not value.strip():
        return None
    try:
        ttl = int(value)
    except ValueError:
        raise ComponentError(
            f"bindings.redis: metadata 'ttlInSeconds' must be an integer, got {value!r}",
            retryable=False,
        ) from None
    return ttl if ttl > 0 else None
