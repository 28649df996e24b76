"""`lock.in-memory`: locks held in this process (Layotto's in-memory lock store, with expiry).

A lock is granted to one owner until it expires or that owner unlocks it; it is not re-entrant
(the holder asking again is refused, as Dapr's Redis store refuses). Unlock and renew tell why
they failed with Dapr's UnlockStatus numbers: an expired lock no longer exists, and another
owner's lock belongs to others.

Fencing tokens come from one counter for the whole store, so they strictly increase per
resource across grants, including after a lock expired or was released (and a resource that
was unlocked keeps no state). Renewing keeps the token.

Expired locks are invisible at once and freed by a sweep every `cleanupInterval`.

Component metadata: `cleanupInterval` (duration, default `1s`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from runtime.components.api import LockResult, Metadata, UnlockStatus
from runtime.components.errors import ComponentError
from runtime.components.sweeper import Sweeper


@dataclass(slots=True)
class _Lock:
    owner: str
    expires: float
    """time.monotonic() after which the lock is free."""
    token: int


class InMemoryLockStore:
    runs_inline = True

    def __init__(self) -> None:
        self._locks: dict[str, _Lock] = {}
        self._tokens = 0
        self._sweeper = Sweeper("lock.in-memory", self.sweep)

    async def init(self, metadata: Metadata) -> None:
        self._sweeper.start(metadata)

    async def ping(self) -> None:
        self._sweeper.check_open()

    async def close(self) -> None:
        await self._sweeper.stop()
        self._locks.clear()

    async def try_lock(self, resource_id: str, owner: str, expiry: float) -> LockResult:
        _check_expiry(expiry)
        now = time.monotonic()
        if self._held(resource_id, now) is not None:
            return LockResult(success=False)
        self._tokens += 1
        self._locks[resource_id] = _Lock(owner, now + expiry, self._tokens)
        return LockResult(success=True, fencing_token=self._tokens)

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus:
        status = self._status(resource_id, owner, time.monotonic())
        if status is UnlockStatus.SUCCESS:
            del self._locks[resource_id]
        return status

    async def renew(self, resource_id: str, owner: str, expiry: float) -> UnlockStatus:
        _check_expiry(expiry)
        now = time.monotonic()
        status = self._status(resource_id, owner, now)
        if status is UnlockStatus.SUCCESS:
            self._locks[resource_id].expires = now + expiry
        return status

    def _status(self, resource_id: str, owner: str, now: float) -> UnlockStatus:
        lock = self._held(resource_id, now)
        if lock is None:
            return UnlockStatus.LOCK_DOES_NOT_EXIST
        if lock.owner != owner:
            return UnlockStatus.LOCK_BELONGS_TO_OTHERS
        return UnlockStatus.SUCCESS

    def _held(self, resource_id: str, now: float) -> _Lock | None:
        lock = self._locks.get(resource_id)
        if lock is not None and now >= lock.expires:
            del self._locks[resource_id]
            return None
        return lock

    def sweep(self) -> None:
        """Free the locks that expired."""
        now = time.monotonic()
        for resource_id in [r for r, lock in self._locks.items() if now >= lock.expires]:
            del self._locks[resource_id]


def _check_expiry(expiry: float) -> None:
    if not 0 < expiry < math.inf:
        raise ComponentError(f"lock expiry must be a positive number of seconds, got {expiry!r}",
                             retryable=False)  # fmt: skip
