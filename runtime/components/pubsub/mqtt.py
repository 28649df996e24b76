"""`pubsub.mqtt3`: MQTT 3.1.1 (or 5) pub/sub (Dapr's `pubsub.mqtt3`), on mecha's MQTT codec.

The client is mecha's own (runtime/components/mqtt_client.py): it can hold back a PUBACK until
the handler answered, and it reconnects by itself.

Connections: publishing uses its own connection (client id `<consumerID>-pub-<random>`, clean
session). Each subscribed (topic, consumer group) has one more, with the client id
`<consumerID>-<hash of group and topic>` and the component's `cleanSession`; subscriptions of the
same group on one component share it and take its messages in turn (competing consumers);
different groups have different sessions, so each gets every message. A subscription without a
group has a connection (random id, clean session) of its own.

Acknowledgement: a QoS 1 message is acknowledged (PUBACK; PUBREC for QoS 2) only when the
handler answered SUCCESS or DROP. What MQTT can and cannot promise:

- it has no negative acknowledgement: RETRY (or an exception) is retried by this component,
  in process, after `redeliverInitialInterval` doubled per attempt (at most
  `redeliverMaxInterval`), the PUBACK still held back; the broker itself redelivers an
  unacknowledged message only when the session reconnects (a restart of mecha, a new
  subscriber of the group after the last one was cancelled, a network failure);
- that redelivery needs a persistent session (`cleanSession: false`, the default), QoS >= 1
  and a `consumerID` that stays the same across restarts: only then are the features
  AT_LEAST_ONCE | DURABLE (the broker also keeps the messages published while the group has no
  subscriber). Otherwise they are NONE: messages are lost with the connection;
- cancelling the last subscription of a group keeps its persistent session, with its
  subscription, at the broker (as a JetStream durable consumer); the broker queues for it
  within its own limits (mosquitto: `max_queued_messages`);
- two processes with the same `consumerID` and group share a client id: the broker takes the
  session from one to give it to the other (as with Dapr, give each replica its own id);
- acknowledgements may leave in another order than messages came (MQTT asks for the same
  order; brokers do not enforce it); message metadata travels as MQTT 5 user properties only.

A dropped connection is reconnected with a backoff; operations while it is down wait for it
at most `timeout`, then fail with ComponentError.

Metadata (Dapr's names, unless marked *mecha*):

| key | meaning |
| --- | --- |
| `url` | `tcp://[user[:password]@]host[:port]` (or `mqtt://`; port 1883); no TLS yet |
| `consumerID` | the client id prefix (default: random, see above) |
| `qos` | 0, 1 (default) or 2, for publishing and subscribing |
| `retain` | publish with the retain flag (default false; per message: `retain` metadata) |
| `cleanSession` | default false |
| `protocolVersion` | *mecha*: 4 (MQTT 3.1.1, default) or 5 |
| `keepAlive` | *mecha*: seconds (default 30) |
| `timeout` | *mecha*: connect / publish / subscribe deadline (default 5s) |
| `redeliverInitialInterval`, `redeliverMaxInterval` | *mecha*: RETRY backoff (100ms, 10s) |
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from protocols.mqtt import (
    NO_PROPERTIES,
    Properties,
    Publish,
)
from runtime.components.api import Delivery, Message, MessageHandler, Metadata, PubSubFeature
from runtime.components.errors import ComponentError
from runtime.components.metadata import flag
from runtime.components.mqtt_client import MqttClient, MqttSettings, parse_settings

log = logging.getLogger("mecha.pubsub.mqtt")

GROUP_KEYS = ("consumerGroup", "queueGroup")
DEFAULT_CONTENT_TYPE = "application/cloudevents+json"
MAX_QOS0_QUEUE = 10_000
"""QoS 0 messages waiting for a handler beyond this are dropped (nothing bounds them else)."""


# -- subscriptions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    packet: Publish
    generation: int
    attempt: int


class Consumer:
    """One subscribed topic of one consumer group: its connection, its members, its queue.

    `max_retries` (None: no limit) bounds the local retries of a message; past it the message
    is left unacknowledged, for the broker to send again after a reconnect."""

    def __init__(self, settings: MqttSettings, topic: str, client_id: str, clean: bool,
                 max_retries: int | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.topic = topic
        self.client = MqttClient(settings, client_id, clean, self._received)
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self.members: set[Member] = set()
        self.max_retries = max_retries
        self._timers: set[asyncio.TimerHandle] = set()
        self._started: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and subscribe; callers racing to start one consumer share the attempt."""
        if self._started is None:
            self._started = asyncio.create_task(self._start(), name=f"mqtt {self.topic} start")
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self.client.start()
        try:
            await self.client.subscribe(self.topic, self.settings.qos)
        except ComponentError:
            await self.client.close()
            raise

    async def stop(self) -> None:
        """Disconnect: a clean session ends, a persistent one keeps its subscription and its
        unacknowledged messages at the broker."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._started is not None and not self._started.done():
            self._started.cancel()
            await asyncio.gather(self._started, return_exceptions=True)
        await self.client.close()

    def _received(self, packet: Publish, generation: int) -> None:
        if packet.qos == 0 and self.queue.qsize() >= MAX_QOS0_QUEUE:
            log.warning("mqtt %s: dropped a QoS 0 message, %d wait already", self.topic,
                        MAX_QOS0_QUEUE)  # fmt: skip
            return
        self.queue.put_nowait(Inbound(packet, generation, 2 if packet.dup else 1))

    def stale(self, inbound: Inbound) -> bool:
        """From an earlier connection of a resumed session: the broker sends it again."""
        return (inbound.generation != self.client.generation and inbound.packet.qos > 0
                and not self.client.clean_session)  # fmt: skip

    def settle(self, inbound: Inbound, outcome: Delivery) -> None:
        if outcome in (Delivery.SUCCESS, Delivery.DROP):
            self.client.ack(inbound.packet, inbound.generation)
            return
        if self.max_retries is not None and inbound.attempt > self.max_retries:
            log.warning("mqtt %s: gave up on a message after %d attempts; the broker sends it "
                        "again after a reconnect", self.topic, inbound.attempt)  # fmt: skip
            return
        again = replace(inbound, attempt=inbound.attempt + 1)

        def redeliver() -> None:
            self._timers.discard(handle)
            self.queue.put_nowait(again)

        handle = asyncio.get_running_loop().call_later(self.settings.backoff(inbound.attempt),
                                                       redeliver)  # fmt: skip
        self._timers.add(handle)


class Member:
    """A subscription: a task taking its consumer's messages one at a time."""

    def __init__(self, consumer: Consumer, handler: MessageHandler,
                 on_cancel: Callable[[Member], Awaitable[None]]) -> None:  # fmt: skip
        self.consumer = consumer
        self._handler = handler
        self._on_cancel = on_cancel
        name = f"pubsub.mqtt {consumer.topic} {consumer.client.client_id} #{id(self):x}"
        self._task = asyncio.create_task(self._run(), name=name)

    async def cancel(self) -> None:
        await self.stop()
        await self._on_cancel(self)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            inbound = await self.consumer.queue.get()
            if not self.consumer.stale(inbound):
                await self._deliver(inbound)

    async def _deliver(self, inbound: Inbound) -> None:
        packet = inbound.packet
        props = packet.properties
        message = Message(
            topic=packet.topic,
            data=packet.payload,
            metadata=dict(props.user_properties),
            content_type=props.content_type or DEFAULT_CONTENT_TYPE,
            attempt=inbound.attempt,
        )
        try:
            outcome = await self._handler(message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self.consumer.queue.put_nowait(replace(inbound, attempt=inbound.attempt + 1))
                raise
            outcome = _failed(message, "was cancelled")
        except Exception as error:
            outcome = _failed(message, f"raised {error!r}")
        self.consumer.settle(inbound, outcome)


def _failed(message: Message, what: str) -> Delivery:
    log.warning("handler of %s (attempt %d) %s; will retry", message.topic, message.attempt, what)
    return Delivery.RETRY


# -- the component ----------------------------------------------------------------------------


class MqttPubSub:
    features = PubSubFeature.NONE
    """AT_LEAST_ONCE | DURABLE once init() saw QoS >= 1, cleanSession false and a consumerID."""

    def __init__(self) -> None:
        self.settings = MqttSettings()
        self._publisher: MqttClient | None = None
        self._consumers: dict[tuple[str, str], Consumer] = {}

    async def init(self, metadata: Metadata) -> None:
        self.settings = parse_settings(metadata)
        if self.settings.durable:
            self.features = PubSubFeature.AT_LEAST_ONCE | PubSubFeature.DURABLE
        client_id = f"{self.settings.client_id}-pub-{uuid.uuid4().hex[:8]}"
        publisher = MqttClient(self.settings, client_id, clean_session=True)
        await publisher.start()
        self._publisher = publisher

    async def ping(self) -> None:
        if self._publisher is None or not self._publisher.connected:
            raise ComponentError("mqtt: not connected to the broker")

    async def close(self) -> None:
        consumers, self._consumers = list(self._consumers.values()), {}
        for consumer in consumers:
            await asyncio.gather(*(member.stop() for member in consumer.members))
            await consumer.stop()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()

    async def publish(self, topic: str, data: bytes, metadata: Metadata) -> None:
        if self._publisher is None:
            raise ComponentError("mqtt pubsub is not initialised (or closed)")
        retain = flag(metadata, "retain", self.settings.retain)
        props = NO_PROPERTIES
        if self.settings.version == 5:
            pairs = tuple((k, v) for k, v in metadata.items() if k != "contentType")
            props = Properties(user_properties=pairs, content_type=metadata.get("contentType"))
        await self._publisher.publish(topic, data, self.settings.qos, retain, props)

    async def subscribe(self, topic: str, handler: MessageHandler, metadata: Metadata) -> Member:
        if self._publisher is None:
            raise ComponentError("mqtt pubsub is not initialised (or closed)")
        group = next((metadata[k] for k in GROUP_KEYS if metadata.get(k)), None)
        key = (topic, group if group is not None else f"\0{uuid.uuid4().hex}")
        consumer = self._consumers.get(key)
        if consumer is None:
            consumer = self._consumers[key] = self._consumer(topic, group)
        try:
            await consumer.start()
        except ComponentError:
            if self._consumers.get(key) is consumer:
                del self._consumers[key]
            raise
        member = Member(consumer, handler, lambda m: self._leave(key, m))
        consumer.members.add(member)
        return member

    def _consumer(self, topic: str, group: str | None) -> Consumer:
        s = self.settings
        if group is None:
            return Consumer(s, topic, f"{s.client_id}-{uuid.uuid4().hex[:12]}", clean=True)
        digest = hashlib.sha1(f"{group}\n{topic}".encode()).hexdigest()[:12]
        return Consumer(s, topic, f"{s.client_id}-{digest}", clean=s.clean_session)

    async def _leave(self, key: tuple[str, str], member: Member) -> None:
        consumer = member.consumer
        consumer.members.discard(member)
        if not consumer.members and self._consumers.get(key) is consumer:
            del self._consumers[key]
            await consumer.stop()
