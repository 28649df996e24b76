"""Lock stores: mutual exclusion, expiry, owner-checked unlock and renew, fencing tokens."""

from __future__ import annotations

import asyncio

import pytest

from runtime.components.api import LockStore, UnlockStatus
from runtime.components.errors import BadMetadata, ComponentError
from runtime.components.lock.memory import InMemoryLockStore
from tests.conformance.conftest import Backend

BLOCK = "lock"
LONG = 30.0
"""An expiry no test outlives."""


async def acquire(store: LockStore, resource_id: str, owner: str) -> None:
    """Try until granted (the caller bounds the time)."""
    while True:
        if (await store.try_lock(resource_id, owner, LONG)).success:
            return
        await asyncio.sleep(0.001)


async def test_a_free_lock_is_granted_with_a_fencing_token(backend: LockStore) -> None:
    result = await backend.try_lock("res", "alice", LONG)
    assert result.success and result.fencing_token > 0


async def test_a_held_lock_is_refused_to_others(backend: LockStore) -> None:
    assert (await backend.try_lock("res", "alice", LONG)).success
    refused = await backend.try_lock("res", "bob", LONG)
    assert not refused.success


async def test_resources_are_independent(backend: LockStore) -> None:
    assert (await backend.try_lock("r1", "alice", LONG)).success
    assert (await backend.try_lock("r2", "bob", LONG)).success
    assert (await backend.try_lock("資源/🔒 lock", "carol", LONG)).success


async def test_exactly_one_of_many_racing_owners_wins(backend: LockStore) -> None:
    results = await asyncio.gather(
        *(backend.try_lock("contended", f"owner-{n}", LONG) for n in range(50))
    )
    assert sum(result.success for result in results) == 1


async def test_the_lock_excludes_under_concurrency(backend: LockStore) -> None:
    """Workers loop lock -> critical section -> unlock; no two are ever inside at once."""
    inside: list[str] = []
    done = 0

    async def worker(owner: str) -> None:
        nonlocal done
        for _ in range(5):
            await acquire(backend, "mutex", owner)
            inside.append(owner)
            assert inside == [owner], inside
            await asyncio.sleep(0.001)
            inside.remove(owner)
            assert await backend.unlock("mutex", owner) is UnlockStatus.SUCCESS
            done += 1

    async with asyncio.timeout(20):
        await asyncio.gather(*(worker(f"w{n}") for n in range(8)))
    assert done == 40


async def test_unlock_frees_the_lock(backend: LockStore) -> None:
    await backend.try_lock("res", "alice", LONG)
    assert await backend.unlock("res", "alice") is UnlockStatus.SUCCESS
    assert (await backend.try_lock("res", "bob", LONG)).success


async def test_unlock_by_another_owner_is_refused(backend: LockStore) -> None:
    await backend.try_lock("res", "alice", LONG)
    assert await backend.unlock("res", "bob") is UnlockStatus.LOCK_BELONGS_TO_OTHERS
    assert not (await backend.try_lock("res", "bob", LONG)).success


async def test_unlocking_what_is_not_locked(backend: LockStore) -> None:
    assert await backend.unlock("never", "alice") is UnlockStatus.LOCK_DOES_NOT_EXIST
    await backend.try_lock("res", "alice", LONG)
    assert await backend.unlock("res", "alice") is UnlockStatus.SUCCESS
    assert await backend.unlock("res", "alice") is UnlockStatus.LOCK_DOES_NOT_EXIST


async def test_unlock_status_numbers_are_daprs() -> None:
    assert [int(status) for status in UnlockStatus] == [0, 1, 2, 3]


async def test_an_expired_lock_is_free(backend: LockStore, backend_spec: Backend) -> None:
    expiry = backend_spec.min_ttl
    assert (await backend.try_lock("res", "alice", expiry)).success
    await asyncio.sleep(expiry * 1.5 + 0.05)
    assert (await backend.try_lock("res", "bob", LONG)).success
    assert await backend.unlock("res", "alice") is UnlockStatus.LOCK_BELONGS_TO_OTHERS


