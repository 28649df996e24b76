"""Pub/sub: delivery, acknowledgement and redelivery, consumer groups, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

from runtime.components.api import Delivery, Message, PubSub, PubSubFeature
from runtime.components.errors import BadMetadata, ComponentError
from runtime.components.pubsub.memory import InMemoryPubSub
from tests.conformance.conftest import Backend

BLOCK = "pubsub"
WAIT = 5.0
"""The longest a message may take to arrive (or to be redelivered)."""
QUIET = 0.2
"""How long to watch for a delivery that must not happen."""

Answer = Callable[[Message], Awaitable[Delivery]]


async def success(message: Message) -> Delivery:
    return Delivery.SUCCESS


class Inbox:
    """A handler that records every delivery and answers with `answer`; inboxes that share
    `arrived` can be read as one."""

    def __init__(self, answer: Answer = success, arrived: asyncio.Queue[Message] | None = None):
        self.messages: list[Message] = []
        self._answer = answer
        self._arrived = asyncio.Queue() if arrived is None else arrived

    async def __call__(self, message: Message) -> Delivery:
        self.messages.append(message)
        self._arrived.put_nowait(message)
        return await self._answer(message)

    async def next(self) -> Message:
        async with asyncio.timeout(WAIT):
            return await self._arrived.get()

    async def take(self, count: int) -> list[Message]:
        return [await self.next() for _ in range(count)]

    async def nothing_more(self) -> None:
        await asyncio.sleep(QUIET)
        assert self._arrived.empty(), [m.data for m in self.messages]

    @property
    def data(self) -> list[bytes]:
        return [message.data for message in self.messages]


def needs(pubsub: PubSub, feature: PubSubFeature) -> None:
    if feature not in pubsub.features:
        pytest.skip(f"the backend does not declare {feature.name}")


async def publish_all(pubsub: PubSub, topic: str, count: int) -> list[bytes]:
    payloads = [f"message {n}".encode() for n in range(count)]
    for payload in payloads:
        await pubsub.publish(topic, payload, {})
    return payloads


# -- delivery -------------------------------------------------------------------------------------


async def test_a_subscriber_receives_what_is_published(backend: PubSub) -> None:
    inbox = Inbox()
    await backend.subscribe("orders", inbox, {})
    await backend.publish("orders", b'{"id": 1}', {})
    message = await inbox.next()
    assert (message.topic, message.data, message.attempt) == ("orders", b'{"id": 1}', 1)
    await inbox.nothing_more()


async def test_topics_are_separate(backend: PubSub) -> None:
    orders, invoices = Inbox(), Inbox()
    await backend.subscribe("orders", orders, {})
    await backend.subscribe("invoices", invoices, {})
    await backend.publish("invoices", b"i", {})
    assert (await invoices.next()).data == b"i"
    await orders.nothing_more()


async def test_independent_subscribers_each_receive_every_message(backend: PubSub) -> None:
    inboxes = [Inbox() for _ in range(3)]
    for inbox in inboxes:
        await backend.subscribe("news", inbox, {})
    payloads = await publish_all(backend, "news", 5)
    for inbox in inboxes:
        assert sorted(m.data for m in await inbox.take(5)) == payloads
    await asyncio.gather(*(inbox.nothing_more() for inbox in inboxes))


async def test_one_subscriber_gets_the_messages_in_publish_order(
    backend: PubSub, backend_spec: Backend
) -> None:
    if not backend_spec.ordered:
        pytest.skip("the backend does not promise ordering")
    inbox = Inbox()
    await backend.subscribe("ordered", inbox, {})
    payloads = await publish_all(backend, "ordered", 50)
    assert [m.data for m in await inbox.take(50)] == payloads


async def test_many_messages_all_arrive(backend: PubSub) -> None:
    inbox = Inbox()
    await backend.subscribe("bulk", inbox, {})
    payloads = await publish_all(backend, "bulk", 300)
    assert sorted(m.data for m in await inbox.take(300)) == sorted(payloads)


# -- consumer groups ------------------------------------------------------------------------------


async def slowly(message: Message) -> Delivery:
    await asyncio.sleep(0.01)
    return Delivery.SUCCESS


async def test_a_consumer_group_shares_the_messages(backend: PubSub) -> None:
    arrived: asyncio.Queue[Message] = asyncio.Queue()
    members = [Inbox(slowly, arrived), Inbox(slowly, arrived)]
    for member in members:
        await backend.subscribe("jobs", member, {"consumerGroup": "workers"})
    payloads = await publish_all(backend, "jobs", 20)
    received = [m.data for m in await members[0].take(20)]
    await members[0].nothing_more()
    assert sorted(received) == sorted(payloads)  # each message once
    assert all(member.messages for member in members)  # both did some of the work


async def test_groups_and_plain_subscribers_each_get_a_copy(backend: PubSub) -> None:
    group = [Inbox(), Inbox()]
    other_group, plain = Inbox(), Inbox()
    for member in group:
        await backend.subscribe("events", member, {"consumerGroup": "a"})
    await backend.subscribe("events", other_group, {"consumerGroup": "b"})
    await backend.subscribe("events", plain, {})
    payloads = await publish_all(backend, "events", 6)
    assert sorted(m.data for m in await plain.take(6)) == payloads
    assert sorted(m.data for m in await other_group.take(6)) == payloads
    await asyncio.sleep(QUIET)
    assert sorted(group[0].data + group[1].data) == payloads


# -- acknowledgement and redelivery ---------------------------------------------------------------


async def test_retry_redelivers(backend: PubSub) -> None:
    async def retry_once(message: Message) -> Delivery:
        return Delivery.RETRY if message.attempt == 1 else Delivery.SUCCESS

    inbox = Inbox(retry_once)
    await backend.subscribe("retry", inbox, {})
    await backend.publish("retry", b"again", {})
    first, second = await inbox.take(2)
    assert first.data == second.data == b"again"
    assert second.attempt > first.attempt == 1
    await inbox.nothing_more()


async def test_an_exception_redelivers(backend: PubSub) -> None:
    async def fail_once(message: Message) -> Delivery:
        if message.attempt == 1:
            raise RuntimeError("the handler broke")
        return Delivery.SUCCESS

    inbox = Inbox(fail_once)
    await backend.subscribe("boom", inbox, {})
    await backend.publish("boom", b"again", {})
    first, second = await inbox.take(2)
    assert (first.data, second.data) == (b"again", b"again")
    assert second.attempt > 1
    await inbox.nothing_more()


async def test_retries_go_on_until_success(backend: PubSub) -> None:
    async def third_time_lucky(message: Message) -> Delivery:
        return Delivery.SUCCESS if message.attempt >= 3 else Delivery.RETRY

    inbox = Inbox(third_time_lucky)
    await backend.subscribe("stubborn", inbox, {})
    await backend.publish("stubborn", b"x", {})
    assert [m.attempt for m in await inbox.take(3)] == [1, 2, 3]
    await inbox.nothing_more()


@pytest.mark.parametrize("answer", [Delivery.SUCCESS, Delivery.DROP])
async def test_success_and_drop_acknowledge(backend: PubSub, answer: Delivery) -> None:
    async def fixed(message: Message) -> Delivery:
        return answer

    inbox = Inbox(fixed)
    await backend.subscribe("acked", inbox, {"consumerGroup": "g"})
    await backend.publish("acked", b"once", {})
    assert (await inbox.next()).data == b"once"
    await inbox.nothing_more()


async def test_a_retried_message_does_not_block_the_others(backend: PubSub) -> None:
    async def retry_poison(message: Message) -> Delivery:
        if message.data == b"poison" and message.attempt < 3:
            return Delivery.RETRY
        return Delivery.SUCCESS

    inbox = Inbox(retry_poison)
    await backend.subscribe("mixed", inbox, {})
    await backend.publish("mixed", b"poison", {})
    await backend.publish("mixed", b"fine", {})
    received = [m.data for m in await inbox.take(4)]
    assert sorted(received) == [b"fine", b"poison", b"poison", b"poison"]


# -- cancellation and restarts --------------------------------------------------------------------


async def test_cancel_stops_delivery(backend: PubSub) -> None:
    inbox, other = Inbox(), Inbox()
    subscription = await backend.subscribe("news", inbox, {})
    await backend.subscribe("news", other, {})
    await backend.publish("news", b"before", {})
    assert (await inbox.next()).data == b"before"
    await subscription.cancel()
    await backend.publish("news", b"after", {})
    assert [m.data for m in await other.take(2)] == [b"before", b"after"]
    await inbox.nothing_more()


async def test_a_cancelled_member_leaves_the_work_to_its_group(backend: PubSub) -> None:
    leaving, staying = Inbox(), Inbox()
    subscription = await backend.subscribe("jobs", leaving, {"consumerGroup": "g"})
    await backend.subscribe("jobs", staying, {"consumerGroup": "g"})
    await subscription.cancel()
    payloads = await publish_all(backend, "jobs", 5)
    assert sorted(m.data for m in await staying.take(5)) == payloads
    await leaving.nothing_more()


async def test_an_unacknowledged_message_goes_to_the_next_subscriber_of_its_group(
    backend: PubSub,
) -> None:
    """A subscriber that dies mid-message: its group gets the message again (at least once)."""
    needs(backend, PubSubFeature.AT_LEAST_ONCE)
    started, never = asyncio.Event(), asyncio.Event()

    async def crash(message: Message) -> Delivery:
        started.set()
        await never.wait()
        return Delivery.SUCCESS

    first = await backend.subscribe("work", crash, {"consumerGroup": "g"})
    await backend.publish("work", b"unfinished", {})
    async with asyncio.timeout(WAIT):
        await started.wait()
    await first.cancel()
    restarted = Inbox()
    await backend.subscribe("work", restarted, {"consumerGroup": "g"})
    message = await restarted.next()
    assert (message.data, message.attempt > 1) == (b"unfinished", True)


async def test_a_group_keeps_messages_published_while_it_has_no_member(backend: PubSub) -> None:
    needs(backend, PubSubFeature.AT_LEAST_ONCE)
    subscription = await backend.subscribe("mail", Inbox(), {"consumerGroup": "g"})
    await subscription.cancel()
    payloads = await publish_all(backend, "mail", 3)
    inbox = Inbox()
    await backend.subscribe("mail", inbox, {"consumerGroup": "g"})
    assert sorted(m.data for m in await inbox.take(3)) == payloads


async def test_messages_survive_a_restart_where_durable(
    request: pytest.FixtureRequest, backend: PubSub, backend_spec: Backend
) -> None:
    needs(backend, PubSubFeature.DURABLE)
    subscription = await backend.subscribe("durable", Inbox(), {"consumerGroup": "g"})
    await subscription.cancel()
    await backend.publish("durable", b"kept", {})
    await backend.close()
    async with backend_spec.factory(request) as again:
        inbox = Inbox()
        await again.subscribe("durable", inbox, {"consumerGroup": "g"})
        assert (await inbox.next()).data == b"kept"


# -- the in-memory reference ----------------------------------------------------------------------


async def memory_pubsub(**metadata: str) -> InMemoryPubSub:
    pubsub = InMemoryPubSub()
    await pubsub.init({"redeliverInitialInterval": "10ms", **metadata})
    return pubsub


async def test_memory_round_robin_among_idle_members() -> None:
    pubsub = await memory_pubsub()
    try:
        members = [Inbox(), Inbox()]
        for member in members:
            await pubsub.subscribe("t", member, {"queueGroup": "g"})
        payloads = await publish_all(pubsub, "t", 10)
        await asyncio.sleep(0.05)
        assert members[0].data == payloads[0::2]
        assert members[1].data == payloads[1::2]
    finally:
        await pubsub.close()


@pytest.mark.parametrize("where", ["component", "subscription"])
async def test_memory_concurrency_delivers_that_many_at_once(where: str) -> None:
    pubsub = await (memory_pubsub(concurrency="3") if where == "component" else memory_pubsub())
    in_flight: list[bytes] = []
    three_at_once = asyncio.Event()

    async def held(message: Message) -> Delivery:
        in_flight.append(message.data)
        if len(in_flight) == 3:
            three_at_once.set()
        await three_at_once.wait()  # only returns once three are being handled together
        return Delivery.SUCCESS

    try:
        inbox = Inbox(held)
        await pubsub.subscribe("t", inbox, {"concurrency": "3"} if where == "subscription" else {})
        payloads = await publish_all(pubsub, "t", 6)
        assert sorted(m.data for m in await inbox.take(6)) == sorted(payloads)
        assert three_at_once.is_set()
    finally:
        await pubsub.close()


async def test_memory_queue_is_bounded_and_publish_fails_when_full() -> None:
    pubsub = await memory_pubsub(maxQueueSize="3")
    release = asyncio.Event()

    async def blocked(message: Message) -> Delivery:
        await release.wait()
        return Delivery.SUCCESS

    try:
        inbox = Inbox(blocked)
        await pubsub.subscribe("t", inbox, {})
        await publish_all(pubsub, "t", 3)  # one in flight, two queued
        with pytest.raises(ComponentError, match="maxQueueSize"):
            await pubsub.publish("t", b"one too many", {})
        release.set()
        assert len(await inbox.take(3)) == 3
        await pubsub.publish("t", b"room again", {})
        assert (await inbox.next()).data == b"room again"
    finally:
        await pubsub.close()


async def test_memory_messages_waiting_for_redelivery_count_against_the_bound() -> None:
    pubsub = await memory_pubsub(maxQueueSize="2", redeliverInitialInterval="1s")

    async def refuse(message: Message) -> Delivery:
        return Delivery.RETRY

    try:
        inbox = Inbox(refuse)
        await pubsub.subscribe("t", inbox, {})
        await publish_all(pubsub, "t", 2)
        await inbox.take(2)
        with pytest.raises(ComponentError):
            await pubsub.publish("t", b"full", {})
    finally:
        await pubsub.close()


async def test_memory_topics_without_subscribers_keep_nothing() -> None:
    pubsub = await memory_pubsub(maxQueueSize="1")
    try:
        await publish_all(pubsub, "nobody", 10)
        subscription = await pubsub.subscribe("gone", Inbox(), {})
        await subscription.cancel()
        await publish_all(pubsub, "gone", 10)  # an ungrouped queue went with its subscriber
    finally:
        await pubsub.close()


async def test_memory_backoff_doubles_up_to_the_maximum() -> None:
    pubsub = await memory_pubsub(redeliverInitialInterval="40ms", redeliverMaxInterval="100ms")
    times: list[float] = []

    async def refuse(message: Message) -> Delivery:
        times.append(time.monotonic())
        return Delivery.RETRY if message.attempt < 5 else Delivery.SUCCESS

    try:
        inbox = Inbox(refuse)
        await pubsub.subscribe("t", inbox, {})
        await pubsub.publish("t", b"x", {})
        assert [m.attempt for m in await inbox.take(5)] == [1, 2, 3, 4, 5]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        for gap, expected in zip(gaps, [0.04, 0.08, 0.1, 0.1], strict=True):
            assert expected * 0.9 <= gap <= expected + 0.2, gaps
    finally:
        await pubsub.close()


async def test_memory_message_fields() -> None:
    pubsub = await memory_pubsub()
    try:
        inbox = Inbox()
        await pubsub.subscribe("t", inbox, {})
        await pubsub.publish("t", b"a", {"contentType": "text/plain", "k": "v"})
        await pubsub.publish("t", b"b", {})
        first, second = await inbox.take(2)
        assert first.content_type == "text/plain" and first.metadata["k"] == "v"
        assert second.content_type == "application/cloudevents+json"
        assert first.id and second.id and first.id != second.id
    finally:
        await pubsub.close()


async def test_memory_close_cancels_every_task_and_refuses_more_work() -> None:
    pubsub = await memory_pubsub()
    await pubsub.subscribe("t", Inbox(), {})
    await pubsub.subscribe("t", Inbox(), {"consumerGroup": "g"})
    assert any(t.get_name().startswith("pubsub.in-memory") for t in asyncio.all_tasks())
    await pubsub.close()
    assert not any(t.get_name().startswith("pubsub.in-memory") for t in asyncio.all_tasks())
    with pytest.raises(ComponentError):
        await pubsub.publish("t", b"late", {})
    with pytest.raises(ComponentError):
        await pubsub.subscribe("t", Inbox(), {})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("maxQueueSize", "0"),
        ("maxQueueSize", "many"),
        ("redeliverInitialInterval", "soon"),
        ("redeliverMaxInterval", "1ms"),
    ],
)
async def test_memory_bad_metadata_names_the_key(key: str, value: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        await InMemoryPubSub().init({key: value})
    assert caught.value.key == key
