"""State stores: reads, etags under both concurrency modes, bulk operations, transactions, TTL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from runtime.components.api import (
    Concurrency,
    DeleteRequest,
    SetRequest,
    StateFeature,
    StateOperation,
    StateStore,
)
from runtime.components.errors import BadMetadata, EtagInvalid, EtagMismatch
from runtime.components.state.memory import InMemoryStateStore
from tests.conformance.conftest import Backend

BLOCK = "state"
FIRST = Concurrency.FIRST_WRITE
LAST = Concurrency.LAST_WRITE


async def value_of(store: StateStore, key: str) -> bytes | None:
    return (await store.get(key, {})).value


async def etag_of(store: StateStore, key: str) -> str:
    etag = (await store.get(key, {})).etag
    assert etag, f"{key!r} has no etag"
    return etag


def needs(store: StateStore, feature: StateFeature) -> None:
    if feature not in store.features:
        pytest.skip(f"the backend does not declare {feature.name}")


# -- reads and plain writes -----------------------------------------------------------------------


async def test_a_missing_key_reads_as_none_without_etag(backend: StateStore) -> None:
    item = await backend.get("never-written", {})
    assert (item.key, item.value, item.etag) == ("never-written", None, None)


async def test_a_written_value_reads_back_with_an_etag(backend: StateStore) -> None:
    await backend.set(SetRequest("k", b"v1"))
    item = await backend.get("k", {})
    assert item.value == b"v1"
    assert isinstance(item.etag, str) and item.etag


async def test_every_write_changes_the_etag(backend: StateStore) -> None:
    await backend.set(SetRequest("k", b"v1"))
    first = await etag_of(backend, "k")
    await backend.set(SetRequest("k", b"v2"))
    assert await etag_of(backend, "k") != first


@pytest.mark.parametrize("value", [b"", b"\x00\xff\xfe binary", "ünïcödé ✓".encode()])
async def test_values_are_kept_byte_for_byte(backend: StateStore, value: bytes) -> None:
    await backend.set(SetRequest("k", value))
    assert await value_of(backend, "k") == value


@pytest.mark.parametrize("key", ["ключ", "🔑 with spaces", "app||日本語/パス", "a" * 200])
async def test_unicode_and_odd_keys(backend: StateStore, key: str) -> None:
    await backend.set(SetRequest(key, b"v"))
    assert await value_of(backend, key) == b"v"
    assert (await backend.bulk_get([key], {}))[0].value == b"v"
    await backend.delete(DeleteRequest(key, await etag_of(backend, key)))
    assert await value_of(backend, key) is None


async def test_delete_removes_and_deleting_a_missing_key_is_fine(backend: StateStore) -> None:
    await backend.set(SetRequest("k", b"v"))
    await backend.delete(DeleteRequest("k"))
    assert await value_of(backend, "k") is None
    await backend.delete(DeleteRequest("k"))
    await backend.delete(DeleteRequest("never-written"))


# -- etags: last-write (the default) --------------------------------------------------------------


async def test_last_write_without_etag_overwrites(backend: StateStore) -> None:
    await backend.set(SetRequest("k", b"v1"))
    await backend.set(SetRequest("k", b"v2", concurrency=LAST))
    assert await value_of(backend, "k") == b"v2"


async def test_last_write_with_the_current_etag_succeeds(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v1"))
    await backend.set(SetRequest("k", b"v2", etag=await etag_of(backend, "k")))
    assert await value_of(backend, "k") == b"v2"


async def test_last_write_with_a_stale_etag_is_a_mismatch(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v1"))
    stale = await etag_of(backend, "k")
    await backend.set(SetRequest("k", b"v2"))
    with pytest.raises(EtagMismatch):
        await backend.set(SetRequest("k", b"v3", etag=stale, concurrency=LAST))
    assert await value_of(backend, "k") == b"v2"


@pytest.mark.parametrize("concurrency", [FIRST, LAST])
async def test_an_etag_on_a_missing_item_is_a_mismatch(
    backend: StateStore, concurrency: Concurrency
) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("other", b"x"))
    etag = await etag_of(backend, "other")
    with pytest.raises(EtagMismatch):
        await backend.set(SetRequest("k", b"v", etag=etag, concurrency=concurrency))
    with pytest.raises(EtagMismatch):
        await backend.delete(DeleteRequest("k", etag=etag, concurrency=concurrency))
    assert await value_of(backend, "k") is None


@pytest.mark.parametrize("etag", ["not-an-etag", "☃", "-1", "1.5"])
async def test_a_malformed_etag_is_refused(backend: StateStore, etag: str) -> None:
    """EtagInvalid where the backend can tell the etag is not one of its own; a mismatch at
    least (the in-memory reference raises EtagInvalid, see the test below)."""
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v1"))
    with pytest.raises((EtagInvalid, EtagMismatch)):
        await backend.set(SetRequest("k", b"v2", etag=etag))
    with pytest.raises((EtagInvalid, EtagMismatch)):
        await backend.delete(DeleteRequest("k", etag=etag))
    assert await value_of(backend, "k") == b"v1"


# -- etags: first-write ---------------------------------------------------------------------------


async def test_first_write_without_etag_only_creates(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v1", concurrency=FIRST))
    with pytest.raises(EtagMismatch):
        await backend.set(SetRequest("k", b"v2", concurrency=FIRST))
    assert await value_of(backend, "k") == b"v1"


async def test_first_write_with_the_current_etag_succeeds(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v1"))
    etag = await etag_of(backend, "k")
    await backend.set(SetRequest("k", b"v2", etag=etag, concurrency=FIRST))
    assert await value_of(backend, "k") == b"v2"
    with pytest.raises(EtagMismatch):  # that etag is spent
        await backend.set(SetRequest("k", b"v3", etag=etag, concurrency=FIRST))


async def test_first_write_delete_needs_the_etag(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v1"))
    stale = await etag_of(backend, "k")
    await backend.set(SetRequest("k", b"v2"))
    with pytest.raises(EtagMismatch):
        await backend.delete(DeleteRequest("k", concurrency=FIRST))
    with pytest.raises(EtagMismatch):
        await backend.delete(DeleteRequest("k", etag=stale, concurrency=FIRST))
    await backend.delete(DeleteRequest("k", etag=await etag_of(backend, "k"), concurrency=FIRST))
    assert await value_of(backend, "k") is None


async def test_racing_first_writes_of_a_new_key_let_exactly_one_win(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)

    async def attempt(n: int) -> bool:
        try:
            await backend.set(SetRequest("race", str(n).encode(), concurrency=FIRST))
        except EtagMismatch:
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert results.count(True) == 1
    assert await value_of(backend, "race") == str(results.index(True)).encode()


async def test_optimistic_increments_lose_no_update(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("counter", b"0"))

    async def increment() -> None:
        while True:
            item = await backend.get("counter", {})
            assert item.value is not None
            new = str(int(item.value) + 1).encode()
            try:
                await backend.set(SetRequest("counter", new, etag=item.etag, concurrency=FIRST))
                return
            except EtagMismatch:
                await asyncio.sleep(0)

    await asyncio.gather(*(increment() for _ in range(15)))
    assert await value_of(backend, "counter") == b"15"


# -- bulk -----------------------------------------------------------------------------------------


async def test_bulk_get_keeps_the_order_and_reports_missing_keys(backend: StateStore) -> None:
    await backend.bulk_set([SetRequest("a", b"1"), SetRequest("b", b"2")])
    items = await backend.bulk_get(["b", "missing", "a"], {})
    assert [(item.key, item.value) for item in items] == [
        ("b", b"2"),
        ("missing", None),
        ("a", b"1"),
    ]
    assert items[1].etag is None and items[0].etag and items[2].etag
    assert await backend.bulk_get([], {}) == []


async def test_bulk_set_and_bulk_delete(backend: StateStore) -> None:
    keys = [f"bulk-{n}" for n in range(25)]
    await backend.bulk_set([SetRequest(key, key.encode()) for key in keys])
    assert [item.value for item in await backend.bulk_get(keys, {})] == [k.encode() for k in keys]
    await backend.bulk_delete([DeleteRequest(key) for key in keys[:20]])
    values = [item.value for item in await backend.bulk_get(keys, {})]
    assert values == [None] * 20 + [key.encode() for key in keys[20:]]


async def test_bulk_set_is_not_atomic_and_raises_after_trying_all(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("b", b"old"))
    stale = await etag_of(backend, "b")
    await backend.set(SetRequest("b", b"newer"))
    requests = [SetRequest("a", b"1"), SetRequest("b", b"2", etag=stale), SetRequest("c", b"3")]
    with pytest.raises(EtagMismatch):
        await backend.bulk_set(requests)
    assert [i.value for i in await backend.bulk_get(["a", "b", "c"], {})] == [b"1", b"newer", b"3"]


async def test_bulk_delete_is_not_atomic_and_raises_after_trying_all(backend: StateStore) -> None:
    needs(backend, StateFeature.ETAG)
    await backend.bulk_set([SetRequest(key, b"v") for key in "abc"])
    stale = await etag_of(backend, "b")
    await backend.set(SetRequest("b", b"v2"))
    requests = [DeleteRequest("a"), DeleteRequest("b", etag=stale), DeleteRequest("c")]
    with pytest.raises(EtagMismatch):
        await backend.bulk_delete(requests)
    values = [item.value for item in await backend.bulk_get(["a", "b", "c"], {})]
    assert values == [None, b"v2", None]


# -- transactions ---------------------------------------------------------------------------------


async def test_a_transaction_applies_every_operation(backend: StateStore) -> None:
    needs(backend, StateFeature.TRANSACTIONAL)
    await backend.bulk_set([SetRequest("a", b"old"), SetRequest("c", b"doomed")])
    etag = await etag_of(backend, "a")
    await backend.transact(
        [SetRequest("a", b"new", etag=etag), SetRequest("b", b"born"), DeleteRequest("c")], {}
    )
    items = await backend.bulk_get(["a", "b", "c"], {})
    assert [item.value for item in items] == [b"new", b"born", None]


async def test_a_transaction_with_one_stale_etag_changes_nothing(backend: StateStore) -> None:
    needs(backend, StateFeature.TRANSACTIONAL)
    needs(backend, StateFeature.ETAG)
    await backend.bulk_set([SetRequest("a", b"a0"), SetRequest("c", b"c0")])
    stale = await etag_of(backend, "c")
    await backend.set(SetRequest("c", b"c1"))
    operations: list[StateOperation] = [
        SetRequest("a", b"a1"),
        SetRequest("b", b"b1", concurrency=FIRST),
        DeleteRequest("a"),
        SetRequest("c", b"c2", etag=stale),
    ]
    with pytest.raises(EtagMismatch):
        await backend.transact(operations, {})
    items = await backend.bulk_get(["a", "b", "c"], {})
    assert [item.value for item in items] == [b"a0", None, b"c1"]


async def test_a_transaction_checks_each_operation_after_the_earlier_ones(
    backend: StateStore,
) -> None:
    needs(backend, StateFeature.TRANSACTIONAL)
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v0"))
    etag = await etag_of(backend, "k")
    # Deleting first makes the first-write creation valid; writing first spends the etag.
    await backend.transact(
        [DeleteRequest("k", etag=etag), SetRequest("k", b"v1", concurrency=FIRST)], {}
    )
    assert await value_of(backend, "k") == b"v1"
    etag = await etag_of(backend, "k")
    with pytest.raises(EtagMismatch):
        await backend.transact([SetRequest("k", b"v2"), SetRequest("k", b"v3", etag=etag)], {})
    assert await value_of(backend, "k") == b"v1"


async def test_an_empty_transaction_is_fine(backend: StateStore) -> None:
    needs(backend, StateFeature.TRANSACTIONAL)
    await backend.transact([], {})


# -- TTL ------------------------------------------------------------------------------------------


async def test_an_item_expires_after_its_ttl(backend: StateStore, backend_spec: Backend) -> None:
    needs(backend, StateFeature.TTL)
    ttl = backend_spec.min_ttl
    await backend.set(SetRequest("short", b"v", ttl=ttl))
    await backend.set(SetRequest("long", b"v", ttl=ttl * 20))
    assert await value_of(backend, "short") == b"v"
    await asyncio.sleep(ttl * 1.5 + 0.05)
    assert await value_of(backend, "short") is None
    assert (await backend.bulk_get(["short"], {}))[0].value is None
    assert await value_of(backend, "long") == b"v"


async def test_an_expired_item_is_gone_for_etags_too(
    backend: StateStore, backend_spec: Backend
) -> None:
    needs(backend, StateFeature.TTL)
    needs(backend, StateFeature.ETAG)
    await backend.set(SetRequest("k", b"v", ttl=backend_spec.min_ttl))
    etag = await etag_of(backend, "k")
    await asyncio.sleep(backend_spec.min_ttl * 1.5 + 0.05)
    with pytest.raises(EtagMismatch):
        await backend.set(SetRequest("k", b"v2", etag=etag))
    await backend.set(SetRequest("k", b"v3", concurrency=FIRST))  # it no longer exists
    assert await value_of(backend, "k") == b"v3"


async def test_an_item_with_ttl_tells_when_it_expires(backend: StateStore) -> None:
    needs(backend, StateFeature.TTL)
    before = datetime.now(UTC).replace(microsecond=0)
    await backend.set(SetRequest("k", b"v", ttl=100))
    await backend.set(SetRequest("forever", b"v"))
    expires = datetime.fromisoformat((await backend.get("k", {})).metadata["ttlExpireTime"])
    assert expires.tzinfo is not None
    assert 98 <= (expires - before).total_seconds() <= 102
    assert "ttlExpireTime" not in (await backend.get("forever", {})).metadata


async def test_a_write_without_ttl_makes_the_item_permanent(
    backend: StateStore, backend_spec: Backend
) -> None:
    needs(backend, StateFeature.TTL)
    await backend.set(SetRequest("k", b"v1", ttl=backend_spec.min_ttl))
    await backend.set(SetRequest("k", b"v2"))
    await asyncio.sleep(backend_spec.min_ttl * 1.5 + 0.05)
    assert await value_of(backend, "k") == b"v2"


# -- re-init --------------------------------------------------------------------------------------


async def test_what_survives_a_new_instance(
    request: pytest.FixtureRequest, backend: StateStore, backend_spec: Backend
) -> None:
    await backend.set(SetRequest("kept", b"v"))
    async with backend_spec.factory(request) as again:
        expected = b"v" if backend_spec.persistent else None
        assert await value_of(again, "kept") == expected


# -- the in-memory reference ----------------------------------------------------------------------


async def memory_store(**metadata: str) -> InMemoryStateStore:
    store = InMemoryStateStore()
    await store.init(metadata)
    return store


async def test_memory_etags_are_decimal_versions_and_others_are_invalid() -> None:
    store = await memory_store()
    try:
        await store.set(SetRequest("k", b"v"))
        assert (await etag_of(store, "k")).isdigit()
        for etag in ("abc", "-1", " 1", "\uff11"):  # the last: a full-width digit
            with pytest.raises(EtagInvalid):
                await store.set(SetRequest("k", b"v2", etag=etag))
        with pytest.raises(EtagInvalid):  # invalid before missing
            await store.delete(DeleteRequest("missing", etag="x"))
        await store.set(SetRequest("k", b"v3", etag=""))  # empty: no etag
    finally:
        await store.close()


async def test_memory_etags_are_never_reused_after_a_delete() -> None:
    store = await memory_store()
    try:
        await store.set(SetRequest("k", b"v"))
        old = await etag_of(store, "k")
        await store.delete(DeleteRequest("k"))
        await store.set(SetRequest("k", b"v"))
        with pytest.raises(EtagMismatch):
            await store.set(SetRequest("k", b"v2", etag=old))
    finally:
        await store.close()


async def test_memory_ttl_from_request_metadata_and_forever_values() -> None:
    store = await memory_store()
    try:
        await store.set(SetRequest("m", b"v", metadata={"ttlInSeconds": "100"}))
        await store.set(SetRequest("minus", b"v", ttl=-1))
        await store.set(SetRequest("zero", b"v", ttl=0))
        assert "ttlExpireTime" in (await store.get("m", {})).metadata
        assert "ttlExpireTime" not in (await store.get("minus", {})).metadata
        assert "ttlExpireTime" not in (await store.get("zero", {})).metadata
    finally:
        await store.close()


async def test_memory_sweep_frees_expired_items_without_reads() -> None:
    store = await memory_store(cleanupInterval="20ms")
    try:
        await store.bulk_set([SetRequest(f"k{n}", b"v", ttl=0.05) for n in range(10)])
        await store.set(SetRequest("stays", b"v", ttl=60))
        assert store.sweep(time.time() + 1) == 10  # as if a second had passed
        await store.set(SetRequest("k", b"v", ttl=0.03))
        await asyncio.sleep(0.15)
        assert store.sweep(time.time()) == 0  # the periodic sweep got there first
        assert await value_of(store, "stays") == b"v"
    finally:
        await store.close()


async def test_memory_rewrites_with_ttl_do_not_grow_the_expiry_heap() -> None:
    store = await memory_store()
    try:
        for n in range(5000):
            await store.set(SetRequest("hot", str(n).encode(), ttl=60))
        store.sweep(time.time())
        assert len(store._expiries) <= 2 * 1 + 1024
    finally:
        await store.close()


async def test_memory_close_stops_the_sweeper() -> None:
    store = await memory_store()
    assert any(t.get_name() == "state.in-memory sweep" for t in asyncio.all_tasks())
    await store.close()
    assert not any(t.get_name() == "state.in-memory sweep" for t in asyncio.all_tasks())


@pytest.mark.parametrize("value", ["soon", "0s", "-1s"])
async def test_memory_bad_cleanup_interval_names_the_key(value: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        await memory_store(cleanupInterval=value)
    assert caught.value.key == "cleanupInterval"