async def test_an_expired_lock_does_not_exist(backend: LockStore, backend_spec: Backend) -> None:
    await backend.try_lock("res", "alice", backend_spec.min_ttl)
    await asyncio.sleep(backend_spec.min_ttl * 1.5 + 0.05)
    assert await backend.unlock("res", "alice") is UnlockStatus.LOCK_DOES_NOT_EXIST
    assert await backend.renew("res", "alice", LONG) is UnlockStatus.LOCK_DOES_NOT_EXIST


async def test_renew_extends_the_owners_lock(backend: LockStore, backend_spec: Backend) -> None:
    expiry = backend_spec.min_ttl
    await backend.try_lock("res", "alice", expiry)
    assert await backend.renew("res", "alice", expiry * 10) is UnlockStatus.SUCCESS
    await asyncio.sleep(expiry * 1.5 + 0.05)
    assert not (await backend.try_lock("res", "bob", LONG)).success
    assert await backend.unlock("res", "alice") is UnlockStatus.SUCCESS


async def test_renew_by_another_owner_or_of_nothing_is_refused(backend: LockStore) -> None:
    assert await backend.renew("res", "alice", LONG) is UnlockStatus.LOCK_DOES_NOT_EXIST
    await backend.try_lock("res", "alice", LONG)
    assert await backend.renew("res", "bob", LONG) is UnlockStatus.LOCK_BELONGS_TO_OTHERS
    assert await backend.unlock("res", "alice") is UnlockStatus.SUCCESS


async def test_fencing_tokens_strictly_increase_per_resource(
    backend: LockStore, backend_spec: Backend
) -> None:
    tokens = [(await backend.try_lock("res", "alice", LONG)).fencing_token]
    await backend.unlock("res", "alice")
    tokens.append((await backend.try_lock("res", "bob", backend_spec.min_ttl)).fencing_token)
    await asyncio.sleep(backend_spec.min_ttl * 1.5 + 0.05)  # bob's lock expires
    tokens.append((await backend.try_lock("res", "carol", LONG)).fencing_token)
    await backend.try_lock("other", "dave", LONG)  # another resource between grants
    await backend.unlock("res", "carol")
    tokens.append((await backend.try_lock("res", "alice", LONG)).fencing_token)
    assert tokens == sorted(set(tokens)) and tokens[0] > 0, tokens


async def test_renew_keeps_the_fencing_token(backend: LockStore) -> None:
    """A renewed lock is the same grant: the protected resource must keep accepting it."""
    token = (await backend.try_lock("res", "alice", LONG)).fencing_token
    await backend.renew("res", "alice", LONG)
    await backend.unlock("res", "alice")
    assert (await backend.try_lock("res", "bob", LONG)).fencing_token > token


# -- the in-memory reference ---------------------------------------------------------------------


async def memory_locks(**metadata: str) -> InMemoryLockStore:
    store = InMemoryLockStore()
    await store.init(metadata)
    return store


async def test_memory_locks_are_not_reentrant() -> None:
    store = await memory_locks()
    try:
        assert (await store.try_lock("res", "alice", LONG)).success
        assert not (await store.try_lock("res", "alice", LONG)).success
    finally:
        await store.close()


@pytest.mark.parametrize("expiry", [0.0, -1.0, float("inf"), float("nan")])
async def test_memory_refuses_a_meaningless_expiry(expiry: float) -> None:
    store = await memory_locks()
    try:
        with pytest.raises(ComponentError):
            await store.try_lock("res", "alice", expiry)
        await store.try_lock("res", "alice", LONG)
        with pytest.raises(ComponentError):
            await store.renew("res", "alice", expiry)
    finally:
        await store.close()


async def test_memory_sweep_forgets_expired_locks() -> None:
    store = await memory_locks(cleanupInterval="20ms")
    try:
        for n in range(20):
            await store.try_lock(f"res-{n}", "alice", 0.01)
        await asyncio.sleep(0.15)
        assert store._locks == {}
    finally:
        await store.close()


async def test_memory_close_stops_the_sweeper() -> None:
    store = await memory_locks()
    assert any(t.get_name() == "lock.in-memory sweep" for t in asyncio.all_tasks())
    await store.close()
    assert not any(t.get_name() == "lock.in-memory sweep" for t in asyncio.all_tasks())


async def test_memory_bad_cleanup_interval_names_the_key() -> None:
    with pytest.raises(BadMetadata) as caught:
        await InMemoryLockStore().init({"cleanupInterval": "often"})
    assert caught.value.key == "cleanupInterval"
