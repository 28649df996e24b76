"""Active TCP health checking: connect, optionally send a payload and expect a reply.

An endpoint turns unhealthy after `unhealthy_threshold` failed checks in a row and
healthy again after `healthy_threshold` passed ones; its first check decides at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from proxy.config.model import HealthCheckConfig
from proxy.upstream.endpoint import Endpoint, Health

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.health")

_MAX_REPLY = 64 * 1024


class HealthChecker:
    def __init__(self, cluster: Cluster, config: HealthCheckConfig) -> None:
        self.cluster = cluster
        self.config = config
        self._tasks: dict[Endpoint, asyncio.Task[None]] = {}
        self._started = False
        self._settled = asyncio.Event()

    def sync(self, endpoints: Iterable[Endpoint], removed: Iterable[Endpoint] = ()) -> None:
        """Check new endpoints and stop checking removed ones."""
        for endpoint in removed:
            task = self._tasks.pop(endpoint, None)
            if task:
                task.cancel()
        if not self._started:
            return
        for endpoint in endpoints:
            if endpoint not in self._tasks:
                name = f"health-check:{self.cluster.name}:{endpoint.address}"
                self._tasks[endpoint] = asyncio.create_task(self._run(endpoint), name=name)

    async def start(self) -> None:
        """Begin checking and return once every current endpoint has had its first answer."""
        self._started = True
        self.sync(self.cluster.endpoints)
        self._update_settled()
        await self._settled.wait()

    async def stop(self) -> None:
        self._started = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, endpoint: Endpoint) -> None:
        while True:
            failure = await self.check(endpoint)
            self._record(endpoint, failure)
            jitter = random.uniform(0.9, 1.1)
            await asyncio.sleep(self.config.interval * jitter)

    async def check(self, endpoint: Endpoint) -> str | None:
        """None when the endpoint passed, else why it failed."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.config.timeout):
                reader, writer = await asyncio.open_connection(
                    endpoint.address.host, endpoint.address.port,
                    **self.cluster.tls_options(endpoint.address.host, endpoint.hostname),
                )  # fmt: skip
                if self.config.send:
                    writer.write(self.config.send)
                if self.config.expect:
                    await self._expect(reader)
        except TimeoutError:
            return "timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            return str(exc) or type(exc).__name__
        finally:
            if writer is not None:
                writer.close()
        return None

    async def _expect(self, reader: asyncio.StreamReader) -> None:
        received = b""
        while self.config.expect not in received:
            chunk = await reader.read(4096)
            if not chunk:
                raise ValueError(f"reply {received[:64]!r} lacks {self.config.expect!r}")
            received = (received + chunk)[-_MAX_REPLY:]

    def _record(self, endpoint: Endpoint, failure: str | None) -> None:
        before = endpoint.health
        if failure is None:
            self.cluster.stats.hc_success += 1
            endpoint.hc_successes += 1
            endpoint.hc_failures = 0
            if before is Health.PENDING or (
                before is Health.UNHEALTHY
                and endpoint.hc_successes >= self.config.healthy_threshold
            ):
                endpoint.health = Health.HEALTHY
        else:
            self.cluster.stats.hc_failure += 1
            endpoint.hc_failures += 1
            endpoint.hc_successes = 0
            if before is Health.PENDING or (
                before is Health.HEALTHY and endpoint.hc_failures >= self.config.unhealthy_threshold
            ):
                endpoint.health = Health.UNHEALTHY
        if endpoint.health is not before:
            level = logging.INFO if endpoint.healthy else logging.WARNING
            why = f" ({failure})" if failure else ""
            log.log(
                level,
                "cluster %r endpoint %s is %s%s",
                self.cluster.name,
                endpoint.address,
                endpoint.health.value,
                why,
            )
            self.cluster.refresh_load_balancer()
            self._update_settled()

    def _update_settled(self) -> None:
        if all(e.health is not Health.PENDING for e in self.cluster.endpoints):
            self._settled.set()
