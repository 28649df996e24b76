"""`pubsub.jetstream`: NATS JetStream (Dapr's `pubsub.jetstream`), through nats-py.

A topic is the NATS subject of the same name, as in Dapr. All topics live in one stream
(`streamName`): the component creates it when it is missing, and adds a topic to its subjects
(a stream update) the first time the topic is published to or subscribed to, unless one of the
stream's subjects already covers it (`orders.*` covers `orders.new`). A topic that another
stream captures is refused with ComponentError.

Publishing waits for JetStream's acknowledgement, so a publish that returned is stored in the
stream (durably, with the default file storage). Each subscription pulls from a consumer:

- with a consumer group (the subscription's `consumerGroup` / `queueGroup` metadata, else the
  component's `queueGroupName`, else its `durableName`): a durable pull consumer named
  `<group>-<topic>` (characters NATS refuses become `_`, plus a short hash), shared by every
  subscriber of that group, in any mecha: they compete for its messages, different groups each
  get every message, and the consumer outlives its subscribers and mecha itself. A new durable
  consumer starts where `deliverPolicy` says (default `all`, as Dapr: the stream's messages).
- without one: an ephemeral consumer of this subscription alone, starting with the messages
  published after it (`deliverPolicy` default `new`), deleted when the subscription ends.

SUCCESS and DROP acknowledge (ack); RETRY, an exception, or a subscription cancelled while its
handler runs negatively acknowledge (nak), with a delay on RETRY: `redeliverInitialInterval`
doubled per attempt up to `redeliverMaxInterval`, as the in-memory broker. A message its
subscriber never answered (a crash) is redelivered by the server after `ackWait`; while a
handler runs, the component tells the server it is still in progress. `Message.attempt` is
JetStream's delivery count. Hence AT_LEAST_ONCE | DURABLE.

nats-py reconnects by itself; after a reconnect every subscription checks again that its
stream and consumer exist (a server that lost its store gets them back). Operations during an
outage fail with ComponentError within `timeout`.

Metadata (Dapr's names, unless marked *mecha*):

| key | meaning |
| --- | --- |
| `natsURL` | `nats://host:port`, a comma list for a cluster (default `nats://127.0.0.1:4222`) |
| `name` | the connection's name on the server (default `mecha`) |
| `token` | token authentication (user and password may be given in the URL) |
| `streamName` | the stream of every topic (*mecha* default `mecha`; Dapr needs it created) |
| `memoryStorage`, `replicas` | storage and replicas of a stream this component creates |
| `durableName`, `queueGroupName` | the consumer group of subscriptions that name none |
| `deliverPolicy` | `all`, `last`, `new` or `last_per_subject`: where a new consumer starts |
| `ackWait` | how long an unacknowledged delivery waits before redelivery (default `30s`) |
| `maxDeliver` | deliveries of a message before the server gives up (default: no limit) |
| `maxAckPending` | unacknowledged messages a consumer may have out (server default) |
| `concurrency` | *mecha*: handlers running at once per subscription (default 1: in order) |
| `redeliverInitialInterval`, `redeliverMaxInterval` | *mecha*: the RETRY backoff (100ms, 10s) |
| `timeout` | *mecha*: publish and API request deadline (default `5s`) |
| `connectTimeout` | *mecha*: how long init() tries to reach the server (default `5s`) |

Not implemented: Dapr's TLS, JWT / seed key, `startSequence`, `startTime`, `flowControl`,
`backOff`, `rateLimit`, `heartbeat`, `ackPolicy` (always explicit), `domain`, `apiPrefix`.
Consumer settings apply when the consumer is created; an existing durable keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from proxy.redact import redact_text
from runtime.components.api import (
    Delivery,
    Message,
    MessageHandler,
    Metadata,
    PubSubFeature,
)
from runtime.components.errors import BadMetadata, ComponentError
from runtime.components.metadata import duration, flag, integer, text

log = logging.getLogger("mecha.pubsub.jetstream")

T = TypeVar("T")
GROUP_KEYS = ("consumerGroup", "queueGroup")
DEFAULT_CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_URL = "nats://127.0.0.1:4222"
FETCH_WAIT = 5.0
"""Seconds one pull request waits at the server for messages."""
EPHEMERAL_INACTIVE = 300.0
"""Seconds the server keeps an ephemeral consumer nobody pulls from (a crashed mecha's)."""
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
_POLICIES = {
    "all": DeliverPolicy.ALL,
    "last": DeliverPolicy.LAST,
    "new": DeliverPolicy.NEW,
    "last_per_subject": DeliverPolicy.LAST_PER_SUBJECT,
}


@dataclass(frozen=True, slots=True)
class _Settings:
    servers: tuple[str, ...] = (DEFAULT_URL,)
    name: str = "mecha"
    token: str | None = None
    stream: str = "mecha"
    memory: bool = False
    replicas: int = 1
    group: str | None = None
    deliver: DeliverPolicy | None = None
    ack_wait: float = 30.0
    max_deliver: int | None = None
    max_ack_pending: int | None = None
    concurrency: int = 1
    initial: float = 0.1
    maximum: float = 10.0
    timeout: float = 5.0
    connect_timeout: float = 5.0

    def backoff(self, attempt: int) -> float:
        """The delay before delivery `attempt + 1` after delivery `attempt` asked to RETRY."""
        return min(self.initial * 2.0 ** min(max(attempt, 1) - 1, 62), self.maximum)


def _parse(metadata: Metadata) -> _Settings:
    servers = tuple(s.strip() for s in metadata.get("natsURL", "").split(",") if s.strip())
    for server in servers:
        if urlsplit(server).scheme not in ("nats", "tls", "ws", "wss"):
            raise BadMetadata("natsURL", f"{server!r} is not a nats:// URL")
    stream = metadata.get("streamName", "").strip() or "mecha"
    if _NAME_UNSAFE.search(stream):
        raise BadMetadata("streamName", f"{stream!r}: only letters, digits, _ and -")
    policy = metadata.get("deliverPolicy", "").strip().lower()
    if policy and policy not in _POLICIES:
        raise BadMetadata("deliverPolicy", f"one of {', '.join(_POLICIES)}, not {policy!r}")
    initial = duration(metadata, "redeliverInitialInterval", 0.1)
    settings = _Settings(
        servers=servers or (DEFAULT_URL,),
        name=metadata.get("name", "").strip() or "mecha",
        token=metadata.get("token") or None,
        stream=stream,
        memory=flag(metadata, "memoryStorage"),
        replicas=integer(metadata, "replicas", 1, minimum=1),
        group=metadata.get("queueGroupName", "").strip() or text(metadata, "durableName"),
        deliver=_POLICIES[policy] if policy else None,
        ack_wait=duration(metadata, "ackWait", 30.0),
        max_deliver=integer(metadata, "maxDeliver", 0) or None,
        max_ack_pending=integer(metadata, "maxAckPending", 0) or None,
        concurrency=integer(metadata, "concurrency", 1, minimum=0),
        initial=initial,
        maximum=duration(metadata, "redeliverMaxInterval", max(10.0, initial)),
        timeout=duration(metadata, "timeout", 5.0),
        connect_timeout=duration(metadata, "connectTimeout", 5.0),
    )
    if settings.maximum < settings.initial:
        raise BadMetadata("redeliverMaxInterval", "must not be less than redeliverInitialInterval")
    if settings.ack_wait < 1:
        raise BadMetadata("ackWait", "must be at least 1s")
    if settings.timeout <= 0:
        raise BadMetadata("timeout", "must be more than 0")
    if settings.concurrency < 1 or settings.replicas < 1:
        raise BadMetadata("concurrency" if settings.concurrency < 1 else "replicas", "must be >= 1")
    return settings


class JetStreamPubSub:
    features = PubSubFeature.AT_LEAST_ONCE | PubSubFeature.DURABLE

    def __init__(self) -> None:
        self.settings = _Settings()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._topics: set[str] = set()
        """Topics known to be among the stream's subjects (forgotten on reconnect)."""
        self._stream_lock = asyncio.Lock()
        self._subscriptions: set[_Subscription] = set()
        self.generation = 0
        """Bumped by every reconnect, so subscriptions check their consumer again."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def init(self, metadata: Metadata) -> None:
        self.settings = _parse(metadata)
        nc = NatsClient()
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await nc.connect(**self._connect_options())
        except (*_NATS_ERRORS, ValueError) as error:
            with contextlib.suppress(*_NATS_ERRORS):
                await nc.close()
            where = _servers(self.settings.servers)
            raise ComponentError(f"jetstream: cannot connect to {where}: {_why(error)}") from None
        self._nc = nc
        self._js = nc.jetstream(timeout=self.settings.timeout)
        try:
            await self.guard("account info", self._js.account_info())
        except ComponentError:
            await self.close()
            raise

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        return {
            "servers": list(s.servers), "name": s.name, "token": s.token,
            "connect_timeout": max(1, round(s.connect_timeout / 2)),
            "reconnect_time_wait": 0.5, "max_reconnect_attempts": -1,
            "error_cb": self._on_error, "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }  # fmt: skip

    async def _on_error(self, error: Exception) -> None:
        log.debug("jetstream connection: %s", _why(error))

    async def _on_disconnected(self) -> None:
        if self._nc is None:
            return  # close()
        where = _servers(self.settings.servers)
        log.warning("jetstream: disconnected from %s; reconnecting", where)

    async def _on_reconnected(self) -> None:
        self.generation += 1
        self._topics.clear()
        log.info("jetstream: reconnected")

    async def ping(self) -> None:
        nc = self._client()
        if not nc.is_connected:
            raise ComponentError("jetstream: not connected to the server (reconnecting)")
        await self.guard("ping", nc.flush(timeout=max(1, round(self.settings.timeout))))

    async def close(self) -> None:
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        await asyncio.gather(*(s.cancel() for s in subscriptions))
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(*_NATS_ERRORS):
                await nc.close()

    # -- publish ------------------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, metadata: Metadata) -> None:
        _check_subject(topic, wildcards=False)
        headers = _headers(metadata)
        for last_try in (False, True):
            js = self.jetstream()
            if not self._client().is_connected:
                raise ComponentError("jetstream: not connected to the server (reconnecting)")
            await self.ensure_topic(topic)
            try:
                await self.guard(f"publish to {topic!r}", js.publish(
                    topic, data, timeout=self.settings.timeout, stream=self.settings.stream,
                    headers=headers or None))  # fmt: skip
                return
            except _NoStream:
                self._topics.discard(topic)  # the stream lost the subject (or vanished)
                if last_try:
                    raise ComponentError(f"jetstream: no stream takes {topic!r}") from None

    # -- subscribe ----------------------------------------------------------------------------

    async def subscribe(
        self, topic: str, handler: MessageHandler, metadata: Metadata
    ) -> _Subscription:
        _check_subject(topic, wildcards=True)
        self.jetstream()
        group = next((metadata[k] for k in GROUP_KEYS if metadata.get(k)), self.settings.group)
        subscription = _Subscription(self, topic, handler, group)
        await subscription.bind()
        subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: _Subscription) -> None:
        self._subscriptions.discard(subscription)

    # -- the stream ---------------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        """Make the stream exist and carry `topic` (a no-op once known)."""
        if topic in self._topics:
            return
        async with self._stream_lock:
            if topic in self._topics:
                return
            for _ in range(3):  # another mecha may create or update the stream at the same time
                if await self._add_subject(topic):
                    self._topics.add(topic)
                    return
            stream = self.settings.stream
            raise ComponentError(f"jetstream: could not add {topic!r} to stream {stream!r}")

    async def _add_subject(self, topic: str) -> bool:
        js, s = self.jetstream(), self.settings
        try:
            info = await self.guard("stream info", js.stream_info(s.stream))
        except _NotFound:
            storage = StorageType.MEMORY if s.memory else StorageType.FILE
            config = StreamConfig(name=s.stream, subjects=[topic], storage=storage,
                                  num_replicas=s.replicas)  # fmt: skip
            return await self._stream_call("create", js.add_stream(config))
        subjects = list(info.config.subjects or [])
        if any(subject_covers(subject, topic) for subject in subjects):
            return True
        info.config.subjects = [*subjects, topic]
        return await self._stream_call("update", js.update_stream(info.config))

    async def _stream_call(self, what: str, call: Awaitable[Any]) -> bool:
        try:
            await self.guard(f"stream {what}", call)
        except _Conflict as error:
            if "overlap" in str(error):
                raise ComponentError(f"jetstream: {error}", retryable=False) from None
            return False
        return True

    # -- helpers ------------------------------------------------------------------------------

    async def guard(self, what: str, call: Awaitable[T]) -> T:
        """Await `call` within the deadline; NATS errors become ComponentError subclasses."""
        try:
            async with asyncio.timeout(self.settings.timeout + 1):
                return await call
        except nats.js.errors.NotFoundError as error:
            raise _NotFound(f"jetstream {what}: {_why(error)}") from None
        except nats.js.errors.NoStreamResponseError:
            raise _NoStream(f"jetstream {what}: no stream answered") from None
        except nats.js.errors.BadRequestError as error:
            raise _Conflict(f"jetstream {what}: {_why(error)}") from None
        except nats.js.errors.APIError as error:
            raise ComponentError(f"jetstream {what}: {_why(error)}") from None
        except (*_NATS_ERRORS, ValueError) as error:
            raise ComponentError(f"jetstream {what}: {_why(error)}") from None

    def _client(self) -> NatsClient:
        if self._nc is None:
            raise ComponentError("jetstream pubsub is not initialised (or closed)")
        return self._nc

    def jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise ComponentError("jetstream pubsub is not initialised (or closed)")
        return self._js


class _NotFound(ComponentError):
    pass


class _NoStream(ComponentError):
    pass


class _Conflict(ComponentError):
    pass


class _Subscription:
    """One subscription: a task pulling from its consumer and calling the handler."""

    def __init__(self, owner: JetStreamPubSub, topic: str, handler: MessageHandler,
                 group: str | None) -> None:  # fmt: skip
        self._owner = owner
        self._topic = topic
        self._handler = handler
        self._durable = group is not None
        self.consumer = consumer_name(group, topic) if group else f"mecha-{uuid.uuid4().hex}"
        self._pull: JetStreamContext.PullSubscription | None = None
        self._generation = -1
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"pubsub.jetstream {self._topic} {self.consumer}"
        self._task = asyncio.create_task(self._run(), name=name)

    async def cancel(self) -> None:
        self._owner.forget(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._unbind()
        if not self._durable:
            with contextlib.suppress(ComponentError):
                await self._owner.guard("delete consumer", self._owner.jetstream().delete_consumer(
                    self._owner.settings.stream, self.consumer))  # fmt: skip

    # -- the consumer -------------------------------------------------------------------------

    async def bind(self) -> None:
        """Make the stream and the consumer exist, and subscribe to its pulled messages."""
        owner, s = self._owner, self._owner.settings
        js = owner.jetstream()
        generation = owner.generation
        await owner.ensure_topic(self._topic)
        if self._durable:
            try:
                await owner.guard("consumer info", js.consumer_info(s.stream, self.consumer))
            except _NotFound:
                await self._create(js)
        else:
            await self._create(js)
        await self._unbind()
        self._pull = await owner.guard("pull subscribe", js.pull_subscribe_bind(
            consumer=self.consumer, stream=s.stream))  # fmt: skip
        self._generation = generation

    async def _create(self, js: JetStreamContext) -> None:
        s = self._owner.settings
        config = ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer if self._durable else None,
            deliver_policy=s.deliver or (DeliverPolicy.ALL if self._durable else DeliverPolicy.NEW),
            ack_wait=s.ack_wait,
            max_deliver=s.max_deliver,
            max_ack_pending=s.max_ack_pending,
            filter_subject=self._topic,
            inactive_threshold=None if self._durable else EPHEMERAL_INACTIVE,
        )
        try:
            await self._owner.guard("consumer create", js.add_consumer(s.stream, config))
        except _Conflict as error:  # created meanwhile by another subscriber of the group
            if "already" not in str(error):
                raise

    async def _unbind(self) -> None:
        pull, self._pull = self._pull, None
        if pull is not None:
            with contextlib.suppress(*_NATS_ERRORS, ValueError):
                await pull.unsubscribe()

    # -- the pull loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                messages = await self._fetch()
            except ComponentError as error:
                failures += 1
                delay = min(0.1 * 2 ** min(failures, 6), 5.0)
                log.warning("jetstream %s (%s): %s; again in %.1fs", self._topic, self.consumer,
                            error.message, delay)  # fmt: skip
                self._generation = -1
                await asyncio.sleep(delay)
                continue
            failures = 0
            if messages:
                await asyncio.gather(*(self._deliver(message) for message in messages))

    async def _fetch(self) -> list[Msg]:
        if self._pull is None or self._generation != self._owner.generation:
            await self.bind()
        assert self._pull is not None
        batch = self._owner.settings.concurrency
        try:
            return await self._pull.fetch(batch, timeout=FETCH_WAIT)
        except nats.errors.TimeoutError:
            return []
        except (*_NATS_ERRORS, nats.js.errors.Error, ValueError) as error:
            raise ComponentError(f"fetch: {_why(error)}") from None

    async def _deliver(self, msg: Msg) -> None:
        owner = self._owner
        meta = msg.metadata
        message = Message(
            topic=msg.subject,
            data=msg.data,
            metadata=_metadata(msg.headers),
            content_type=(msg.headers or {}).get("contentType", DEFAULT_CONTENT_TYPE),
            id=f"{owner.settings.stream}:{meta.sequence.stream}",
            attempt=meta.num_delivered,
        )
        outcome = await self._handle(msg, message)
        if outcome in (Delivery.SUCCESS, Delivery.DROP):
            await _settle(msg.ack(), "ack")
        else:
            await _settle(msg.nak(delay=owner.settings.backoff(message.attempt)), "nak")

    async def _handle(self, msg: Msg, message: Message) -> Delivery:
        progress = asyncio.create_task(self._in_progress(msg), name=f"{message.id} in progress")
        try:
            return await self._handler(message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                await _settle(msg.nak(), "nak")  # the subscription ends: give it back now
                raise
            return _failed(message, "was cancelled")
        except Exception as error:
            return _failed(message, f"raised {error!r}")
        finally:
            progress.cancel()

    async def _in_progress(self, msg: Msg) -> None:
        """Keep the server from redelivering a message whose handler is still running."""
        interval = max(self._owner.settings.ack_wait / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            await _settle(msg.in_progress(), "in-progress")


def _failed(message: Message, what: str) -> Delivery:
    log.warning("handler of %s (message %s, attempt %d) %s; will redeliver",
                message.topic, message.id, message.attempt, what)  # fmt: skip
    return Delivery.RETRY


async def _settle(call: Awaitable[None], what: str) -> None:
    """An ack that fails is not fatal: the server redelivers after ackWait."""
    try:
        await call
    except (*_NATS_ERRORS, nats.js.errors.Error) as error:
        log.info("jetstream %s failed: %s (the message will be redelivered)", what, _why(error))


# -- names, subjects, headers --------------------------------------------------------------------


def consumer_name(group: str, topic: str) -> str:
    """`<group>-<topic>`, with what NATS refuses in names replaced and a hash to stay unique."""
    name = f"{group}-{topic}"
    safe = _NAME_UNSAFE.sub("_", name)
    if safe != name or len(safe) > 64:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        safe = f"{safe[:53]}-{digest}"
    return safe


def subject_covers(pattern: str, subject: str) -> bool:
    """Whether stream subject `pattern` (with `*` and `>`) captures all of `subject`'s messages."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or have[index] == ">":
            return False
        if token != "*" and token != have[index]:
            return False
    return len(want) == len(have)


def _check_subject(topic: str, wildcards: bool) -> None:
    tokens = topic.split(".")
    bad = not topic or any(not t or any(c.isspace() for c in t) for t in tokens)
    if not bad and not wildcards:
        bad = any(t in ("*", ">") for t in tokens)
    if not bad:
        bad = ">" in tokens[:-1]
    if bad:
        raise ComponentError(f"jetstream: {topic!r} is not a valid NATS subject", retryable=False)


def _headers(metadata: Metadata) -> dict[str, str]:
    return {key: value for key, value in metadata.items()
            if _HEADER_NAME.match(key) and "\r" not in value and "\n" not in value}  # fmt: skip


def _metadata(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (headers or {}).items() if not k.startswith("Nats-")}


def _servers(servers: tuple[str, ...] | list[str]) -> str:
    """The servers for a message: `nats://user:pass@host` keeps its password out of logs."""
    return ", ".join(redact_text(server) for server in servers)


def _why(error: BaseException) -> str:
    text = str(error).strip()
    return text or type(error).__name__


# -- metadata values --------------------------------------------------------------------------
