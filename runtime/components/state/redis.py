"""`state.redis`: Dapr's Redis state store layout on a standalone Redis or a Redis Cluster.

Storage (as Dapr's, so both can share a database): each item is a hash at its key
(`appid||key`, namespaced by the API layer) with the fields `data` (the value's bytes) and
`version` (an integer that grows with every write); the etag is the version. Unlike Dapr's
(which starts at 1), a new item's version starts at the Redis clock in microseconds, so an
item deleted and written again never gets an etag it had before. A plain string left at a
key is read as a value without etag and replaced by the next write.

Concurrency (the contract of runtime/components/api.py): an etag, when given, must equal
the stored version (a missing item matches no etag); first-write without an etag means the
item must not exist yet; last-write without an etag overwrites. Etags that are not integers
raise EtagInvalid. Every check and write runs in one Lua script, so it is atomic; a
transaction is one script that checks every operation (in order, as the earlier ones would
leave the items) before it writes anything: all or nothing.

TTL: `ttlInSeconds` (request, or component default) becomes PEXPIRE in the same script; a
write without TTL makes the item persistent (PERSIST); `ttlExpireTime` (RFC 3339, UTC) is
returned by get when the item expires.

Metadata: the connection keys of runtime/components/redis_common.py, and `ttlInSeconds`
(default TTL of every write; -1 or absent: forever).

Connection: on a standalone server every call goes through one pipelined connection
(runtime/components/redis_pipe.py: commands in order, replies read by hiredis, a deadline per
connection instead of per call), which needs no task, so the store `runs_inline`; reads are
tried again after a lost connection, writes only when the server had closed the connection
while it was quiet. A Redis Cluster is reached through redis-py's cluster client, each call
under `guarded`.

Redis Cluster (`redisType: cluster`): single-key operations and bulk operations go to each
key's node. A transaction is one script, so all its keys must hash to one slot: give them a
common hash tag, e.g. `order{42}-head` and `order{42}-lines`; otherwise transact() raises
ComponentError and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.components.api import (
    Concurrency,
    DeleteRequest,
    Metadata,
    SetRequest,
    StateFeature,
    StateItem,
    StateOperation,
)
from runtime.components.errors import BadMetadata, ComponentError, EtagInvalid, EtagMismatch
from runtime.components.redis_common import (
    RedisBacked,
    Script,
    guarded,
    parse_settings,
    same_slot,
)
from runtime.components.redis_pipe import RedisPipe, ReplyError, retryable

# KEYS[i] is the item of operation i; ARGV holds five values per operation:
# kind ("set" | "del"), etag ("" = none), first-write ("1" | "0"), value, ttl in ms ("" = none).
# Phase one checks every operation against the versions the earlier ones would leave and
# plans the new versions; phase two writes. Nothing is written unless every check passed.
# A new version is the old one + 1, but at least the server clock in microseconds, so an
# item deleted and written again never gets back an etag it had before.
_WRITE = Script("""
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local versions, planned = {}, {}
local function current(key)
  if versions[key] == nil then
    local kind = redis.call("TYPE", key)["ok"]
    if kind == "none" then versions[key] = false
    elseif kind == "hash" then versions[key] = redis.call("HGET", key, "version") or ""
    else versions[key] = "" end
  end
  return versions[key]
end
for i = 1, #KEYS do
  local at = (i - 1) * 5
  local etag, cur = ARGV[at + 2], current(KEYS[i])
  if etag ~= "" then
    if cur ~= etag then return {"mismatch", i} end
  elseif ARGV[at + 3] == "1" and cur then
    return {"mismatch", i}
  end
  if ARGV[at + 1] == "set" then
    planned[i] = string.format("%.0f", math.max((tonumber(cur) or 0) + 1, now))
    versions[KEYS[i]] = planned[i]
  else
    versions[KEYS[i]] = false
  end
