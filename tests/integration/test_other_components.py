"""Backends on real services beyond Redis: NATS JetStream (a private `nats-server -js`),
MQTT (a private mosquitto, with paho-mqtt on the other side) and SQLite (files in tmp_path).

Each part checks what the conformance suites cannot: redelivery by the server itself, data
that survives a restart of the server or of the store, and an outage that becomes a
ComponentError in bounded time, then recovery."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest

from runtime.components.api import (
    BindingEvent,
    Delivery,
    Message,
    PubSubFeature,
    SetRequest,
)
from runtime.components.bindings.mqtt import MqttBinding
from runtime.components.errors import BadMetadata, ComponentError, NotSupported
from runtime.components.pubsub.jetstream import JetStreamPubSub, consumer_name, subject_covers
from runtime.components.pubsub.mqtt import MqttPubSub
from runtime.components.sequencer.sqlite import SqliteSequencer
from runtime.components.state.sqlite import SqliteStateStore
from tests.conformance.conftest import nats_server
from tests.support.mqtt import Client
from tests.support.net import free_port, wait_for_port

pytestmark = pytest.mark.integration

WAIT = 10.0
FAST = {"redeliverInitialInterval": "20ms", "redeliverMaxInterval": "100ms"}


class Inbox:
    """A handler recording deliveries; `answer` decides each outcome."""

    def __init__(self, answer: Callable[[Message], Awaitable[Delivery]] | None = None) -> None:
        self.messages: list[Message] = []
        self.arrived: asyncio.Queue[Message] = asyncio.Queue()
        self._answer = answer

    async def __call__(self, message: Message) -> Delivery:
        self.messages.append(message)
        self.arrived.put_nowait(message)
        return Delivery.SUCCESS if self._answer is None else await self._answer(message)

    async def next(self, within: float = WAIT) -> Message:
        async with asyncio.timeout(within):
            return await self.arrived.get()


async def eventually(check: Callable[[], Awaitable[object]], within: float = 20.0) -> object:
    """Retry `check` until it stops raising ComponentError (a service coming back)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except ComponentError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def raises_within(seconds: float, call: Awaitable[object]) -> ComponentError:
    started = time.monotonic()
    with pytest.raises(ComponentError) as caught:
        await call
    assert time.monotonic() - started < seconds
    return caught.value


# -- NATS JetStream ------------------------------------------------------------------------------


