"""`configuration.in-memory`: configuration items held in this process.

The component's metadata seeds the items: every key/value becomes an item at version "1",
except the RESERVED keys. `set(key, value)` (for tests and admin) changes or adds an item,
bumps its version (a decimal counter per key) and notifies the subscribers of that key.

Each subscription has a task of its own that calls its handler with what changed since the
last call: changes that arrive while the handler runs are coalesced (the latest item per key),
so a slow handler delays only itself and never makes memory grow beyond one item per key.
A handler's exception is logged and the subscription goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from runtime.components.api import (
    ConfigurationHandler,
    ConfigurationItem,
    Metadata,
    Subscription,
)

log = logging.getLogger("mecha.configuration.in-memory")

RESERVED = frozenset({"appID", "namespace", "consumerID"})
"""Identity keys runtimes add to every component's metadata (Dapr's `consumerID`, namespaces):
they describe the component, not its configuration."""


class _Watch:
    """One subscription: the keys it watches (all if empty), and its delivery task."""

    def __init__(
        self, owner: InMemoryConfigurationStore, keys: frozenset[str], handler: ConfigurationHandler
    ) -> None:
        self._owner = owner
        self._keys = keys
        self._handler = handler
        self._pending: dict[str, ConfigurationItem] = {}
        self._wake = asyncio.Event()
        name = f"configuration.in-memory subscription #{owner.next_watch_id()}"
        self._task = asyncio.create_task(self._run(), name=name)

    def offer(self, key: str, item: ConfigurationItem) -> None:
        if not self._keys or key in self._keys:
            self._pending[key] = item
            self._wake.set()

    async def cancel(self) -> None:
        self._owner.forget(self)
        await self.stop()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            changed, self._pending = self._pending, {}
            try:
                await self._handler(changed)
            except Exception:
                log.exception("configuration handler failed on %s", sorted(changed))


class InMemoryConfigurationStore:
    runs_inline = True
    answers_at_once = True

    def __init__(self) -> None:
        self._items: dict[str, ConfigurationItem] = {}
        self._watches: set[_Watch] = set()
        self._watch_ids = 0

    async def init(self, metadata: Metadata) -> None:
        self._items = {
            key: ConfigurationItem(value=value, version="1")
            for key, value in metadata.items()
            if key not in RESERVED
        }

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        watches, self._watches = self._watches, set()
        await asyncio.gather(*(watch.stop() for watch in watches))

    async def get(self, keys: Sequence[str], metadata: Metadata) -> dict[str, ConfigurationItem]:
        if not keys:
            return dict(self._items)
        return {key: self._items[key] for key in keys if key in self._items}

    async def subscribe(
        self, keys: Sequence[str], handler: ConfigurationHandler, metadata: Metadata
    ) -> Subscription:
        watch = _Watch(self, frozenset(keys), handler)
        self._watches.add(watch)
        return watch

    async def set(
        self, key: str, value: str, metadata: Mapping[str, str] | None = None
    ) -> ConfigurationItem:
        """Change (or add) an item, bump its version and tell its subscribers."""
        previous = self._items.get(key)
        version = int(previous.version) + 1 if previous is not None else 1
        item = ConfigurationItem(value=value, version=str(version), metadata=dict(metadata or {}))
        self._items[key] = item
        for watch in self._watches:
            watch.offer(key, item)
        return item

    def forget(self, watch: _Watch) -> None:
        self._watches.discard(watch)

    def next_watch_id(self) -> int:
        self._watch_ids += 1
        return self._watch_ids
