"""A coarse timer wheel for per-request deadlines (HTTP routes, RPC calls).

Every request arms a route timeout and most never fire. A loop timer per request
(create, then cancel) costs more than routing the request; here arming is a dict insert
into a slot of TICK seconds and cancelling is a dict delete. One loop timer per wheel,
set for the earliest armed slot, runs while anything is armed. Deadlines fire up to
one TICK late, never early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

TICK = 0.01


def _never() -> None:
    """What a cancelled deadline would call (it never does: it left the wheel)."""


class Deadline:
    __slots__ = ("callback", "slot", "wheel")

    def __init__(self, wheel: TimerWheel, slot: int, callback: Callable[[], None]) -> None:
        self.wheel = wheel
        self.slot = slot
        self.callback = callback

    def cancel(self) -> None:
        if self.callback is _never:
            return  # cancelled already (a stream cancels what its filters may have cancelled)
        bucket = self.wheel.slots.get(self.slot)
        if bucket is not None:
            bucket.pop(self, None)
            if not bucket:
                del self.wheel.slots[self.slot]
        # The callback's owner usually holds this deadline's cancel: drop the cycle, so that
        # a finished request is freed by reference counting, not by the cyclic GC.
        self.callback = _never


class TimerWheel:
    def __init__(self) -> None:
        self.slots: dict[int, dict[Deadline, None]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._handle_slot = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> Deadline:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        slot = int((loop.time() + delay) / TICK) + 1
        deadline = Deadline(self, slot, callback)
        bucket = self.slots.get(slot)
        if bucket is None:
            self.slots[slot] = {deadline: None}
        else:
            bucket[deadline] = None
        if self._handle is None or slot < self._handle_slot:
            self._arm(slot)
        return deadline

    def _arm(self, slot: int) -> None:
        assert self._loop is not None
        if self._handle is not None:
            self._handle.cancel()
        self._handle_slot = slot
        self._handle = self._loop.call_at(slot * TICK, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._handle = None
        now_slot = int(self._loop.time() / TICK)
        for slot in sorted(s for s in self.slots if s <= now_slot):
            for deadline in self.slots.pop(slot, {}):
                deadline.callback()
        if self.slots:
            self._arm(min(self.slots))
