"""Sequencers: ids strictly increasing per key, also under concurrency and across re-init."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from runtime.components.api import Sequencer
from runtime.components.sequencer.memory import InMemorySequencer
from tests.conformance.conftest import Backend

BLOCK = "sequencer"


async def test_ids_are_positive_and_strictly_increasing(backend: Sequencer) -> None:
    ids = [await backend.next_id("orders", {}) for _ in range(100)]
    assert ids[0] >= 1
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))


async def test_keys_are_independent(backend: Sequencer) -> None:
    for _ in range(10):
        await backend.next_id("busy", {})
    assert await backend.next_id("quiet", {}) < await backend.next_id("busy", {})
    assert await backend.next_id("ключ 🔢", {}) >= 1


async def test_ids_strictly_increase_under_concurrency(backend: Sequencer) -> None:
    async def take(count: int) -> list[int]:
        return [await backend.next_id("shared", {}) for _ in range(count)]

    batches = await asyncio.gather(*(take(25) for _ in range(20)))
    for batch in batches:
        assert batch == sorted(set(batch))  # each caller sees its ids increase
    every = [value for batch in batches for value in batch]
    assert len(set(every)) == len(every) == 500  # no id is handed out twice
    assert await backend.next_id("shared", {}) > max(every)


async def test_ids_after_a_new_instance(
    request: pytest.FixtureRequest, backend: Sequencer, backend_spec: Backend
) -> None:
    last = max([await backend.next_id("kept", {}) for _ in range(5)])
    await backend.close()
    async with backend_spec.factory(request) as again:
        following = await again.next_id("kept", {})
    if backend_spec.persistent:
        assert following > last
    else:
        assert following == 1  # the ids lived in the closed instance


async def test_memory_ids_start_at_one() -> None:
    sequencer = InMemorySequencer()
    await sequencer.init({})
    assert [await sequencer.next_id("k", {}) for _ in range(3)] == [1, 2, 3]
    await sequencer.close()