class Nats:
    """A private nats-server that can be stopped and started again on its port and store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._server: contextlib.ExitStack | None = None

    def start(self) -> None:
        self._server = contextlib.ExitStack()
        self._server.enter_context(nats_server(self.workdir, self.port))

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@pytest.fixture
def nats_srv(tmp_path: Path) -> Iterator[Nats]:
    server = Nats(tmp_path / "nats")
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def jetstream(server: Nats, **metadata: str) -> AsyncIterator[JetStreamPubSub]:
    pubsub = JetStreamPubSub()
    await pubsub.init({"natsURL": server.url, **FAST, **metadata})
    try:
        yield pubsub
    finally:
        await pubsub.close()


async def test_jetstream_publish_subscribe_with_metadata(nats_srv: Nats) -> None:
    async with jetstream(nats_srv) as pubsub:
        assert pubsub.features == PubSubFeature.AT_LEAST_ONCE | PubSubFeature.DURABLE
        inbox = Inbox()
        await pubsub.subscribe("orders.new", inbox, {"consumerGroup": "shop"})
        await pubsub.publish("orders.new", b'{"id": 7}', {"contentType": "text/plain", "k": "v"})
        message = await inbox.next()
        assert (message.topic, message.data, message.attempt) == ("orders.new", b'{"id": 7}', 1)
        assert message.content_type == "text/plain" and message.metadata["k"] == "v"
        assert message.id == "mecha:1"


async def test_jetstream_creates_the_stream_and_adds_each_topic(nats_srv: Nats) -> None:
    async with jetstream(nats_srv, streamName="shop") as pubsub:
        await pubsub.publish("orders", b"1", {})
        await pubsub.subscribe("invoices", Inbox(), {})
        client = await nats.connect(nats_srv.url)
        try:
            info = await client.jetstream().stream_info("shop")
            assert sorted(info.config.subjects or []) == ["invoices", "orders"]
            assert info.state.messages == 1
        finally:
            await client.close()


async def test_jetstream_uses_an_existing_stream_whose_subjects_cover_the_topic(
    nats_srv: Nats,
) -> None:
    client = await nats.connect(nats_srv.url)
    try:
        await client.jetstream().add_stream(name="events", subjects=["events.>"])
        async with jetstream(nats_srv, streamName="events") as pubsub:
            inbox = Inbox()
            await pubsub.subscribe("events.created", inbox, {})
            await pubsub.publish("events.created", b"e", {})
            assert (await inbox.next()).data == b"e"
        info = await client.jetstream().stream_info("events")
        assert info.config.subjects == ["events.>"]
    finally:
        await client.close()


def test_jetstream_subject_rules() -> None:
    assert subject_covers("orders.*", "orders.new") and subject_covers("a.>", "a.b.c")
    assert not subject_covers("orders.*", "orders") and not subject_covers("a.>", "a")
    assert not subject_covers("orders.new", "orders.*") and subject_covers(">", "x.*")
    assert consumer_name("g", "orders") == "g-orders"
    odd = consumer_name("my group", "orders.new")
    assert odd.startswith("my_group-orders_new-") and odd != consumer_name("my_group", "orders_new")


async def test_jetstream_retry_is_redelivered_by_the_server_after_the_backoff(
    nats_srv: Nats,
) -> None:
    async def retry_once(message: Message) -> Delivery:
        return Delivery.RETRY if message.attempt == 1 else Delivery.SUCCESS

    delays = {"redeliverInitialInterval": "300ms", "redeliverMaxInterval": "1s"}
    async with jetstream(nats_srv, **delays) as pubsub:
        inbox = Inbox(retry_once)
        await pubsub.subscribe("retry", inbox, {"consumerGroup": "g"})
        await pubsub.publish("retry", b"again", {})
        first = await inbox.next()
        started = time.monotonic()
        second = await inbox.next()
        assert time.monotonic() - started >= 0.25  # the nak carried the delay
        assert (first.attempt, second.attempt, second.data) == (1, 2, b"again")


async def test_jetstream_a_subscriber_that_stops_without_ack_hands_over(nats_srv: Nats) -> None:
    started = asyncio.Event()

    async def stuck(message: Message) -> Delivery:
        started.set()
        await asyncio.Event().wait()
        return Delivery.SUCCESS

    async with jetstream(nats_srv) as first, jetstream(nats_srv) as second:
        subscription = await first.subscribe("work", stuck, {"consumerGroup": "g"})
        await second.publish("work", b"job", {})
        async with asyncio.timeout(WAIT):
            await started.wait()
        await subscription.cancel()
        inbox = Inbox()
        await second.subscribe("work", inbox, {"consumerGroup": "g"})
        message = await inbox.next(within=3.0)  # nak'd on cancel: no ackWait to sit out
        assert (message.data, message.attempt) == (b"job", 2)


async def test_jetstream_a_crashed_consumer_is_redelivered_after_ack_wait(nats_srv: Nats) -> None:
    """Another client pulls the message and vanishes without an answer: after ackWait the
    server gives it to the component's subscriber of the same group."""
    async with jetstream(nats_srv, ackWait="1s") as pubsub:
        await pubsub.subscribe("crash", Inbox(), {"consumerGroup": "g"})
        for subscription in list(pubsub._subscriptions):  # keep the consumer, stop pulling
            await subscription.cancel()
        await pubsub.publish("crash", b"orphan", {})
        client = await nats.connect(nats_srv.url)
        try:
            pull = await client.jetstream().pull_subscribe_bind(
                consumer=consumer_name("g", "crash"), stream="mecha"
            )
            (taken,) = await pull.fetch(1, timeout=5)
            assert taken.data == b"orphan"
        finally:
            await client.close()  # no ack, no nak: a crash
        inbox = Inbox()
        await pubsub.subscribe("crash", inbox, {"consumerGroup": "g"})
        message = await inbox.next()
        assert (message.data, message.attempt) == (b"orphan", 2)


