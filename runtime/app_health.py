"""Whether the app is up: what `dapr run` waits for before it delivers anything to the app,
and, with Dapr's app health check (`runtime.app_health`), what stops deliveries while it is
not.

With the health check the app is up when `GET path` answers 2xx within the probe's timeout
(a gRPC app: when its port accepts a connection); without, when its port accepts one. Once
up, the check probes every `interval`: `threshold` failures in a row make the app unhealthy
(deliveries stop), one success makes it healthy again (they start again), as in Dapr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from runtime.app_channel import AppChannel, AppUnavailable
from runtime.config import AppHealth, RuntimeConfig

log = logging.getLogger("mecha.runtime")

POLL_INTERVAL = 0.1
"""How often the port is tried while the app starts (Dapr's CLI tries every 50ms)."""
NOTICE_AFTER = 30.0
"""A slow app gets one log line that mecha is still waiting for it, then one per this long."""


async def app_answers(app: AppChannel, config: RuntimeConfig) -> bool:
    health = config.app_health
    if health is not None and health.path is not None and config.app_protocol == "http":
        return await _health_path(app, health)
    return await _port_open(config.app_host, config.app_port or 0, POLL_INTERVAL * 10)


async def wait_for_app(app: AppChannel, config: RuntimeConfig) -> None:
    """Until the app is up; a line in the log now and then while it is not."""
    loop = asyncio.get_running_loop()
    started = notice = loop.time()
    interval = POLL_INTERVAL
    if config.app_health is not None:
        interval = min(config.app_health.interval, 1.0)
    while not await app_answers(app, config):
        if loop.time() - notice > NOTICE_AFTER:
            notice = loop.time()
            log.info("waiting for the app on port %s (%.0fs so far)",
                     config.app_port, notice - started)  # fmt: skip
        await asyncio.sleep(interval)
    log.info("app is up on port %s: delivering subscriptions and bindings", config.app_port)


Turn = Callable[[], Awaitable[None]]


async def watch_app(app: AppChannel, config: RuntimeConfig, unhealthy: Turn,
                    healthy: Turn) -> None:  # fmt: skip
    """Probe the app until cancelled; call `unhealthy` and `healthy` when it turns so."""
    health = config.app_health
    assert health is not None
    failures, up = 0, True
    while True:
        await asyncio.sleep(health.interval)
        if await app_answers(app, config):
            failures = 0
            if not up:
                up = True
                log.info("app is healthy again: deliveries start")
                await healthy()
            continue
        failures += 1
        if up and failures >= health.threshold:
            up = False
            log.warning("app is unhealthy (%d probes failed): deliveries stop", failures)
            await unhealthy()


async def _health_path(app: AppChannel, health: AppHealth) -> bool:
    assert health.path is not None
    try:
        answer = await app.request("GET", health.path, timeout=health.timeout)
    except AppUnavailable:
        return False
    return 200 <= answer.status < 300


async def _port_open(host: str, port: int, timeout: float) -> bool:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
