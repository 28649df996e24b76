"""Configuration stores: get, subscribe to changes, unsubscribe."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from runtime.components.api import ConfigurationItem, ConfigurationStore
from runtime.components.configuration.memory import InMemoryConfigurationStore
from tests.conformance.conftest import Backend

BLOCK = "configuration"
WAIT = 5.0
QUIET = 0.2

Changes = dict[str, ConfigurationItem]
Write = Callable[[str, str], Awaitable[None]]


class Changed:
    """A handler that queues every notification."""

    def __init__(self) -> None:
        self._calls: asyncio.Queue[Changes] = asyncio.Queue()

    async def __call__(self, items: Changes) -> None:
        self._calls.put_nowait(items)

    async def next(self) -> Changes:
        async with asyncio.timeout(WAIT):
            return await self._calls.get()

    async def values(self, count: int) -> dict[str, str]:
        """What `count` changes set, merged (a store may report them together or apart)."""
        seen: dict[str, str] = {}
        while len(seen) < count:
            seen.update((key, item.value) for key, item in (await self.next()).items())
        return seen

    async def nothing_more(self) -> None:
        await asyncio.sleep(QUIET)
        assert self._calls.empty()


@pytest.fixture
async def write(
    request: pytest.FixtureRequest, backend: ConfigurationStore, backend_spec: Backend
) -> Write:
    writer = backend_spec.write_config
    assert writer is not None, "a configuration backend needs write_config in BACKENDS"

    async def change(key: str, value: str) -> None:
        await writer(request, backend, key, value)

    return change


async def test_get_returns_the_items_that_exist(backend: ConfigurationStore, write: Write) -> None:
    await write("app.colour", "blue")
    await write("app.size", "42")
    items = await backend.get(["app.colour", "app.size", "app.missing"], {})
    assert {key: item.value for key, item in items.items()} == {
        "app.colour": "blue",
        "app.size": "42",
    }


async def test_get_without_keys_returns_every_item(
    backend: ConfigurationStore, write: Write
) -> None:
    await write("a", "1")
    await write("ключ ✓", "значение ✓")
    items = await backend.get([], {})
    assert items["a"].value == "1" and items["ключ ✓"].value == "значение ✓"


async def test_an_update_changes_the_value_and_its_version(
    backend: ConfigurationStore, write: Write
) -> None:
    await write("k", "v1")
    first = (await backend.get(["k"], {}))["k"]
    await write("k", "v2")
    second = (await backend.get(["k"], {}))["k"]
    assert second.value == "v2"
    if first.version or second.version:
        assert first.version != second.version


async def test_a_subscriber_sees_changes_of_its_keys(
    backend: ConfigurationStore, write: Write
) -> None:
    changed = Changed()
    await backend.subscribe(["watched"], changed, {})
    await write("watched", "v1")
    assert (await changed.next())["watched"].value == "v1"
    await write("watched", "v2")
    assert (await changed.next())["watched"].value == "v2"


async def test_a_subscriber_ignores_other_keys(backend: ConfigurationStore, write: Write) -> None:
    changed = Changed()
    await backend.subscribe(["watched"], changed, {})
    await write("unwatched", "x")
    await write("watched", "y")
    assert set(await changed.next()) == {"watched"}
    await changed.nothing_more()


async def test_a_subscriber_to_no_keys_sees_every_change(
    backend: ConfigurationStore, write: Write
) -> None:
    changed = Changed()
    await backend.subscribe([], changed, {})
    await write("one", "1")
    await write("two", "2")
    assert await changed.values(2) == {"one": "1", "two": "2"}


async def test_subscribers_are_independent(backend: ConfigurationStore, write: Write) -> None:
    first, second = Changed(), Changed()
    await backend.subscribe(["a"], first, {})
    subscription = await backend.subscribe(["a", "b"], second, {})
    await write("a", "1")
    assert (await first.next())["a"].value == "1"
    assert (await second.next())["a"].value == "1"
    await subscription.cancel()
    await write("a", "2")
    assert (await first.next())["a"].value == "2"
    await second.nothing_more()


async def test_unsubscribe_stops_the_notifications(
    backend: ConfigurationStore, write: Write
) -> None:
    changed = Changed()
    subscription = await backend.subscribe(["k"], changed, {})
    await write("k", "before")
    assert (await changed.next())["k"].value == "before"
    await subscription.cancel()
    await write("k", "after")
    await changed.nothing_more()


# -- the in-memory reference ---------------------------------------------------------------------


async def memory_store(**metadata: str) -> InMemoryConfigurationStore:
    store = InMemoryConfigurationStore()
    await store.init(metadata)
    return store


async def test_memory_items_come_from_metadata_except_reserved_keys() -> None:
    store = await memory_store(colour="blue", size="42", consumerID="app", namespace="prod")
    items = await store.get([], {})
    assert {key: (item.value, item.version) for key, item in items.items()} == {
        "colour": ("blue", "1"),
        "size": ("42", "1"),
    }
    await store.close()


async def test_memory_set_bumps_the_version_and_keeps_metadata() -> None:
    store = await memory_store(colour="blue")
    changed = Changed()
    await store.subscribe(["colour"], changed, {})
    item = await store.set("colour", "red", {"source": "admin"})
    assert (item.value, item.version, dict(item.metadata)) == ("red", "2", {"source": "admin"})
    assert (await changed.next())["colour"] == item
    assert (await store.set("new", "x")).version == "1"
    await store.close()


async def test_memory_a_slow_handler_gets_the_latest_values_coalesced() -> None:
    store = await memory_store()
    release = asyncio.Event()
    calls: list[Changes] = []

    async def slow(items: Changes) -> None:
        calls.append(items)
        await release.wait()

    await store.subscribe([], slow, {})
    await store.set("k", "0")
    await asyncio.sleep(0.01)  # the handler is now busy with k=0
    for n in range(1, 100):
        await store.set("k", str(n))
    await store.set("other", "x")
    release.set()
    await asyncio.sleep(0.05)
    assert [{key: item.value for key, item in call.items()} for call in calls] == [
        {"k": "0"},
        {"k": "99", "other": "x"},
    ]
    await store.close()


async def test_memory_a_failing_handler_keeps_its_subscription(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await memory_store()
    calls: list[Changes] = []

    async def flaky(items: Changes) -> None:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("broken handler")

    await store.subscribe([], flaky, {})
    await store.set("k", "1")
    await asyncio.sleep(0.02)
    await store.set("k", "2")
    await asyncio.sleep(0.02)
    assert [call["k"].value for call in calls] == ["1", "2"]
    assert "broken handler" in caplog.text
    await store.close()


async def test_memory_close_cancels_the_subscriptions() -> None:
    store = await memory_store()
    await store.subscribe([], Changed(), {})
    assert any(t.get_name().startswith("configuration.in-memory") for t in asyncio.all_tasks())
    await store.close()
    assert not any(t.get_name().startswith("configuration.in-memory") for t in asyncio.all_tasks())
