"""`pubsub.redis`: Dapr's Redis Streams pub/sub on a standalone Redis or a Redis Cluster.

A topic is a stream at the key of the topic's name. Publishing is XADD (field `data`, and
`metadata` as a JSON object when the publisher gave any), capped by `MAXLEN ~ maxLenApprox`
when set. Subscriptions read with XREADGROUP in a consumer group, which starts at the
beginning of the stream when it is created, as Dapr's does:

- a subscription with `consumerGroup` (or `queueGroup`) metadata is a consumer of that
  group of its own: the members of a group, in this mecha or another, compete for messages;
- the plain subscriptions of a topic share one consumer of the group `consumerID` (Dapr
  defaults it to the app id; mecha to "mecha"): the instances of one app compete, as with
  Dapr, and within this mecha every plain subscriber gets a copy. Such a message is
  acknowledged once every subscriber answered SUCCESS or DROP; one that answered RETRY gets
  it again, and the others do not.

A message is acknowledged (XACK) only after the handler answered SUCCESS or DROP; RETRY or
an exception leaves it pending. A reclaim loop runs every `redeliverInterval` and takes
over (XAUTOCLAIM) the messages pending longer than `processingTimeout`: those its consumer
left for a retry, and those a stopped or crashed consumer (of any mecha) never
acknowledged; `Message.attempt` is Redis's delivery count. Consumers are named
`<group>-<random>`; the reclaim loop also removes the group's consumers that hold nothing
and were idle for long.

Metadata: the connection keys of runtime/components/redis_common.py, and

| key | meaning |
| --- | --- |
| `consumerID` | the default consumer group (default "mecha") |
| `processingTimeout` | how long a message stays pending before it is redelivered (15s) |
| `redeliverInterval` | how often pending messages are looked for (60s) |
| `maxLenApprox` | cap the stream at about this many messages (default: no cap) |
| `queueDepth` | messages read ahead per consumer (default 100) |
| `concurrency` | messages handled at once per consumer (default 10) |

"0" in `processingTimeout` or `redeliverInterval` disables redelivery (as in Dapr). The
publisher's `contentType` metadata becomes the message's content type.
Dapr's `streamTTL` and its per-message `ttlInSeconds` are not implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from protocols import strict_json
from runtime.components.api import (
    Delivery,
    Message,
    MessageHandler,
    Metadata,
    PubSubFeature,
)
from runtime.components.errors import ComponentError
from runtime.components.metadata import duration, integer
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

_ACKED = (Delivery.SUCCESS, Delivery.DROP, None)
"""Outcomes that acknowledge a message (None: the subscriber left meanwhile)."""
_REMEMBERED = 10_000
"""Messages a shared consumer remembers partial acknowledgements of, at most."""
_PRUNE_AFTER = 600.0
"""Seconds a consumer that holds no message may stay idle before the reclaim loop removes it."""


class RedisStreamsPubSub:
    features = PubSubFeature.AT_LEAST_ONCE | PubSubFeature.DURABLE

    def __init__(self) -> None:
        self._client: Client | None = None
        self.settings = RedisSettings(hosts=(("localhost", 6379),))
        self.consumer_id = "mecha"
        self.processing_timeout = 15.0
        self.redeliver_interval = 60.0
        self.max_len = 0
        self.queue_depth = 100
        self.concurrency = 10
        self._consumers: set[_Consumer] = set()
        self._shared: dict[str, _Consumer] = {}
        """The consumer of each topic's plain subscriptions."""
        self._starting = asyncio.Lock()

    async def init(self, metadata: Metadata) -> None:
        self.settings = parse_settings(metadata)
        self.consumer_id = metadata.get("consumerID", "").strip() or "mecha"
        self.processing_timeout = duration(metadata, "processingTimeout", 15.0)
        self.redeliver_interval = duration(metadata, "redeliverInterval", 60.0)
        self.max_len = integer(metadata, "maxLenApprox", 0, minimum=0)
        self.queue_depth = integer(metadata, "queueDepth", 100, minimum=1)
        self.concurrency = integer(metadata, "concurrency", 10, minimum=1)
        self._client = self.settings.connect()
        await ping(self._client, self.settings)

    async def ping(self) -> None:
        await ping(self.client, self.settings)

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await self.retire(consumer)
        await close(self._client)
        self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ComponentError("redis pub/sub is not initialised (or closed)")
        return self._client

    async def publish(self, topic: str, data: bytes, metadata: Metadata) -> None:
        fields: dict[str, bytes | str] = {"data": data}
        if metadata:
            fields["metadata"] = strict_json.dumps(dict(metadata))
        cap = {"maxlen": self.max_len, "approximate": True} if self.max_len else {}
        async with guarded(f"publish to {topic!r}", self.settings.deadline):
            await self.client.xadd(topic, fields, **cap)  # type: ignore[arg-type]

    async def subscribe(
        self, topic: str, handler: MessageHandler, metadata: Metadata
    ) -> _Subscriber:
        self.client  # noqa: B018 -- refuse early when closed
        group = metadata.get("consumerGroup") or metadata.get("queueGroup")
        async with self._starting:
            consumer = None if group else self._shared.get(topic)
            if consumer is None:
                consumer = _Consumer(self, topic, group or self.consumer_id, shared=not group)
                await consumer.start()
                self._consumers.add(consumer)
                if not group:
                    self._shared[topic] = consumer
            return consumer.add(handler)

    async def retire(self, consumer: _Consumer) -> None:
        self._consumers.discard(consumer)
        if self._shared.get(consumer.topic) is consumer:
            del self._shared[consumer.topic]
        await consumer.stop()


