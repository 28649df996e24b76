"""Swapping runtime components on a reload.

New and changed components start before anything is swapped, so one that fails to start
leaves the running set untouched. After the swap, subscriptions and input bindings move to
the new instances; the replaced ones close after a grace period, which lets calls that
already hold them finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from runtime.config import ComponentSpec
from runtime.runtime import LoadedComponent, Runtime, RuntimeStartError

log = logging.getLogger("mecha.runtime")


async def start_components(
    runtime: Runtime, specs: Iterable[ComponentSpec]
) -> dict[str, LoadedComponent]:
    """Start components without registering them; on a failure, close those started."""
    started: dict[str, LoadedComponent] = {}
    try:
        for spec in sorted(specs, key=lambda s: s.block != "secretstores"):
            if spec.serves(runtime.config.app_id):
                started[spec.name] = await runtime.load_component(spec)
    except RuntimeStartError:
        await close_components(started.values())
        raise
    return started


def swap_components(
    runtime: Runtime, started: dict[str, LoadedComponent], removed: Iterable[str]
) -> list[LoadedComponent]:
    """Put the started components in place; returns the ones they replaced or that were
    removed. Does not await: no call sees half a swap."""
    replaced = []
    for name in removed:
        previous = runtime.components.pop(name, None)
        if previous is not None:
            replaced.append(previous)
    for name, loaded in started.items():
        previous = runtime.components.get(name)
        if previous is not None:
            replaced.append(previous)
        runtime.components[name] = loaded
    return replaced


async def rewire_delivery(runtime: Runtime, names: Iterable[str]) -> None:
    """Subscriptions and input bindings follow the components named (swapped or removed)."""
    delivery = runtime.delivery
    for name in names:
        loaded = runtime.components.get(name)
        ready = loaded if loaded is not None and loaded.ready else None
        pubsub = ready.instance if ready and ready.spec.block == "pubsub" else None
        await delivery.move_subscriptions(name, pubsub)
        await delivery.stop_binding(name)
        if ready and ready.spec.block == "bindings" and hasattr(ready.instance, "read"):
            await delivery.read_binding(name, ready.instance)


async def close_components(components: Iterable[LoadedComponent]) -> None:
    for loaded in components:
        try:
            await loaded.instance.close()
        except Exception:  # one component must not keep the others open
            log.exception("component %r failed to close", loaded.spec.name)


async def close_after(components: list[LoadedComponent], grace: float) -> None:
    """Close replaced components once calls that already hold them have had `grace`."""
    try:
        await asyncio.sleep(grace)
    finally:
        await close_components(components)
