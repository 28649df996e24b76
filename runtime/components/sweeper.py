"""The periodic clean-up of in-memory components: expired items are freed between reads too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from runtime.components.api import Metadata
from runtime.components.errors import ComponentError
from runtime.components.metadata import duration

DEFAULT_CLEANUP_INTERVAL = 1.0


class Sweeper:
    """A named task calling `sweep` every `cleanupInterval` (component metadata) seconds.

    It also tells whether its component is open: started by `init`, stopped by `close`."""

    def __init__(self, component: str, sweep: Callable[[], object]) -> None:
        self._component = component
        self._sweep = sweep
        self._task: asyncio.Task[None] | None = None

    def start(self, metadata: Metadata) -> None:
        interval = duration(metadata, "cleanupInterval", DEFAULT_CLEANUP_INTERVAL, positive=True)
        if self._task is None:
            name = f"{self._component} sweep"
            self._task = asyncio.create_task(self._sweep_every(interval), name=name)

    def check_open(self) -> None:
        if self._task is None:
            raise ComponentError(f"{self._component} is not initialised (or closed)")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._sweep()
