"""`configuration.redis`: Dapr's Redis configuration store on a standalone Redis (or a Redis
Cluster).

Layout (Dapr's): the configuration item `name` is the string key `name`, holding
`value||version` (or just `value`; as in Dapr, the text is split at `||` and the first two
parts are the value and the version). get() with no keys returns every string key (SCAN);
keys of other types are skipped.

subscribe() listens to keyspace notifications (`__keyspace@<db>__:<key>`, or the pattern
`__keyspace@<db>__:*` for all keys) and calls the handler with the changed item, read again
after the event; a deleted or expired key is reported with an empty value and the metadata
`deleted: true` (Dapr reports it as a null item). Redis sends no notifications unless
`notify-keyspace-events` enables them: by default mecha adds `KEA` to the server's setting
(CONFIG SET) whenever a subscription (re)connects; where CONFIG is not allowed (managed Redis)
set `enableKeyspaceEvents: false` and configure the server yourself. In a Redis Cluster
every primary emits the events of its own keys: a subscription listens to each primary
known when it starts (a later failover is not followed).

Metadata: the connection keys of runtime/components/redis_common.py, and
`enableKeyspaceEvents` (default true).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from runtime.components.api import (
    ConfigurationHandler,
    ConfigurationItem,
    Metadata,
)
from runtime.components.errors import ComponentError
from runtime.components.metadata import flag
from runtime.components.redis_common import (
    Client,
    RedisSettings,
    close,
    guarded,
    parse_settings,
    ping,
    stop_tasks,
    text,
)

log = logging.getLogger(__name__)

_NO_CHANGE = {"expire", "persist"}
"""Keyspace events that leave the value as it was."""


class RedisConfigurationStore:
    def __init__(self) -> None:
        self._client: Client | None = None
        self.settings = RedisSettings(hosts=(("localhost", 6379),))
        self.enable_events = True
        self._subscriptions: set[_KeyspaceSubscription] = set()

    async def init(self, metadata: Metadata) -> None:
        self.settings = parse_settings(metadata)
        self.enable_events = flag(metadata, "enableKeyspaceEvents", True)
        self._client = self.settings.connect()
        await ping(self._client, self.settings)

    async def ping(self) -> None:
        await ping(self.client, self.settings)

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        await close(self._client)
        self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ComponentError("redis configuration store is not initialised (or closed)")
        return self._client

    async def get(self, keys: Sequence[str], metadata: Metadata) -> dict[str, ConfigurationItem]:
        async with guarded("configuration get", self.settings.deadline):
            names = list(keys) or [text(k) async for k in self.client.scan_iter(_type="string")]
            if not names:
                return {}
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
            values = await pipe.execute(raise_on_error=False)
        items = {}
        for name, value in zip(names, values, strict=True):
            if isinstance(value, redis.exceptions.ResponseError) and "WRONGTYPE" in str(value):
                continue
            if isinstance(value, Exception):
                raise ComponentError(f"redis: configuration get of {name!r}: {value}")
            if value is not None:
                items[name] = _item(text(value))
        return items

    async def subscribe(
        self, keys: Sequence[str], handler: ConfigurationHandler, metadata: Metadata
    ) -> _KeyspaceSubscription:
        subscription = _KeyspaceSubscription(self, list(keys), handler)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: _KeyspaceSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def turn_on_events(self, node: Redis) -> None:
        """Add KEA to the node's notify-keyspace-events; a refusal is logged, not raised."""
        if not self.enable_events:
            return
        async with guarded("configure keyspace events", self.settings.deadline):
            try:
                current = (await node.config_get("notify-keyspace-events")).get(
                    "notify-keyspace-events", ""
                )
                wanted = "".join(sorted(set(text(current)) | set("KEA")))
                if set(wanted) != set(text(current)):
                    await node.config_set("notify-keyspace-events", wanted)
            except redis.exceptions.ResponseError as error:
                log.warning("cannot enable keyspace events (%s); configure the server", error)