async def test_jetstream_a_long_handler_keeps_its_message(nats_srv: Nats) -> None:
    async def slow(message: Message) -> Delivery:
        await asyncio.sleep(2.5)  # beyond ackWait: the in-progress signal keeps it ours
        return Delivery.SUCCESS

    async with jetstream(nats_srv, ackWait="1s") as pubsub:
        inbox = Inbox(slow)
        await pubsub.subscribe("slow", inbox, {"consumerGroup": "g"})
        await pubsub.publish("slow", b"x", {})
        await inbox.next()
        await asyncio.sleep(3.5)
        assert [m.attempt for m in inbox.messages] == [1]


async def test_jetstream_messages_published_without_subscriber_survive_a_server_restart(
    nats_srv: Nats,
) -> None:
    async with jetstream(nats_srv) as pubsub:
        subscription = await pubsub.subscribe("mail", Inbox(), {"consumerGroup": "g"})
        await subscription.cancel()  # the durable consumer stays
        for n in range(3):
            await pubsub.publish("mail", f"m{n}".encode(), {})
    nats_srv.stop()
    nats_srv.start()  # same port, same store directory
    async with jetstream(nats_srv) as pubsub:
        inbox = Inbox()
        await pubsub.subscribe("mail", inbox, {"consumerGroup": "g"})
        assert sorted([(await inbox.next()).data for _ in range(3)]) == [b"m0", b"m1", b"m2"]


async def test_jetstream_a_new_group_starts_at_the_beginning_and_a_plain_one_at_the_end(
    nats_srv: Nats,
) -> None:
    async with jetstream(nats_srv) as pubsub:
        await pubsub.publish("history", b"old", {})
        grouped, plain = Inbox(), Inbox()
        await pubsub.subscribe("history", grouped, {"consumerGroup": "late"})
        await pubsub.subscribe("history", plain, {})
        await pubsub.publish("history", b"new", {})
        assert [(await grouped.next()).data for _ in range(2)] == [b"old", b"new"]
        assert (await plain.next()).data == b"new"


async def test_jetstream_outage_is_a_component_error_in_bounded_time_then_recovers(
    nats_srv: Nats,
) -> None:
    async with jetstream(nats_srv, timeout="1s") as pubsub:
        inbox = Inbox()
        await pubsub.subscribe("up", inbox, {"consumerGroup": "g"})
        await pubsub.publish("up", b"before", {})
        assert (await inbox.next()).data == b"before"
        nats_srv.stop()
        await raises_within(3.0, pubsub.publish("up", b"during", {}))
        await asyncio.sleep(0.5)  # the client noticed by now
        await raises_within(0.5, pubsub.ping())
        await raises_within(0.5, pubsub.publish("up", b"during", {}))
        nats_srv.start()
        await eventually(pubsub.ping)
        await eventually(lambda: pubsub.publish("up", b"after", {}))
        assert (await inbox.next(within=15.0)).data == b"after"


async def test_jetstream_init_fails_in_bounded_time_without_a_server() -> None:
    port = free_port()
    pubsub = JetStreamPubSub()
    metadata = {"natsURL": f"nats://127.0.0.1:{port}", "connectTimeout": "1s"}
    await raises_within(3.0, pubsub.init(metadata))


