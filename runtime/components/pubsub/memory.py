"""`pubsub.in-memory`: the embedded broker, in this process only (AT_LEAST_ONCE, not DURABLE).

Topics fan out to consumer groups. A subscription with `consumerGroup` (or `queueGroup`)
metadata joins that group: the group gets each message once, and hands it to its idle members
in turn (round robin). A subscription without a group is a group of its own, so it receives
every message. Each member handles `concurrency` messages at a time (subscription metadata, else
the component's; default 1, which keeps publish order), in named tasks.

Acknowledgement: SUCCESS and DROP acknowledge; RETRY, an exception, or a subscription cancelled
mid-delivery leave the message with its group, to be delivered again (`Message.attempt` counts
the deliveries). A retried message is delivered again after an exponential backoff
(`redeliverInitialInterval` doubled per attempt, at most `redeliverMaxInterval`), behind the
messages already queued: first deliveries keep publish order, redeliveries may not.

A named group outlives its members: messages published while it has none, and those it had not
acknowledged, wait for the next subscriber to that group (a restarted subscriber gets them
again). An ungrouped subscription's queue goes with it.

Bounded memory: each group holds at most `maxQueueSize` unacknowledged messages (queued, in
flight or waiting for redelivery); `publish` raises ComponentError rather than exceed it for any
group of the topic, and then queues the message nowhere. Messages published to a topic without
any group are discarded, as Dapr's in-memory broker does.

Component metadata: `maxQueueSize` (default 10000), `redeliverInitialInterval` (default 100ms),
`redeliverMaxInterval` (default 10s), `concurrency` (default 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace

from runtime.components.api import (
    Delivery,
    Message,
    MessageHandler,
    Metadata,
    PubSubFeature,
    Subscription,
)
from runtime.components.errors import BadMetadata, ComponentError
from runtime.components.metadata import duration, integer

log = logging.getLogger("mecha.pubsub.in-memory")

DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_REDELIVER_INITIAL = 0.1
DEFAULT_REDELIVER_MAX = 10.0
GROUP_KEYS = ("consumerGroup", "queueGroup")
DEFAULT_CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class _Settings:
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    initial: float = DEFAULT_REDELIVER_INITIAL
    maximum: float = DEFAULT_REDELIVER_MAX
    concurrency: int = 1

    def backoff(self, attempt: int) -> float:
        """The wait before delivery `attempt + 1`, after delivery `attempt` failed."""
        return min(self.initial * 2.0 ** max(0, min(attempt - 1, 62)), self.maximum)


class _Mailbox:
    """A FIFO of messages, handed to waiting members in the order they started to wait."""

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._waiters: deque[asyncio.Future[Message]] = deque()

    def put(self, message: Message, *, front: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(message)
                return
        if front:
            self._messages.appendleft(message)
        else:
            self._messages.append(message)

    async def get(self) -> Message:
        if self._messages:
            return self._messages.popleft()
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result(), front=True)  # handed over, never delivered
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def clear(self) -> None:
        self._messages.clear()


class _Group:
    """One consumer group of one topic: its queue, its members, its pending redeliveries."""

    def __init__(self, topic: str, name: str | None, settings: _Settings) -> None:
        self.topic = topic
        self.name = name
        """None for the private group of an ungrouped subscription."""
        self.settings = settings
        self.mailbox = _Mailbox()
        self.members: set[_Member] = set()
        self.unacknowledged = 0
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def full(self) -> bool:
        return self.unacknowledged >= self.settings.max_queue_size

    def enqueue(self, message: Message) -> None:
        self.unacknowledged += 1
        self.mailbox.put(message)

    def acknowledge(self) -> None:
        self.unacknowledged = max(0, self.unacknowledged - 1)

    def requeue(self, message: Message) -> None:
        """Delivered but neither acknowledged nor refused (its member went away): first again."""
        self.mailbox.put(_next_attempt(message), front=True)

    def retry_later(self, message: Message) -> None:
        delay = self.settings.backoff(message.attempt)
        again = _next_attempt(message)

        def redeliver() -> None:
            self._timers.discard(handle)
            self.mailbox.put(again)

        handle = asyncio.get_running_loop().call_later(delay, redeliver)
        self._timers.add(handle)

    def discard(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.mailbox.clear()
        self.unacknowledged = 0


class _Member:
    """A subscription: `concurrency` tasks, each taking its group's messages one at a time."""

    def __init__(
        self, owner: InMemoryPubSub, group: _Group, handler: MessageHandler, concurrency: int
    ) -> None:
        self._owner = owner
        self._group = group
        self._handler = handler
        name = f"pubsub.in-memory {group.topic} {group.name or '-'} #{owner.next_member_id()}"
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{name}.{index}") for index in range(concurrency)
        ]

    async def cancel(self) -> None:
        self._owner.leave(self._group, self)
        await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            message = await self._group.mailbox.get()
            await self._deliver(message)
            await asyncio.sleep(0)  # let the group's other idle members take the next one

    async def _deliver(self, message: Message) -> None:
        try:
            outcome = await self._handler(message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self._group.requeue(message)
                raise
            outcome = self._failed(message, "was cancelled")
        except Exception as error:
            outcome = self._failed(message, f"raised {error!r}")
        if outcome in (Delivery.SUCCESS, Delivery.DROP):
            self._group.acknowledge()
        else:
            self._group.retry_later(message)

    def _failed(self, message: Message, what: str) -> Delivery:
        log.warning("handler of %s (message %s, attempt %d) %s; will redeliver",
                    message.topic, message.id, message.attempt, what)  # fmt: skip
        return Delivery.RETRY


class _Topic:
    def __init__(self) -> None:
        self.named: dict[str, _Group] = {}
        self.private: set[_Group] = set()
        """The groups of one ungrouped subscription each."""

    def groups(self) -> list[_Group]:
        return [*self.named.values(), *self.private]

    def group(self, topic: str, name: str | None, settings: _Settings) -> _Group:
        if name is not None and name in self.named:
            return self.named[name]
        group = _Group(topic, name, settings)
        if name is None:
            self.private.add(group)
        else:
            self.named[name] = group
        return group


class InMemoryPubSub:
    features = PubSubFeature.AT_LEAST_ONCE
    runs_inline = True

    def __init__(self) -> None:
        self._settings = _Settings()
        self._topics: dict[str, _Topic] = {}
        self._member_ids = itertools.count(1)
        self._closed = False

    async def init(self, metadata: Metadata) -> None:
        initial = duration(metadata, "redeliverInitialInterval", DEFAULT_REDELIVER_INITIAL)
        maximum = duration(metadata, "redeliverMaxInterval", max(DEFAULT_REDELIVER_MAX, initial))
        if maximum < initial:
            raise BadMetadata("redeliverMaxInterval", "less than redeliverInitialInterval")
        size = integer(metadata, "maxQueueSize", DEFAULT_MAX_QUEUE_SIZE, minimum=1)
        concurrency = integer(metadata, "concurrency", 1, minimum=1)
        self._settings = _Settings(size, initial, maximum, concurrency)

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        groups = [group for topic in self._topics.values() for group in topic.groups()]
        self._topics.clear()
        for group in groups:
            group.discard()
        await asyncio.gather(*(member.stop() for group in groups for member in group.members))

    async def publish(self, topic: str, data: bytes, metadata: Metadata) -> None:
        self._check_open()
        groups = self._topics[topic].groups() if topic in self._topics else []
        if any(group.full for group in groups):
            raise ComponentError(
                f"in-memory pubsub: a subscriber of topic {topic!r} has "
                f"{self._settings.max_queue_size} unacknowledged messages (maxQueueSize)"
            )
        message = Message(
            topic=topic,
            data=data,
            metadata=dict(metadata),
            content_type=metadata.get("contentType") or DEFAULT_CONTENT_TYPE,
            id=uuid.uuid4().hex,
        )
        for group in groups:
            group.enqueue(message)

    async def subscribe(
        self, topic: str, handler: MessageHandler, metadata: Metadata
    ) -> Subscription:
        self._check_open()
        entry = self._topics.setdefault(topic, _Topic())
        group = entry.group(topic, _group_name(metadata), self._settings)
        concurrency = integer(metadata, "concurrency", self._settings.concurrency, minimum=1)
        member = _Member(self, group, handler, concurrency)
        group.members.add(member)
        return member

    def leave(self, group: _Group, member: _Member) -> None:
        group.members.discard(member)
        if group.name is not None:
            return  # a named group keeps its messages for its next member
        group.discard()
        topic = self._topics.get(group.topic)
        if topic is not None:
            topic.private.discard(group)
            if not topic.private and not topic.named:
                del self._topics[group.topic]

    def next_member_id(self) -> int:
        return next(self._member_ids)

    def _check_open(self) -> None:
        if self._closed:
            raise ComponentError("in-memory pubsub is closed", retryable=False)


def _next_attempt(message: Message) -> Message:
    return replace(message, attempt=message.attempt + 1)


def _group_name(metadata: Mapping[str, str]) -> str | None:
    for key in GROUP_KEYS:
        if metadata.get(key):
            return metadata[key]
    return None
