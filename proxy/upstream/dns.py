"""DNS-resolved membership (Envoy's strict_dns): every address a name resolves to is an endpoint."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from proxy.config.units import Address

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.dns")

FAMILIES = {"auto": socket.AF_UNSPEC, "v4_only": socket.AF_INET, "v6_only": socket.AF_INET6}


class DnsResolver:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._task: asyncio.Task[None] | None = None
        self._resolved_once = asyncio.Event()
        # Last good answer per configured name: a failed lookup keeps the previous hosts.
        self._answers: dict[Address, list[Address]] = {}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dns:{self.cluster.name}")
        await self._resolved_once.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self.resolve()
            self._resolved_once.set()
            await asyncio.sleep(self.cluster.config.dns_refresh_rate)

    async def resolve(self) -> None:
        loop = asyncio.get_running_loop()
        family = FAMILIES[self.cluster.config.dns_lookup_family]
        for configured in self.cluster.config.endpoints:
            name = configured.address
            try:
                infos = await loop.getaddrinfo(
                    name.host,
                    name.port,
                    family=family,
                    type=socket.SOCK_STREAM,
                    proto=socket.IPPROTO_TCP,
                )
            except OSError as exc:
                self.cluster.stats.dns_failures += 1
                log.warning("cluster %r: cannot resolve %s: %s", self.cluster.name, name.host, exc)
                continue
            self._answers[name] = list(
                dict.fromkeys(Address(str(info[4][0]), name.port) for info in infos)
            )
        weights = {e.address: e.weight for e in self.cluster.config.endpoints}
        self.cluster.set_endpoints(
            (address, weights[name], name.host)
            for name, addresses in self._answers.items()
            for address in addresses
        )
