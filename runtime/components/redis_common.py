"""What the Redis backends share: Dapr's connection metadata, one client for a standalone
server or a Redis Cluster, and the rule that a Redis failure becomes a ComponentError
within a bounded time.

Connection metadata (Dapr's names; every Redis component accepts them):

| key | meaning |
| --- | --- |
| `redisHost` | `host:port` (default port 6379); with `redisType: cluster` a comma list of seeds |
| `redisPassword`, `redisUsername` | AUTH credentials (ACL user needs Redis 6+) |
| `redisDB` | database number, standalone only (default 0) |
| `redisType` | `node` (default) or `cluster` |
| `redisMaxRetries` | retries of a command after a connection error (default 3, short backoff) |
| `timeout` | socket connect and read timeout, e.g. `5s`, `500ms` (default 5s) |
| `enableTLS`, `failover` | only `false`: TLS and Sentinel are refused with BadMetadata (not yet) |

redis-py reconnects by itself after a Redis restart; on top of that every operation runs
under a deadline of 2 x `timeout`, so an outage is an error quickly, never a hang. (The state
store on a standalone server uses its own pipelined connection, redis_pipe.py, with the same
deadline and retries.)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot

from runtime.components.api import Metadata
from runtime.components.errors import BadMetadata, ComponentError
from runtime.components.metadata import duration, flag, integer

Client = Redis | RedisCluster
"""Both kinds speak the same commands; cluster mode routes each by its key's slot."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    hosts: tuple[tuple[str, int], ...]
    cluster: bool = False
    password: str | None = None
    username: str | None = None
    db: int = 0
    timeout: float = 5.0
    max_retries: int = 3

    @property
    def deadline(self) -> float:
        """The longest any one operation may take before it fails."""
        return 2 * self.timeout

    def connect(self) -> Client:
        """A client (no I/O yet: the first command connects)."""
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), self.max_retries)
        common: dict[str, Any] = {
            "password": self.password, "username": self.username,
            "socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
            "retry": retry,
        }  # fmt: skip
        if self.cluster:
            nodes = [ClusterNode(host, port) for host, port in self.hosts]
            return RedisCluster(startup_nodes=nodes, **common)
        host, port = self.hosts[0]
        return Redis(host=host, port=port, db=self.db, **common)


def parse_settings(metadata: Metadata) -> RedisSettings:
    """The connection settings, or BadMetadata naming the key at fault."""
    for key in ("enableTLS", "failover"):
        if flag(metadata, key, False):
            raise BadMetadata(key, "not supported yet (TLS and Sentinel are not implemented)")
    kind = metadata.get("redisType", "node").strip().lower() or "node"
    if kind not in ("node", "cluster"):
        raise BadMetadata("redisType", f"expected 'node' or 'cluster', got {kind!r}")
    hosts = _hosts(metadata.get("redisHost", ""))
    if kind == "node" and len(hosts) != 1:
        raise BadMetadata("redisHost", "one host:port expected unless redisType is cluster")
    timeout = duration(metadata, "timeout", 5.0)
    if timeout <= 0:
        raise BadMetadata("timeout", "must be positive")
    return RedisSettings(
        hosts=hosts,
        cluster=kind == "cluster",
        password=metadata.get("redisPassword") or None,
        username=metadata.get("redisUsername") or None,
        db=integer(metadata, "redisDB", 0, minimum=0),
        timeout=timeout,
        max_retries=integer(metadata, "redisMaxRetries", 3, minimum=0),
    )


def _hosts(value: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "6379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadMetadata("redisHost", f"expected host:port, got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise BadMetadata("redisHost", "required (host:port)")
    return tuple(hosts)


# -- metadata values ---------------------------------------------------------------------------


# -- errors and deadlines --------------------------------------------------------------------


@asynccontextmanager
async def guarded(what: str, deadline: float) -> AsyncIterator[None]:
    """Run the body under `deadline` seconds; any Redis failure becomes a ComponentError."""
    try:
        async with asyncio.timeout(deadline):
            yield
    except TimeoutError:
        raise ComponentError(f"redis: {what} timed out after {deadline:g}s") from None
    except redis.exceptions.ResponseError as error:
        retryable = isinstance(error, (redis.exceptions.ClusterError, *_RETRYABLE_REPLIES))
        raise ComponentError(f"redis: {what}: {error}", retryable=retryable) from error
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as error:
        raise ComponentError(f"redis: {what}: {error or type(error).__name__}") from error
    except OSError as error:  # a socket error that redis-py let through
        raise ComponentError(f"redis: {what}: {error}") from error


_RETRYABLE_REPLIES = (
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)


class Script:
    """A Lua script run by EVALSHA, sent whole (EVAL, which caches it) only when the node
    answers NOSCRIPT: after a restart, a failover, or on a cluster node seen first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Client, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until they are done. Cancelling again every 100ms: on Python
    3.11, asyncio.wait_for (which redis-py uses to send a command) loses a cancellation that
    arrives just as the wrapped send completes, and the task would go on reading forever."""
    pending = {task for task in tasks if not task.done()}
    tasks.clear()
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)


async def ping(client: Client, settings: RedisSettings) -> None:
    async with guarded("ping", settings.deadline):
        await client.ping()


async def close(client: Client | None) -> None:
    if client is not None:
        await client.aclose()


class RedisBacked:
    """The connection half of a Redis component: `init` connects and pings, `close` closes;
    operations take `_connected()`, which refuses before init and after close."""

    kind = "redis component"
    """How errors name the component."""

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

    def _connected(self) -> Client:
        if self._client is None:
            raise ComponentError(f"{self.kind} is not initialised (or closed)")
        return self._client


def same_slot(keys: list[str]) -> bool:
    return len({key_slot(key.encode()) for key in keys}) <= 1


def hash_tag(key: str) -> str | None:
    """The {tag} Redis Cluster hashes instead of the whole key, if the key has one."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
