"""`state.in-memory`: the embedded state store, and the reference of the state conformance suite.

Concurrency (Dapr's rules, as runtime/components/api.py states them):
- an etag, when given, must equal the item's current etag whatever the concurrency mode (a
  missing or expired item matches no etag): otherwise EtagMismatch;
- first-write without an etag: the item must not exist yet (EtagMismatch if it does);
- last-write without an etag: overwrite (or delete) unconditionally;
- an etag that cannot be one of ours (not a decimal number) is EtagInvalid, before any check.

Etags are versions: every write stamps its item with the next value of one store-wide counter,
so an item's etags strictly increase and an item deleted and written again never gets an etag
it had before (a stale etag cannot match by accident). An empty etag counts as no etag.

TTL: `SetRequest.ttl` (or the request's `ttlInSeconds` metadata when `ttl` is None); zero or
negative means forever, and a write without TTL makes the item permanent again. An item with a
TTL carries `ttlExpireTime` (RFC 3339, UTC) in its metadata. Expired items are invisible at
once (checked on every read and write) and freed by a sweep every `cleanupInterval`.

`transact` checks every operation in order against the items as the earlier operations would
leave them, then applies them all: all or nothing. `bulk_set` / `bulk_delete` are not atomic:
each item is tried, and the first error is raised after all of them ran.

Component metadata: `cleanupInterval` (duration, default `1s`).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from runtime.components.api import (
    Concurrency,
    DeleteRequest,
    Metadata,
    SetRequest,
    StateFeature,
    StateItem,
    StateOperation,
)
from runtime.components.errors import ComponentError, EtagInvalid, EtagMismatch
from runtime.components.sweeper import Sweeper


@dataclass(frozen=True, slots=True)
class _Entry:
    value: bytes
    version: int
    expires: float | None = None
    """Wall-clock time (time.time()) after which the item no longer exists."""

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


_Change = tuple[str, _Entry | None]
"""A key and what it becomes (None: deleted)."""


class InMemoryStateStore:
    features = StateFeature.ETAG | StateFeature.TRANSACTIONAL | StateFeature.TTL
    runs_inline = True
    answers_at_once = True

    def __init__(self) -> None:
        self._items: dict[str, _Entry] = {}
        self._version = 0
        self._expiries: list[tuple[float, int, str]] = []
        """A heap of (expires, version, key); entries whose item changed since are skipped."""
        self._sweeper = Sweeper("state.in-memory", lambda: self.sweep(time.time()))

    async def init(self, metadata: Metadata) -> None:
        self._sweeper.start(metadata)

    async def ping(self) -> None:
        self._sweeper.check_open()

    async def close(self) -> None:
        await self._sweeper.stop()
        self._items.clear()
        self._expiries.clear()

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        return _item(key, self._live(key, time.time()))

    async def bulk_get(self, keys: Sequence[str], metadata: Metadata) -> list[StateItem]:
        now = time.time()
        return [_item(key, self._live(key, now)) for key in keys]

    # -- writes -----------------------------------------------------------------------------------

    async def set(self, request: SetRequest) -> None:
        self._apply(self._plan([request]))

    async def delete(self, request: DeleteRequest) -> None:
        self._apply(self._plan([request]))

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        self._each(requests)

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        self._each(requests)

    async def transact(self, operations: Sequence[StateOperation], metadata: Metadata) -> None:
        self._apply(self._plan(operations))

    def _each(self, operations: Sequence[StateOperation]) -> None:
        errors: list[ComponentError] = []
        for operation in operations:
            try:
                self._apply(self._plan([operation]))
            except ComponentError as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def _plan(self, operations: Sequence[StateOperation]) -> list[_Change]:
        """What `operations` change, checked in order; raises before anything is changed."""
        now = time.time()
        staged: dict[str, _Entry | None] = {}
        version = self._version
        for operation in operations:
            key = operation.key
            current = staged[key] if key in staged else self._live(key, now)
            _check(operation, current)
            if isinstance(operation, SetRequest):
                version += 1
                staged[key] = _Entry(operation.value, version, _expiry(operation, now))
            else:
                staged[key] = None
        return list(staged.items())

    def _apply(self, changes: list[_Change]) -> None:
        for key, entry in changes:
            if entry is None:
                self._items.pop(key, None)
                continue
            self._items[key] = entry
            self._version = max(self._version, entry.version)
            if entry.expires is not None:
                heapq.heappush(self._expiries, (entry.expires, entry.version, key))

    # -- expiry -----------------------------------------------------------------------------------

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._items.get(key)
        if entry is not None and entry.expired(now):
            del self._items[key]
            return None
        return entry

    def sweep(self, now: float) -> int:
        """Free the items expired at `now`; returns how many."""
        freed = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, version, key = heapq.heappop(self._expiries)
            entry = self._items.get(key)
            if entry is not None and entry.version == version:
                del self._items[key]
                freed += 1
        if len(self._expiries) > 2 * len(self._items) + 1024:
            self._compact()
        return freed

    def _compact(self) -> None:
        """Drop heap entries of items rewritten since (a key rewritten often with a TTL)."""
        self._expiries = [
            (entry.expires, entry.version, key)
            for key, entry in self._items.items()
            if entry.expires is not None
        ]
        heapq.heapify(self._expiries)


def _check(operation: StateOperation, current: _Entry | None) -> None:
    etag = operation.etag or None
    if etag is not None:
        if not (etag.isascii() and etag.isdigit()):
            raise EtagInvalid(operation.key, etag)
        if current is None or current.version != int(etag):
            raise EtagMismatch(operation.key)
    elif operation.concurrency is Concurrency.FIRST_WRITE and current is not None:
        raise EtagMismatch(operation.key)


def _expiry(request: SetRequest, now: float) -> float | None:
    ttl = request.ttl
    if ttl is None and "ttlInSeconds" in request.metadata:
        text = request.metadata["ttlInSeconds"]
        try:
            ttl = float(text)
        except ValueError:
            raise ComponentError(
                f"ttlInSeconds: expected a number of seconds, got {text!r}", retryable=False
            ) from None
    if ttl is None or not 0 < ttl < math.inf:
        return None
    return now + ttl


def _item(key: str, entry: _Entry | None) -> StateItem:
    if entry is None:
        return StateItem(key=key, value=None)
    metadata = {}
    if entry.expires is not None:
        metadata["ttlExpireTime"] = rfc3339(entry.expires)
    return StateItem(key=key, value=entry.value, etag=str(entry.version), metadata=metadata)


def rfc3339(timestamp: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, ValueError, OSError):  # beyond year 9999: as good as never
        moment = datetime.max.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