class _Subscriber:
    """One subscription: a handler of a consumer (the only one, unless the consumer is shared)."""

    def __init__(self, consumer: _Consumer, handler: MessageHandler) -> None:
        self.consumer = consumer
        self.handler = handler
        self.calls: list[asyncio.Task[Delivery]] = []
        """Handler calls running in tasks of their own (shared consumers only)."""

    async def cancel(self) -> None:
        await self.consumer.remove(self)


class _Consumer:
    """One consumer of one group: a reader, a reclaimer and `concurrency` workers."""

    def __init__(self, owner: RedisStreamsPubSub, topic: str, group: str, shared: bool) -> None:
        self.owner = owner
        self.topic = topic
        self.group = group
        self.shared = shared
        self.name = f"{group}-{uuid.uuid4().hex[:12]}"
        self.subscribers: list[_Subscriber] = []
        self.queue: asyncio.Queue[tuple[bytes, dict[bytes, bytes], int]] = asyncio.Queue(
            owner.queue_depth
        )
        self.in_flight: set[bytes] = set()
        """Ids read or reclaimed and not yet handled: the reclaimer must not queue them twice."""
        self.handled: OrderedDict[bytes, set[_Subscriber]] = OrderedDict()
        """Shared consumers: who already acknowledged a message that another one retries."""
        self.tasks: list[asyncio.Task[None]] = []
        self.block_ms = max(10, int(min(1.0, owner.settings.timeout / 2) * 1000))
        self.last_prune = 0.0

    def add(self, handler: MessageHandler) -> _Subscriber:
        subscriber = _Subscriber(self, handler)
        self.subscribers.append(subscriber)
        return subscriber

    async def remove(self, subscriber: _Subscriber) -> None:
        if subscriber not in self.subscribers:
            return
        self.subscribers.remove(subscriber)
        if not self.subscribers:
            await self.owner.retire(self)
        else:
            await stop_tasks(subscriber.calls)

    async def start(self) -> None:
        await self.ensure_group()
        name = f"redis-streams:{self.topic}:{self.name}"
        owner = self.owner
        reader = self.forever(self.read_once, "read", 0)
        self.tasks.append(asyncio.create_task(reader, name=f"{name}:read"))
        if owner.redeliver_interval > 0 and owner.processing_timeout > 0:
            reclaimer = self.forever(self.reclaim, "reclaim", owner.redeliver_interval)
            self.tasks.append(asyncio.create_task(reclaimer, name=f"{name}:reclaim"))
        for i in range(owner.concurrency):
            self.tasks.append(asyncio.create_task(self.work_loop(), name=f"{name}:worker-{i}"))

    async def stop(self) -> None:
        await stop_tasks(self.tasks)
        for subscriber in self.subscribers:
            await stop_tasks(subscriber.calls)

    async def ensure_group(self) -> None:
        async with guarded(f"create consumer group {self.group!r}", self.owner.settings.deadline):
            try:
                await self.owner.client.xgroup_create(self.topic, self.group, "0", mkstream=True)
            except Exception as error:
                if "BUSYGROUP" not in str(error):
                    raise

    # -- reading -------------------------------------------------------------------------------

    async def forever(self, step: Callable[[], Awaitable[None]], what: str, pause: float) -> None:
        """Run `step` again and again (after `pause`); a failure never ends the loop."""
        failures = 0
        while True:
            await asyncio.sleep(pause)
            try:
                await step()
                failures = 0
            except Exception as error:
                failures += 1
                await self.recover(error, failures, what)

    async def read_once(self) -> None:
        room = max(1, self.queue.maxsize - self.queue.qsize())
        deadline = self.block_ms / 1000 + self.owner.settings.deadline
        async with guarded(f"read {self.topic!r}", deadline):
            reply: Any = await self.owner.client.xreadgroup(
                self.group, self.name, {self.topic: ">"}, count=room, block=self.block_ms
            )
        for _stream, messages in reply or []:
            for message_id, fields in messages:
                self.in_flight.add(message_id)
                await self.queue.put((message_id, fields, 1))

    async def recover(self, error: Exception, failures: int, what: str) -> None:
        """Log, back off, and re-create the group if Redis lost it (restart, flush)."""
        if isinstance(error, ComponentError):
            log.warning("redis streams %s of %r failed: %s", what, self.topic, error.message)
        else:
            log.error("redis streams %s of %r failed", what, self.topic, exc_info=error)
        await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
        if "NOGROUP" in str(error):
            with contextlib.suppress(ComponentError):
                await self.ensure_group()

    # -- redelivery ----------------------------------------------------------------------------

    async def reclaim(self) -> None:
        await self.reclaim_once()
        await self.prune_consumers()

    async def reclaim_once(self) -> None:
        client, settings = self.owner.client, self.owner.settings
        idle_ms = max(1, int(self.owner.processing_timeout * 1000))
        start: bytes | str = "0-0"
        for _ in range(10):  # XAUTOCLAIM looks at 10 x count entries per call
            room = self.queue.maxsize - self.queue.qsize()
            if room <= 0:
                return
            busy = set(self.in_flight)  # those handled now may be acknowledged meanwhile
            async with guarded(f"reclaim pending messages of {self.topic!r}", settings.deadline):
                reply = await client.xautoclaim(
                    self.topic, self.group, self.name, idle_ms, start, count=room
                )
            busy |= self.in_flight
            start, claimed = reply[0], [(i, f) for i, f in reply[1] if i not in busy]
            await self.enqueue_claimed(claimed)
            if start in (b"0-0", "0-0"):
                return

    async def enqueue_claimed(self, claimed: list[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        gone = [message_id for message_id, fields in claimed if fields is None]
        live = [(message_id, fields) for message_id, fields in claimed if fields is not None]
        settings = self.owner.settings
        if gone:  # trimmed from the stream (MAXLEN) while pending: nothing left to deliver
            async with guarded(f"ack trimmed messages of {self.topic!r}", settings.deadline):
                await self.owner.client.xack(self.topic, self.group, *gone)
        if not live:
            return
        attempts = await self.delivery_counts(live[0][0], live[-1][0], len(live))
        for message_id, fields in live:
            self.in_flight.add(message_id)
            await self.queue.put((message_id, fields, attempts.get(message_id, 2)))

    async def delivery_counts(self, first: bytes, last: bytes, count: int) -> dict[bytes, int]:
        async with guarded(f"pending of {self.topic!r}", self.owner.settings.deadline):
            pending: Any = await self.owner.client.xpending_range(
                self.topic, self.group, first, last, count, consumername=self.name
            )
        return {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}

    async def prune_consumers(self) -> None:
        """Drop consumers of the group that hold no message and were idle for long."""
        now = time.monotonic()
        if now - self.last_prune < _PRUNE_AFTER / 10:
            return
        self.last_prune = now
        client = self.owner.client
        async with guarded(f"prune consumers of {self.group!r}", self.owner.settings.deadline):
            for consumer in await client.xinfo_consumers(self.topic, self.group):
                name = consumer["name"]
                idle = int(consumer.get("idle", 0)) / 1000
                if text(name) != self.name and consumer["pending"] == 0 and idle > _PRUNE_AFTER:
                    await client.xgroup_delconsumer(self.topic, self.group, name)

    # -- handling ------------------------------------------------------------------------------

    async def work_loop(self) -> None:
        while True:
            message_id, fields, attempt = await self.queue.get()
            try:
                await self.deliver(message_id, fields, attempt)
            finally:
                self.in_flight.discard(message_id)

    async def deliver(self, message_id: bytes, fields: Mapping[bytes, bytes], attempt: int) -> None:
        metadata = _metadata(fields.get(b"metadata"))
        message = Message(
            topic=self.topic,
            data=fields.get(b"data", b""),
            metadata=metadata,
            content_type=metadata.get("contentType") or "application/cloudevents+json",
            id=text(message_id),
            attempt=attempt,
        )
        handled = self.handled.pop(message_id, set())
        pending = [s for s in self.subscribers if s not in handled]
        if not pending:
            return  # nobody left to handle it: it stays pending
        if self.shared:
            outcomes = await asyncio.gather(*(self.call(s, message) for s in pending))
        else:
            outcomes = [await self.invoke(pending[0].handler, message)]
        done = {s for s, outcome in zip(pending, outcomes, strict=True) if outcome in _ACKED}
        if len(done) < len(pending):  # stays pending for a redelivery to the others
            self.remember(message_id, handled | done)
            return
        try:
            async with guarded(f"ack on {self.topic!r}", self.owner.settings.deadline):
                await self.owner.client.xack(self.topic, self.group, message_id)
        except ComponentError as error:  # stays pending: redelivered, at least once
            log.warning("redis streams ack of %s failed: %s", message.id, error.message)

    async def call(self, subscriber: _Subscriber, message: Message) -> Delivery | None:
        """One subscriber's call in a task of its own, which removing it cancels (None)."""
        name = f"redis-streams:{self.topic}:{self.name}:call:{message.id}"
        task = asyncio.create_task(self.invoke(subscriber.handler, message), name=name)
        subscriber.calls.append(task)
        try:
            await asyncio.wait([task])
        except BaseException:
            task.cancel()
            raise
        finally:
            if task in subscriber.calls:
                subscriber.calls.remove(task)
        return None if task.cancelled() else task.result()

    async def invoke(self, handler: MessageHandler, message: Message) -> Delivery:
        try:
            return await handler(message)
        except Exception:
            log.exception("subscriber of %r failed on message %s", self.topic, message.id)
            return Delivery.RETRY

    def remember(self, message_id: bytes, handled: set[_Subscriber]) -> None:
        if handled:
            self.handled[message_id] = handled
            while len(self.handled) > _REMEMBERED:
                self.handled.popitem(last=False)


def _metadata(raw: bytes | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value: Any = strict_json.loads(raw)
    except strict_json.JsonError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