end
for i = 1, #KEYS do
  local at, key = (i - 1) * 5, KEYS[i]
  if planned[i] then
    local kind = redis.call("TYPE", key)["ok"]
    if kind ~= "hash" and kind ~= "none" then redis.call("DEL", key) end
    redis.call("HSET", key, "data", ARGV[at + 4], "version", planned[i])
    local ttl = tonumber(ARGV[at + 5])
    if ttl and ttl > 0 then redis.call("PEXPIRE", key, ttl) else redis.call("PERSIST", key) end
  else
    redis.call("DEL", key)
  end
end
return {"ok"}
""")

# data, version (false for a plain string), milliseconds to live (-1: forever); nil if absent.
_READ = Script("""
local kind = redis.call("TYPE", KEYS[1])["ok"]
if kind == "none" then return false end
if kind == "string" then
  return {redis.call("GET", KEYS[1]), false, redis.call("PTTL", KEYS[1])}
end
local item = redis.call("HMGET", KEYS[1], "data", "version")
if not item[1] then return false end
return {item[1], item[2], redis.call("PTTL", KEYS[1])}
""")


class RedisStateStore(RedisBacked):
    features = StateFeature.ETAG | StateFeature.TRANSACTIONAL | StateFeature.TTL
    kind = "redis state store"

    def __init__(self) -> None:
        super().__init__()
        self._default_ttl: float | None = None
        self._pipe: RedisPipe | None = None
        """A standalone server's connection (runtime/components/redis_pipe.py); a cluster's
        calls go through redis-py's cluster client instead."""
        self.runs_inline = False
        """True on a standalone server: the pipe needs no task (components/api.py)."""

    async def init(self, metadata: Metadata) -> None:
        try:
            self._default_ttl = _ttl_value(metadata.get("ttlInSeconds"))
        except ComponentError as error:
            raise BadMetadata("ttlInSeconds", error.message) from None
        settings = parse_settings(metadata)
        if settings.cluster:
            await super().init(metadata)
            return
        self._settings = settings
        self._pipe = RedisPipe(settings)
        self.runs_inline = True
        await self.ping()

    async def ping(self) -> None:
        if self._pipe is None:
            await super().ping()
            return
        reply = await self._pipe.call("PING", what="ping", idempotent=True)
        if isinstance(reply, ReplyError):
            raise ComponentError(f"redis: ping: {reply}")

    async def close(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            await pipe.close()
        await super().close()

    # -- reads --------------------------------------------------------------------------------

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        pipe = self._pipe
        if pipe is not None:
            return _item(key, await pipe.script(_READ, (key,), (), f"get {key!r}", True))
        async with guarded(f"get {key!r}", self._settings.deadline):
            reply = await _READ(self._connected(), [key], [])
        return _item(key, reply)

    async def bulk_get(self, keys: Sequence[str], metadata: Metadata) -> list[StateItem]:
        if not keys:
            return []
        what = f"bulk get of {len(keys)} keys"
        if self._pipe is not None:
            commands = [("EVAL", _READ.source, 1, key) for key in keys]
            replies = await self._pipe.calls(commands, what, idempotent=True)
            for reply in replies:
                if isinstance(reply, ReplyError):
                    raise ComponentError(f"redis: {what}: {reply}", retryable=retryable(reply))
        else:
            async with guarded(what, self._settings.deadline):
                pipe = self._connected().pipeline(transaction=False)
                for key in keys:
                    pipe.eval(_READ.source, 1, key)
                replies = await pipe.execute()
        return [_item(key, reply) for key, reply in zip(keys, replies, strict=True)]

    # -- writes --------------------------------------------------------------------------------

    async def set(self, request: SetRequest) -> None:
        await self._write([request], f"set {request.key!r}")

    async def delete(self, request: DeleteRequest) -> None:
        await self._write([request], f"delete {request.key!r}")

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        await self._bulk(requests, "bulk set")

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        await self._bulk(requests, "bulk delete")

    async def transact(self, operations: Sequence[StateOperation], metadata: Metadata) -> None:
        if not operations:
            return
        keys = [operation.key for operation in operations]
        if self._settings.cluster and not same_slot(keys):
            raise ComponentError(
                "redis cluster: the keys of one transaction must hash to the same slot; give "
                "them a common {hash tag}, e.g. 'order{42}-a' and 'order{42}-b' "
                f"(keys: {', '.join(repr(key) for key in keys[:5])})",
                retryable=False,
            )
        await self._write(list(operations), f"transaction of {len(operations)} operations")

    async def _write(self, operations: list[StateOperation], what: str) -> None:
        keys, args = self._encode(operations)
        if self._pipe is not None:
            reply = await self._pipe.script(_WRITE, keys, args, what)
        else:
            async with guarded(what, self._settings.deadline):
                reply = await _WRITE(self._connected(), keys, args)
        _check(reply, keys)

    async def _bulk(self, requests: Sequence[StateOperation], what: str) -> None:
        """Each item on its own (not atomic); the first failure is raised after all ran."""
        errors: dict[int, ComponentError] = {}
        encoded: dict[int, tuple[list[str], list[Any]]] = {}
        for index, request in enumerate(requests):
            try:
                encoded[index] = self._encode([request])
            except ComponentError as error:
                errors[index] = error
        if encoded:
            replies = await self._bulk_writes(list(encoded.values()), what)
            for (index, (keys, _)), reply in zip(encoded.items(), replies, strict=True):
                try:
                    _check(reply, keys)
                except ComponentError as error:
                    errors[index] = error
        if errors:
            raise errors[min(errors)]

    async def _bulk_writes(self, encoded: list[tuple[list[str], list[Any]]], what: str
                           ) -> list[Any]:  # fmt: skip
        """The write script's reply (or error) for each (keys, args), in one pipeline."""
        if self._pipe is not None:
            commands = [("EVAL", _WRITE.source, 1, *keys, *args) for keys, args in encoded]
            return await self._pipe.calls(commands, what)
        async with guarded(what, self._settings.deadline):
            pipe = self._connected().pipeline(transaction=False)
            for keys, args in encoded:
                pipe.eval(_WRITE.source, 1, *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _encode(self, operations: Sequence[StateOperation]) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = []
        for operation in operations:
            etag = _etag(operation.key, operation.etag)
            first = "1" if operation.concurrency is Concurrency.FIRST_WRITE else "0"
            keys.append(operation.key)
            if isinstance(operation, SetRequest):
                args += ["set", etag, first, operation.value, self._ttl_ms(operation)]
            else:
                args += ["del", etag, first, b"", ""]
        return keys, args

    def _ttl_ms(self, request: SetRequest) -> str:
        ttl = request.ttl
        if ttl is None:
            ttl = _ttl_value(request.metadata.get("ttlInSeconds"))
        if ttl is None:
            ttl = self._default_ttl
        if ttl is None or not 0 < ttl < math.inf:
            return ""
        return str(max(1, math.ceil(ttl * 1000)))


def _etag(key: str, etag: str | None) -> str:
    if not etag:
        return ""
    if not etag.isascii() or not etag.isdigit():
        raise EtagInvalid(key, etag)
    return str(int(etag))


def _ttl_value(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise ComponentError(
            f"ttlInSeconds: expected a number of seconds, got {value!r}", retryable=False
        ) from None


def _check(reply: Any, keys: list[str]) -> None:
    if isinstance(reply, Exception):
        raise ComponentError(f"redis: write of {keys[0]!r}: {reply}", retryable=False)
    if not isinstance(reply, list) or not reply:
        raise ComponentError(f"redis: unexpected reply to a state write: {reply!r}")
    if reply[0] == b"mismatch":
        raise EtagMismatch(keys[int(reply[1]) - 1])


def _item(key: str, reply: Any) -> StateItem:
    if not reply:
        return StateItem(key=key, value=None)
    data, version, pttl = reply
    metadata = {}
    if isinstance(pttl, int) and pttl > 0:
        expires = datetime.now(UTC) + timedelta(milliseconds=pttl)
        metadata["ttlExpireTime"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    etag = version.decode() if isinstance(version, bytes) else None
    return StateItem(key=key, value=bytes(data), etag=etag, metadata=metadata)