@pytest.mark.parametrize(
    ("key", "value"),
    [("natsURL", "http://x"), ("streamName", "a.b"), ("deliverPolicy", "soon"),
     ("ackWait", "0s"), ("maxDeliver", "many"), ("memoryStorage", "perhaps")],
)  # fmt: skip
async def test_jetstream_bad_metadata_names_the_key(key: str, value: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        await JetStreamPubSub().init({key: value})
    assert caught.value.key == key


# -- MQTT -----------------------------------------------------------------------------------------


class Mosquitto:
    """A private mosquitto that can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.config = workdir / "mosquitto.conf"
        self.port = free_port()
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["mosquitto", "-c", str(self.config)]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def mqtt(server: Mosquitto, **metadata: str) -> AsyncIterator[MqttPubSub]:
    pubsub = MqttPubSub()
    await pubsub.init({"url": server.url, "consumerID": "it", **FAST, **metadata})
    try:
        yield pubsub
    finally:
        await pubsub.close()


async def wait_until(condition: Callable[[], bool], within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("version", ["4", "5"])
async def test_mqtt_talks_with_paho_both_ways(broker: Mosquitto, version: str) -> None:
    paho = Client(broker.port, "paho", int(version))
    paho.wait_connected()
    try:
        paho.client.subscribe("to-paho", qos=1)
        await wait_until(lambda: bool(paho.subacks))
        async with mqtt(broker, protocolVersion=version) as pubsub:
            inbox = Inbox()
            await pubsub.subscribe("from-paho/+", inbox, {"consumerGroup": "g"})
            paho.client.publish("from-paho/1", b"hello mecha", qos=1)
            message = await inbox.next()
            assert (message.topic, message.data) == ("from-paho/1", b"hello mecha")
            assert message.attempt == 1
            await pubsub.publish("to-paho", b"hello paho", {})
            await wait_until(lambda: bool(paho.messages))
            assert paho.messages[0][:3] == ("to-paho", b"hello paho", 1)
    finally:
        paho.close()


async def test_mqtt5_carries_metadata_and_content_type(broker: Mosquitto) -> None:
    async with mqtt(broker, protocolVersion="5") as pubsub:
        inbox = Inbox()
        await pubsub.subscribe("meta", inbox, {})
        await pubsub.publish("meta", b"x", {"contentType": "text/plain", "k": "v"})
        message = await inbox.next()
        assert (message.content_type, dict(message.metadata)) == ("text/plain", {"k": "v"})


async def test_mqtt_features_follow_qos_and_session(broker: Mosquitto) -> None:
    durable = PubSubFeature.AT_LEAST_ONCE | PubSubFeature.DURABLE
    async with mqtt(broker) as pubsub:
        assert pubsub.features == durable
    for metadata in ({"qos": "0"}, {"cleanSession": "true"}, {"consumerID": ""}):
        async with mqtt(broker, **metadata) as pubsub:
            assert pubsub.features == PubSubFeature.NONE


async def test_mqtt_puback_waits_for_the_handler(broker: Mosquitto) -> None:
    """The handler never answers and mecha stops: the broker still holds the message and
    gives it to the group's next session (a restarted mecha)."""
    started = asyncio.Event()

    async def stuck(message: Message) -> Delivery:
        started.set()
        await asyncio.Event().wait()
        return Delivery.SUCCESS

    async with mqtt(broker) as pubsub:
        await pubsub.subscribe("jobs", stuck, {"consumerGroup": "g"})
        await pubsub.publish("jobs", b"job", {})
        async with asyncio.timeout(WAIT):
            await started.wait()
    async with mqtt(broker) as pubsub:
        inbox = Inbox()
        await pubsub.subscribe("jobs", inbox, {"consumerGroup": "g"})
        message = await inbox.next()
        assert (message.data, message.attempt) == (b"job", 2)


async def test_mqtt_retry_is_retried_in_process(broker: Mosquitto) -> None:
    async def twice(message: Message) -> Delivery:
        return Delivery.RETRY if message.attempt < 3 else Delivery.SUCCESS

    async with mqtt(broker) as pubsub:
        inbox = Inbox(twice)
        await pubsub.subscribe("r", inbox, {"consumerGroup": "g"})
        await pubsub.publish("r", b"x", {})
        assert [(await inbox.next()).attempt for _ in range(3)] == [1, 2, 3]


async def test_mqtt_outage_is_a_component_error_in_bounded_time_then_recovers(
    broker: Mosquitto,
) -> None:
    async with mqtt(broker, timeout="1s") as pubsub:
        inbox = Inbox()
        await pubsub.subscribe("up", inbox, {"consumerGroup": "g"})
        broker.stop()
        await asyncio.sleep(0.3)
        await raises_within(0.5, pubsub.ping())
        await raises_within(2.0, pubsub.publish("up", b"during", {}))
        broker.start()  # a broker without persistence: the subscription is made again
        await eventually(pubsub.ping)
        await eventually(lambda: pubsub.publish("up", b"after", {}))
        assert (await inbox.next(within=15.0)).data == b"after"


async def test_mqtt_init_fails_in_bounded_time_without_a_broker() -> None:
    metadata = {"url": f"tcp://127.0.0.1:{free_port()}", "timeout": "1s"}
    await raises_within(3.0, MqttPubSub().init(metadata))


@pytest.mark.parametrize(
    ("key", "value"),
    [("url", "ssl://host:8883"), ("url", "host:1883"), ("qos", "3"), ("cleanSession", "maybe"),
     ("protocolVersion", "3")],
)  # fmt: skip
async def test_mqtt_bad_metadata_names_the_key(key: str, value: str) -> None:
    metadata = {"url": "tcp://127.0.0.1:1", key: value}
    with pytest.raises(BadMetadata) as caught:
        await MqttPubSub().init(metadata)
    assert caught.value.key == key


async def test_mqtt_binding_output_and_input(broker: Mosquitto) -> None:
    paho = Client(broker.port, "paho-binding", 4)
    paho.wait_connected()
    binding = MqttBinding()
    await binding.init({"url": broker.url, "topic": "devices/+/status", "consumerID": "b1"})
    try:
        events: list[BindingEvent] = []

        async def handler(event: BindingEvent) -> None:
            events.append(event)

        reading = await binding.read(handler)
        paho.client.publish("devices/7/status", b"on", qos=1)
        await wait_until(lambda: bool(events))
        assert (events[0].data, events[0].metadata["topic"]) == (b"on", "devices/7/status")
        paho.client.subscribe("out", qos=1)
        await wait_until(lambda: bool(paho.subacks))
        await binding.invoke("create", b"cmd", {"topic": "out"})
        await wait_until(lambda: bool(paho.messages))
        assert paho.messages[0][:2] == ("out", b"cmd")
        with pytest.raises(NotSupported):
            await binding.invoke("delete", b"", {})
        await reading.cancel()
    finally:
        await binding.close()
        paho.close()


async def test_mqtt_binding_retries_a_failing_handler(broker: Mosquitto) -> None:
    binding = MqttBinding()
    await binding.init({"url": broker.url, "topic": "t", "consumerID": "b2",
                        "backOffMaxRetries": "2", "backOffInitialInterval": "10ms"})  # fmt: skip
    calls: list[bytes] = []

    async def flaky(event: BindingEvent) -> None:
        calls.append(event.data)
        raise RuntimeError("not now")

    try:
        await binding.read(flaky)
        await binding.invoke("create", b"x", {})
        await wait_until(lambda: len(calls) >= 3)
        await asyncio.sleep(0.3)
        assert calls == [b"x"] * 3  # the first try and two retries, then left to the broker
    finally:
        await binding.close()


async def test_mqtt_binding_direction(broker: Mosquitto) -> None:
    binding = MqttBinding()
    await binding.init({"url": broker.url, "topic": "t", "direction": "input"})
    try:
        with pytest.raises(NotSupported):
            await binding.invoke("create", b"x", {})
    finally:
        await binding.close()
    with pytest.raises(BadMetadata):
        await MqttBinding().init({"url": broker.url})


# -- SQLite ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_state(path: Path, **metadata: str) -> AsyncIterator[SqliteStateStore]:
    store = SqliteStateStore()
    await store.init({"connectionString": str(path), **metadata})
    try:
        yield store
    finally:
        await store.close()


async def test_sqlite_state_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with sqlite_state(path) as store:
        await store.set(SetRequest("kept", b"\x00value", ttl=3600))
        await store.set(SetRequest("plain", b"v"))
        etag = (await store.get("kept", {})).etag
    async with sqlite_state(path) as store:
        item = await store.get("kept", {})
        assert (item.value, item.etag) == (b"\x00value", etag)
        assert "ttlExpireTime" in item.metadata
        await store.set(SetRequest("plain", b"v2"))
        assert int((await store.get("plain", {})).etag or 0) > int(etag or 0)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_cleanup_deletes_expired_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with sqlite_state(path, cleanupInterval="100ms", tableName="items") as store:
        await store.set(SetRequest("brief", b"v", ttl=0.1))
        await store.set(SetRequest("forever", b"v"))
        await asyncio.sleep(0.5)
        with sqlite3.connect(path) as connection:
            keys = [row[0] for row in connection.execute("SELECT key FROM items")]
        assert keys == ["forever"]


async def test_sqlite_a_lock_held_elsewhere_is_an_error_in_bounded_time_not_a_blocked_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    async with sqlite_state(path, busyTimeout="500ms") as store:
        await store.set(SetRequest("k", b"v1"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker(), name="ticker")
        try:
            error = await raises_within(2.0, store.set(SetRequest("k", b"v2")))
            assert error.retryable and ticks >= 20  # the loop ran while the thread waited
        finally:
            task.cancel()
            other.execute("ROLLBACK")
            other.close()
        await store.set(SetRequest("k", b"v3"))  # and it recovers
        assert (await store.get("k", {})).value == b"v3"


async def test_sqlite_in_memory_database(tmp_path: Path) -> None:
    store = SqliteStateStore()
    await store.init({"connectionString": ":memory:"})
    try:
        await store.set(SetRequest("k", b"v"))
        assert (await store.get("k", {})).value == b"v"
        await store.ping()
    finally:
        await store.close()
    with pytest.raises(ComponentError):
        await store.get("k", {})


@pytest.mark.parametrize(
    ("key", "value"),
    [("connectionString", ""), ("tableName", "bad name"), ("cleanupInterval", "often"),
     ("disableWAL", "perhaps"), ("timeout", "0")],
)  # fmt: skip
async def test_sqlite_bad_metadata_names_the_key(tmp_path: Path, key: str, value: str) -> None:
    metadata = {"connectionString": str(tmp_path / "x.db"), key: value}
    with pytest.raises(BadMetadata) as caught:
        await SqliteStateStore().init(metadata)
    assert caught.value.key == key


async def test_sqlite_sequence_is_strictly_increasing_and_durable(tmp_path: Path) -> None:
    path = str(tmp_path / "seq.db")
    first, second = SqliteSequencer(), SqliteSequencer()
    await first.init({"connectionString": path})
    await second.init({"connectionString": path})  # a second process on the same file
    try:
        calls = [s.next_id("order", {}) for _ in range(50) for s in (first, second)]
        ids = await asyncio.gather(*calls)
        assert sorted(ids) == list(range(1, 101))
        assert await first.next_id("other", {}) == 1
    finally:
        await first.close()
        await second.close()
    again = SqliteSequencer()
    await again.init({"connectionString": path, "tableName": "sequencer"})
    try:
        assert await again.next_id("order", {}) == 101
    finally:
        await again.close()
