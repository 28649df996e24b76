"""The coarse timer wheel behind per-request deadlines."""

from __future__ import annotations

import asyncio
import functools

from proxy.timers import TICK, TimerWheel


async def test_fires_not_early_and_at_most_a_tick_late() -> None:
    wheel = TimerWheel()
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    start = loop.time()
    wheel.call_later(0.05, lambda: fired.append(loop.time() - start))
    await asyncio.sleep(0.05 + 3 * TICK)
    assert len(fired) == 1
    assert 0.05 <= fired[0] <= 0.05 + 2 * TICK


async def test_cancel_prevents_the_callback_and_frees_the_slot() -> None:
    wheel = TimerWheel()
    fired: list[str] = []
    deadline = wheel.call_later(0.02, lambda: fired.append("x"))
    deadline.cancel()
    assert wheel.slots == {}
    await asyncio.sleep(0.05)
    assert fired == []


async def test_an_earlier_deadline_is_not_held_up_by_a_later_one() -> None:
    wheel = TimerWheel()
    fired: list[str] = []
    wheel.call_later(10.0, lambda: fired.append("late"))
    wheel.call_later(0.02, lambda: fired.append("soon"))
    await asyncio.sleep(0.02 + 3 * TICK)
    assert fired == ["soon"]
    assert len(wheel.slots) == 1  # the late one is still armed


async def test_many_deadlines_fire_in_order() -> None:
    wheel = TimerWheel()
    fired: list[int] = []
    for index in (5, 1, 3):
        wheel.call_later(index * 0.01, functools.partial(fired.append, index))
    await asyncio.sleep(0.1)
    assert fired == [1, 3, 5]