class _KeyspaceSubscription:
    def __init__(
        self, store: RedisConfigurationStore, keys: list[str], handler: ConfigurationHandler
    ) -> None:
        self.store = store
        self.keys = keys
        self.handler = handler
        self.own_clients: list[Redis] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            for i, node in enumerate(await self.nodes()):
                listener = _NodeListener(self, node)
                try:  # the first subscribe must work: errors go to the caller
                    await listener.setup()
                except BaseException:
                    await listener.pubsub.aclose()
                    raise
                name = f"redis-configuration:{id(self):x}:node-{i}"
                self.tasks.append(asyncio.create_task(listener.run(), name=name))
        except BaseException:
            await self.cancel()
            raise

    async def nodes(self) -> list[Redis]:
        client, settings = self.store.client, self.store.settings
        if isinstance(client, Redis):
            return [client]
        async with guarded("cluster nodes", settings.deadline):
            await client.initialize()
        for primary in client.get_primaries():
            node = Redis(host=primary.host, port=int(primary.port), password=settings.password,
                         username=settings.username, socket_timeout=settings.timeout,
                         socket_connect_timeout=settings.timeout)  # fmt: skip
            self.own_clients.append(node)
        return self.own_clients

    def channels(self) -> list[str]:
        db = 0 if self.store.settings.cluster else self.store.settings.db
        prefix = f"__keyspace@{db}__:"
        return [prefix + key for key in self.keys] if self.keys else [prefix + "*"]

    async def changed(self, message: dict[str, Any]) -> None:
        channel, event = text(message.get("channel")), text(message.get("data"))
        key = channel.split("__:", 1)[1] if "__:" in channel else ""
        if not key or event in _NO_CHANGE:
            return
        try:
            items = await self.store.get([key], {})
        except ComponentError as error:
            log.warning("configuration change of %r not read: %s", key, error.message)
            return
        if key not in items:
            items = {key: ConfigurationItem(value="", metadata={"deleted": "true"})}
        try:
            await self.handler(items)
        except Exception:
            log.exception("configuration subscriber failed on %r", key)

    async def cancel(self) -> None:
        await stop_tasks(self.tasks)
        for node in self.own_clients:
            await node.aclose()
        self.own_clients.clear()
        self.store.forget(self)


class _NodeListener:
    """The keyspace events of one Redis node, re-subscribed after each reconnect."""

    def __init__(self, subscription: _KeyspaceSubscription, node: Redis) -> None:
        self.subscription = subscription
        self.node = node
        self.pubsub = node.pubsub()  # confirmations are read: see confirmed()
        self.dirty = True

    def on_connect(self, connection: object) -> None:
        # redis-py re-subscribes by itself; the server may have lost its config (restart).
        self.dirty = True

    async def setup(self) -> None:
        store = self.subscription.store
        await store.turn_on_events(self.node)
        async with guarded("subscribe to keyspace events", store.settings.deadline):
            channels = self.subscription.channels()
            if self.subscription.keys:
                await self.pubsub.subscribe(*channels)
            else:
                await self.pubsub.psubscribe(*channels)
            early = await self.confirmed(len(channels), store.settings.deadline)
        connection: Any = self.pubsub.connection  # typed None until the first subscribe
        if connection is not None:
            connection.register_connect_callback(self.on_connect)
        self.dirty = False
        for message in early:
            await self.subscription.changed(message)

    async def confirmed(self, count: int, deadline: float) -> list[dict[str, Any]]:
        """Wait until Redis confirmed the subscriptions (a change made after subscribe()
        returned is then certain to be seen); returns the notifications read meanwhile."""
        early = []
        while count:
            message = await self.pubsub.get_message(timeout=deadline)
            if message is None:
                raise ComponentError("redis: no confirmation of the keyspace subscription")
            if message["type"] in ("subscribe", "psubscribe"):
                count -= 1
            elif message["type"] in ("message", "pmessage"):
                early.append(message)
        return early

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self.step()
                    failures = 0
                except Exception as error:  # the listener must outlive any failure
                    failures += 1
                    self.dirty = True
                    unexpected = not isinstance(error, ComponentError)
                    log.warning("keyspace events: %s", error, exc_info=unexpected)
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
        finally:
            await self.pubsub.aclose()

    async def step(self) -> None:
        if self.dirty:
            await self.setup()
        deadline = 1.0 + self.subscription.store.settings.deadline
        async with guarded("keyspace events", deadline):
            message = await self.pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] in ("message", "pmessage"):
            await self.subscription.changed(message)


def _item(raw: str) -> ConfigurationItem:
    parts = raw.split("||")
    return ConfigurationItem(value=parts[0], version=parts[1] if len(parts) > 1 else "")
