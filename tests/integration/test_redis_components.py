"""The Redis components against private redis-server instances and a real Redis Cluster."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from runtime.components import registry
from runtime.components.api import (
    BindingResponse,
    ConfigurationItem,
    DeleteRequest,
    Delivery,
    Message,
    Metadata,
    SetRequest,
)
from runtime.components.bindings.redis import RedisOutputBinding
from runtime.components.configuration.redis import RedisConfigurationStore
from runtime.components.errors import (
    BadMetadata,
    ComponentError,
    EtagInvalid,
    EtagMismatch,
    NotSupported,
)
from runtime.components.lock.redis import RedisLockStore
from runtime.components.pubsub.redis import RedisStreamsPubSub
from runtime.components.sequencer.redis import RedisSequencer
from runtime.components.state.redis import RedisStateStore
from tests.support.net import free_port
from tests.support.redis import ClusterNodes, redis_cluster, redis_server

pytestmark = pytest.mark.integration

FAST_REDELIVERY = {"processingTimeout": "300ms", "redeliverInterval": "100ms"}


class _Component(Protocol):
    async def init(self, metadata: Metadata) -> None: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=_Component)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


@pytest.fixture(params=["node", "cluster"])
def target(request: pytest.FixtureRequest) -> dict[str, str]:
    """Connection metadata of a private standalone server, then of the module's cluster."""
    if request.param == "node":
        return {"redisHost": f"127.0.0.1:{request.getfixturevalue('redis_port')}"}
    nodes: ClusterNodes = request.getfixturevalue("cluster")
    seeds = ",".join(f"127.0.0.1:{port}" for port in nodes.ports[:2])
    return {"redisHost": seeds, "redisType": "cluster"}


@pytest.fixture
def standalone(redis_port: int) -> dict[str, str]:
    return {"redisHost": f"127.0.0.1:{redis_port}"}


@asynccontextmanager
async def started(component: C, metadata: Metadata) -> AsyncIterator[C]:
    await component.init(metadata)
    try:
        yield component
    finally:
        await component.close()


@asynccontextmanager
async def raw(metadata: Metadata) -> AsyncIterator[Any]:
    """A plain redis-py client on the same Redis, to look behind the components."""
    host, _, port = metadata["redisHost"].split(",")[0].rpartition(":")
    client: Any
    if metadata.get("redisType") == "cluster":
        client = RedisCluster(host=host, port=int(port))
    else:
        client = aioredis.Redis(host=host, port=int(port))
    try:
        yield client
    finally:
        await client.aclose()


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"redisHost": "127.0.0.1:1", "enableTLS": "true"}, "enableTLS"),
        ({"redisHost": "127.0.0.1:1", "failover": "true"}, "failover"),
        ({"redisHost": "127.0.0.1:1", "redisType": "sentinel"}, "redisType"),
        ({"redisHost": "a:1,b:2"}, "redisHost"),
        ({}, "redisHost"),
        ({"redisHost": "127.0.0.1:1", "timeout": "soon"}, "timeout"),
        ({"redisHost": "127.0.0.1:1", "redisDB": "x"}, "redisDB"),
    ],
)
async def test_bad_metadata_is_refused_with_its_key(metadata: dict[str, str], key: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        await RedisStateStore().init(metadata)
    assert caught.value.key == key


async def test_pubsub_metadata_is_checked() -> None:
    with pytest.raises(BadMetadata, match="queueDepth"):
        await RedisStreamsPubSub().init({"redisHost": "127.0.0.1:1", "queueDepth": "0"})


async def test_unreachable_server_fails_init_quickly() -> None:
    began = time.monotonic()
    component = RedisSequencer()
    with pytest.raises(ComponentError):
        await component.init({"redisHost": f"127.0.0.1:{free_port()}", "timeout": "500ms"})
    await component.close()
    assert time.monotonic() - began < 3


def test_registry_names_every_redis_backend() -> None:
    kinds = {"state.redis": RedisStateStore, "pubsub.redis": RedisStreamsPubSub,
             "lock.redis": RedisLockStore, "sequencer.redis": RedisSequencer,
             "configuration.redis": RedisConfigurationStore,
             "bindings.redis": RedisOutputBinding}  # fmt: skip
    for name, cls in kinds.items():
        assert isinstance(registry.create(name), cls)


# -- state ----------------------------------------------------------------------------------------


async def test_state_etags_follow_the_concurrency_rules(target: dict[str, str]) -> None:
    key = unique("app||")
    async with started(RedisStateStore(), target) as store:
        assert (await store.get(key, {})).value is None
        await store.set(SetRequest(key, b"one"))
        first = await store.get(key, {})
        assert first.value == b"one" and first.etag and first.etag.isdigit()
        await store.set(SetRequest(key, b"two", etag=first.etag))
        second = await store.get(key, {})
        assert int(second.etag or 0) > int(first.etag)
        with pytest.raises(EtagMismatch):
            await store.set(SetRequest(key, b"stale", etag=first.etag))
        with pytest.raises(EtagInvalid):
            await store.set(SetRequest(key, b"bad", etag="not-a-number"))
        with pytest.raises(EtagMismatch):
            await store.set(SetRequest(key, b"new?", concurrency=_first_write()))
        with pytest.raises(EtagMismatch):
            await store.delete(DeleteRequest(key, etag=first.etag))
        await store.set(SetRequest(key, b"last"))  # last-write without etag overwrites
        assert (await store.get(key, {})).value == b"last"
        with pytest.raises(EtagMismatch):
            await store.set(SetRequest(unique(), b"x", etag="1"))  # a missing item: no etag
        await store.delete(DeleteRequest(key, etag=(await store.get(key, {})).etag))
        assert (await store.get(key, {})).value is None
        await store.set(SetRequest(key, b"again", concurrency=_first_write()))
        again = await store.get(key, {})
        assert again.etag not in (first.etag, second.etag)


def _first_write() -> Any:
    from runtime.components.api import Concurrency

    return Concurrency.FIRST_WRITE


async def test_state_uses_dapr_layout_and_reads_dapr_items(standalone: dict[str, str]) -> None:
    async with started(RedisStateStore(), standalone) as store, raw(standalone) as client:
        await store.set(SetRequest("app||mine", b'{"a":1}'))
        stored = await client.hgetall("app||mine")
        assert stored[b"data"] == b'{"a":1}' and stored[b"version"].isdigit()
        await client.hset("app||dapr", mapping={"data": "from dapr", "version": "3"})
        item = await store.get("app||dapr", {})
        assert (item.value, item.etag) == (b"from dapr", "3")
        await store.set(SetRequest("app||dapr", b"updated", etag="3"))
        await client.set("app||plain", "legacy string")
        legacy = await store.get("app||plain", {})
        assert (legacy.value, legacy.etag) == (b"legacy string", None)
        await store.set(SetRequest("app||plain", b"now a hash"))
        assert await client.type("app||plain") == b"hash"


async def test_state_ttl_expires_and_a_plain_write_persists(target: dict[str, str]) -> None:
    key, kept = unique("ttl||"), unique("ttl||")
    async with started(RedisStateStore(), target) as store:
        await store.set(SetRequest(key, b"short", ttl=0.5))
        await store.set(SetRequest(kept, b"was short", metadata={"ttlInSeconds": "1"}))
        item = await store.get(key, {})
        expires = item.metadata["ttlExpireTime"]
        assert expires.endswith("Z") and expires[:4].isdigit()
        await store.set(SetRequest(kept, b"forever"))
        assert "ttlExpireTime" not in (await store.get(kept, {})).metadata
        await asyncio.sleep(1.2)
        assert (await store.get(key, {})).value is None
        assert (await store.get(kept, {})).value == b"forever"


async def test_state_default_ttl_from_component_metadata(standalone: dict[str, str]) -> None:
    async with started(RedisStateStore(), {**standalone, "ttlInSeconds": "100"}) as store:
        await store.set(SetRequest("k", b"v"))
        await store.set(SetRequest("never", b"v", ttl=-1))
        assert "ttlExpireTime" in (await store.get("k", {})).metadata
        assert "ttlExpireTime" not in (await store.get("never", {})).metadata


async def test_state_bulk_operations(target: dict[str, str]) -> None:
    keys = [unique("bulk||") for _ in range(20)]
    async with started(RedisStateStore(), target) as store:
        await store.bulk_set([SetRequest(key, key.encode()) for key in keys])
        items = await store.bulk_get([*keys, "bulk||missing"], {})
        assert [item.value for item in items] == [key.encode() for key in keys] + [None]
        with pytest.raises(EtagMismatch) as caught:
            await store.bulk_set([SetRequest(keys[0], b"x"), SetRequest(keys[1], b"y", etag="7"),
                                  SetRequest(keys[2], b"z", etag="bad")])  # fmt: skip
        assert caught.value.key == keys[1]
        assert (await store.get(keys[0], {})).value == b"x"  # not atomic: the rest was done
        await store.bulk_delete([DeleteRequest(key) for key in keys])
        assert all(item.value is None for item in await store.bulk_get(keys, {}))


async def test_state_transactions_are_all_or_nothing(target: dict[str, str]) -> None:
    tag = unique()
    a, b, c = (f"app||order{{{tag}}}-{part}" for part in "abc")
    async with started(RedisStateStore(), target) as store:
        await store.set(SetRequest(a, b"a0"))
        etag_a = (await store.get(a, {})).etag
        with pytest.raises(EtagMismatch) as caught:
            await store.transact([SetRequest(b, b"b1"), SetRequest(a, b"a1", etag="1"),
                                  DeleteRequest(c)], {})  # fmt: skip
        assert caught.value.key == a
        assert [i.value for i in await store.bulk_get([a, b], {})] == [b"a0", None]
        await store.transact([SetRequest(b, b"b1"), SetRequest(a, b"a1", etag=etag_a),
                              SetRequest(c, b"c1", ttl=60), DeleteRequest(b)], {})  # fmt: skip
        items = await store.bulk_get([a, b, c], {})
        assert [i.value for i in items] == [b"a1", None, b"c1"]
        assert "ttlExpireTime" in items[2].metadata
        # Later operations are checked against what the earlier ones would write.
        fresh = [SetRequest(b, b"b2", concurrency=_first_write())]
        with pytest.raises(EtagMismatch):
            await store.transact(fresh * 2, {})
        assert (await store.get(b, {})).value is None
        await store.transact([*fresh, DeleteRequest(b), *fresh], {})
        assert (await store.get(b, {})).value == b"b2"


async def test_state_cluster_transaction_needs_one_slot(target: dict[str, str]) -> None:
    if target.get("redisType") != "cluster":
        pytest.skip("a standalone server has no slots")
    keys = ["app||alpha", "app||beta"]
    assert key_slot(keys[0].encode()) != key_slot(keys[1].encode())
    async with started(RedisStateStore(), target) as store:
        with pytest.raises(ComponentError, match="hash tag") as caught:
            await store.transact([SetRequest(key, b"x") for key in keys], {})
        assert not caught.value.retryable
        assert [i.value for i in await store.bulk_get(keys, {})] == [None, None]


# -- pub/sub --------------------------------------------------------------------------------------


class Inbox:
    """A handler that records messages and answers from a script (then SUCCESS)."""

    def __init__(self, *answers: Delivery, hang: bool = False) -> None:
        self.messages: list[Message] = []
        self.answers = list(answers)
        self.hang = hang
        self.arrived = asyncio.Event()

    async def __call__(self, message: Message) -> Delivery:
        self.messages.append(message)
        self.arrived.set()
        if self.hang:
            await asyncio.Event().wait()
        return self.answers.pop(0) if self.answers else Delivery.SUCCESS

    def data(self) -> list[bytes]:
        return [m.data for m in self.messages]

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async def enough() -> bool:
            return len(self.messages) >= count

        await eventually(enough, within)


async def _pending(client: Any, topic: str, group: str) -> int:
    return int((await client.xpending(topic, group))["pending"])


async def test_pubsub_delivers_and_acknowledges(target: dict[str, str]) -> None:
    topic, inbox = unique("orders-"), Inbox()
    async with started(RedisStreamsPubSub(), target) as pubsub, raw(target) as client:
        subscription = await pubsub.subscribe(topic, inbox, {})
        for i in range(30):
            await pubsub.publish(topic, f"m{i}".encode(), {"traceid": str(i)} if i == 0 else {})
        await inbox.wait_for(30)
        assert sorted(inbox.data()) == sorted(f"m{i}".encode() for i in range(30))
        first = next(m for m in inbox.messages if m.data == b"m0")
        assert first.metadata == {"traceid": "0"} and first.attempt == 1 and first.id
        await eventually(lambda: _zero(_pending(client, topic, "mecha")))
        await subscription.cancel()


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_pubsub_retry_and_exceptions_are_redelivered(target: dict[str, str]) -> None:
    topic = unique("retry-")
    inbox = Inbox(Delivery.RETRY, Delivery.RETRY)
    async with started(RedisStreamsPubSub(), {**target, **FAST_REDELIVERY}) as pubsub:
        await pubsub.subscribe(topic, inbox, {})
        await pubsub.publish(topic, b"again", {})
        await inbox.wait_for(3)
        assert [m.attempt for m in inbox.messages] == [1, 2, 3]
        assert len({m.id for m in inbox.messages}) == 1

        failing = Inbox()

        async def explode(message: Message) -> Delivery:
            if not failing.messages:
                await failing(message)
                raise RuntimeError("handler bug")
            return await failing(message)

        topic2 = unique("boom-")
        await pubsub.subscribe(topic2, explode, {})
        await pubsub.publish(topic2, b"x", {})
        await failing.wait_for(2)
        await asyncio.sleep(0.5)
        assert len(failing.messages) == 2


async def test_pubsub_drop_acknowledges(standalone: dict[str, str]) -> None:
    topic, inbox = "drop", Inbox(Delivery.DROP)
    async with started(RedisStreamsPubSub(), {**standalone, **FAST_REDELIVERY}) as pubsub:
        await pubsub.subscribe(topic, inbox, {})
        await pubsub.publish(topic, b"unwanted", {})
        await inbox.wait_for(1)
        await asyncio.sleep(0.6)
        assert len(inbox.messages) == 1


async def test_pubsub_crashed_subscriber_messages_are_redelivered(
    target: dict[str, str],
) -> None:
    topic = unique("crash-")
    metadata = {**target, **FAST_REDELIVERY}
    async with started(RedisStreamsPubSub(), metadata) as first, raw(target) as client:
        stuck = Inbox(hang=True)
        await first.subscribe(topic, stuck, {})
        await first.publish(topic, b"in flight", {})
        await stuck.arrived.wait()
    # The first mecha is gone without acknowledging; another process read one more and died.
    async with raw(target) as client:
        await client.xadd(topic, {"data": b"read by a crashed mecha"})
        await client.xreadgroup("mecha", "crashed-consumer", {topic: ">"}, count=1)
        assert await _pending(client, topic, "mecha") == 2
        inbox = Inbox()
        async with started(RedisStreamsPubSub(), metadata) as second:
            await second.subscribe(topic, inbox, {})
            await inbox.wait_for(2)
            assert sorted(inbox.data()) == [b"in flight", b"read by a crashed mecha"]
            assert all(m.attempt >= 2 for m in inbox.messages)
            await eventually(lambda: _zero(_pending(client, topic, "mecha")))


async def test_pubsub_groups_compete_and_plain_subscribers_get_copies(
    standalone: dict[str, str],
) -> None:
    """Two mechas of one app: plain subscribers of one mecha each get every message its
    consumer reads, the app's mechas share the messages, and so do the members of a group."""
    topic, metadata = "shared", {**standalone, "consumerID": "app1"}
    a, b, c, member1, member2 = Inbox(), Inbox(), Inbox(), Inbox(), Inbox()
    pubsubs = started(RedisStreamsPubSub(), metadata), started(RedisStreamsPubSub(), metadata)
    async with pubsubs[0] as one, pubsubs[1] as two:
        await one.subscribe(topic, a, {})
        await one.subscribe(topic, b, {})
        await two.subscribe(topic, c, {})
        await one.subscribe(topic, member1, {"consumerGroup": "workers"})
        await two.subscribe(topic, member2, {"consumerGroup": "workers"})
        for i in range(40):
            await one.publish(topic, str(i).encode(), {})
        everything = sorted(str(i).encode() for i in range(40))
        await eventually(_async(lambda: len(a.messages) + len(c.messages) == 40))
        await eventually(_async(lambda: len(b.messages) + len(c.messages) == 40))
        await eventually(_async(lambda: len(member1.messages) + len(member2.messages) == 40))
        assert sorted(a.data()) == sorted(b.data())
        assert sorted(a.data() + c.data()) == everything
        assert sorted(member1.data() + member2.data()) == everything


async def test_pubsub_plain_subscriber_retry_is_redelivered_to_it_alone(
    standalone: dict[str, str],
) -> None:
    happy, picky = Inbox(), Inbox(Delivery.RETRY)
    async with started(RedisStreamsPubSub(), {**standalone, **FAST_REDELIVERY}) as pubsub:
        await pubsub.subscribe("t", happy, {})
        cancelled = await pubsub.subscribe("t", picky, {})
        await pubsub.publish("t", b"m", {})
        await picky.wait_for(2)
        assert [m.attempt for m in picky.messages] == [1, 2]
        assert len(happy.messages) == 1
        await cancelled.cancel()
        await pubsub.publish("t", b"n", {})
        await happy.wait_for(2)
        assert len(picky.messages) == 2


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return check()

    return wrapped


async def test_pubsub_new_group_reads_from_the_start_and_stream_is_capped(
    standalone: dict[str, str],
) -> None:
    metadata = {**standalone, "maxLenApprox": "100"}
    async with started(RedisStreamsPubSub(), metadata) as pubsub, raw(standalone) as client:
        for i in range(1000):
            await pubsub.publish("capped", str(i).encode(), {})
        assert await client.xlen("capped") < 1000
        inbox = Inbox()
        await pubsub.subscribe("capped", inbox, {})
        await inbox.wait_for(await client.xlen("capped"))
        assert inbox.messages[-1].data == b"999"


async def test_pubsub_concurrency_bounds_handlers(standalone: dict[str, str]) -> None:
    running, peak = 0, 0
    done = Inbox()

    async def slow(message: Message) -> Delivery:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return await done(message)

    metadata = {**standalone, "concurrency": "3", "queueDepth": "5"}
    async with started(RedisStreamsPubSub(), metadata) as pubsub:
        await pubsub.subscribe("slow", slow, {})
        for i in range(20):
            await pubsub.publish("slow", str(i).encode(), {})
        await done.wait_for(20)
    assert peak == 3


# -- locks ----------------------------------------------------------------------------------------


async def test_lock_owner_rules_and_fencing(target: dict[str, str]) -> None:
    resource = unique("lock||")
    async with started(RedisLockStore(), target) as locks:
        first = await locks.try_lock(resource, "alice", 0.3)
        assert first.success and first.fencing_token > 0
        assert not (await locks.try_lock(resource, "bob", 10)).success
        assert not (await locks.try_lock(resource, "alice", 10)).success  # not re-entrant
        assert await locks.unlock(resource, "bob") == 2  # LOCK_BELONGS_TO_OTHERS
        assert await locks.renew(resource, "bob", 10) == 2
        assert await locks.renew(resource, "alice", 0.3) == 0
        await asyncio.sleep(0.45)
        assert await locks.unlock(resource, "alice") == 1  # expired: LOCK_DOES_NOT_EXIST
        second = await locks.try_lock(resource, "bob", 10)
        assert second.success and second.fencing_token > first.fencing_token
        assert await locks.unlock(resource, "bob") == 0
        third = await locks.try_lock(resource, "carol", 10)
        assert third.fencing_token > second.fencing_token
    async with started(RedisLockStore(), target) as restarted:  # the counter is in Redis
        await restarted.unlock(resource, "carol")
        assert (await restarted.try_lock(resource, "dave", 1)).fencing_token > third.fencing_token


def test_lock_fence_key_shares_the_lock_slot() -> None:
    locks = RedisLockStore()
    for resource in ["plain", "app||lock||x", "with{tag}inside", "a{b", "{}odd"]:
        fence = locks.fence_key(resource)
        assert fence != resource
        if "}" not in resource or "{tag}" in resource:
            assert key_slot(fence.encode()) == key_slot(resource.encode()), resource


# -- sequencer ------------------------------------------------------------------------------------


async def test_sequencer_increases_and_persists(target: dict[str, str]) -> None:
    key = unique("seq||")
    async with started(RedisSequencer(), target) as sequencer:
        ids = [await sequencer.next_id(key, {}) for _ in range(5)]
        assert ids == [1, 2, 3, 4, 5]
        other = await sequencer.next_id(unique("seq||"), {})
        assert other == 1
    async with started(RedisSequencer(), target) as restarted:
        assert await restarted.next_id(key, {}) == 6


# -- configuration --------------------------------------------------------------------------------


async def test_configuration_get_reads_dapr_layout(standalone: dict[str, str]) -> None:
    async with started(RedisConfigurationStore(), standalone) as store, raw(standalone) as client:
        await client.set("color", "blue||v7")
        await client.set("size", "large")
        await client.hset("not-config", "data", "x")
        got = await store.get(["color", "size", "missing", "not-config"], {})
        assert got == {"color": ConfigurationItem("blue", "v7"), "size": ConfigurationItem("large")}
        assert await store.get([], {}) == got


async def test_configuration_subscription_sees_changes(standalone: dict[str, str]) -> None:
    seen: asyncio.Queue[dict[str, ConfigurationItem]] = asyncio.Queue()

    async def handler(items: dict[str, ConfigurationItem]) -> None:
        await seen.put(items)

    async with started(RedisConfigurationStore(), standalone) as store, raw(standalone) as client:
        one = await store.subscribe(["flag"], handler, {})
        await client.set("other", "ignored")
        await client.set("flag", "on||2")
        assert await asyncio.wait_for(seen.get(), 5) == {"flag": ConfigurationItem("on", "2")}
        await client.delete("flag")
        deleted = await asyncio.wait_for(seen.get(), 5)
        assert deleted["flag"].value == "" and deleted["flag"].metadata == {"deleted": "true"}
        await one.cancel()
        every = await store.subscribe([], handler, {})
        await client.set("anything", "x")
        assert await asyncio.wait_for(seen.get(), 5) == {"anything": ConfigurationItem("x")}
        await every.cancel()
        flags = await client.config_get("notify-keyspace-events")
        assert "K" in flags["notify-keyspace-events"]


async def test_configuration_can_leave_server_config_alone(standalone: dict[str, str]) -> None:
    metadata = {**standalone, "enableKeyspaceEvents": "false"}
    async with started(RedisConfigurationStore(), metadata) as store, raw(standalone) as client:
        subscription = await store.subscribe(["k"], _ignore, {})
        assert (await client.config_get("notify-keyspace-events"))["notify-keyspace-events"] == ""
        await subscription.cancel()


async def _ignore(items: dict[str, ConfigurationItem]) -> None:
    return None


# -- bindings ------------------------------------------------------------------------------------


async def test_binding_operations(standalone: dict[str, str]) -> None:
    async with started(RedisOutputBinding(), standalone) as binding, raw(standalone) as client:
        assert await binding.invoke("create", b"hello", {"key": "k"}) == BindingResponse()
        assert (await binding.invoke("get", b"", {"key": "k"})).data == b"hello"
        await binding.invoke("create", b"brief", {"key": "t", "ttlInSeconds": "100"})
        assert 0 < await client.ttl("t") <= 100
        assert (await binding.invoke("increment", b"", {"key": "n"})).data == b"1"
        second = await binding.invoke("increment", b"", {"key": "n", "ttlInSeconds": "50"})
        assert second.data == b"2"
        assert 0 < await client.ttl("n") <= 50
        await binding.invoke("delete", b"", {"key": "k"})
        assert (await binding.invoke("get", b"", {"key": "k"})).data == b""
        with pytest.raises(ComponentError, match="'key'"):
            await binding.invoke("get", b"", {})
        with pytest.raises(NotSupported):
            await binding.invoke("list", b"", {"key": "k"})


# -- outages --------------------------------------------------------------------------------------


async def test_outage_is_an_error_quickly_and_recovery_is_automatic(tmp_path: Path) -> None:
    port = free_port()
    metadata = {"redisHost": f"127.0.0.1:{port}", "timeout": "1s", **FAST_REDELIVERY}
    state, pubsub, config = RedisStateStore(), RedisStreamsPubSub(), RedisConfigurationStore()
    inbox, changes = Inbox(), asyncio.Queue[dict[str, ConfigurationItem]]()

    async def on_change(items: dict[str, ConfigurationItem]) -> None:
        await changes.put(items)

    with redis_server(tmp_path, port=port):
        for component in (state, pubsub, config):
            await component.init(metadata)
        await state.set(SetRequest("k", b"before"))
        await pubsub.subscribe("t", inbox, {})
        await config.subscribe(["c"], on_change, {})
    try:
        for attempt in (state.get("k", {}), state.ping(), pubsub.publish("t", b"lost", {})):
            began = time.monotonic()
            with pytest.raises(ComponentError):
                await attempt
            assert time.monotonic() - began < 2.5
        await asyncio.sleep(0.5)  # the subscription loops keep failing meanwhile
        with redis_server(tmp_path, port=port):
            await state.set(SetRequest("k", b"after"))
            assert (await state.get("k", {})).value == b"after"
            await pubsub.publish("t", b"back", {})
            await inbox.wait_for(1, within=10)
            assert inbox.data() == [b"back"]
            async with raw(metadata) as client:
                await _changed_eventually(client, changes)
    finally:
        for component in (state, pubsub, config):
            await component.close()


async def _changed_eventually(client: Any, changes: asyncio.Queue[Any]) -> None:
    """The keyspace subscription comes back (and re-enables events on the new server)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await client.set("c", f"value||{time.monotonic()}")
        try:
            items = await asyncio.wait_for(changes.get(), 0.5)
        except TimeoutError:
            continue
        assert items["c"].value == "value"
        return
    raise AssertionError("no configuration change seen after the restart")
