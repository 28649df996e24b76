"""Redis Cluster topology: which master owns each of the 16384 slots.

Learned from CLUSTER SLOTS asked of any known node (the configured seeds first), at
start, every refresh_interval, and soon after a MOVED, a failed connection or a
CLUSTERDOWN. Masters become the cluster's endpoints.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import hiredis

from proxy.config.units import Address
from proxy.upstream.endpoint import Endpoint

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.redis_cluster")

SLOTS = 16384
MIN_REFRESH_GAP = 0.2


class SlotMap:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.settings = cluster.config.redis_cluster
        assert self.settings is not None
        self.owners: list[Endpoint | None] = [None] * SLOTS
        self.refreshes = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"redis-cluster:{self.cluster.name}")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def request_refresh(self) -> None:
        """Refresh soon (coalesced): the map is known to be stale."""
        self._wake.set()

    def moved(self, slot: int, address: Address) -> Endpoint:
        """A MOVED reply: trust it for this slot at once, and refresh the whole map."""
        endpoint = self.endpoint(address)
        self.owners[slot] = endpoint
        self.request_refresh()
        return endpoint

    def endpoint(self, address: Address) -> Endpoint:
        for endpoint in self.cluster.endpoints:
            if endpoint.address == address:
                return endpoint
        members = [(e.address, e.weight, e.hostname) for e in self.cluster.endpoints]
        self.cluster.set_endpoints([*members, (address, 1, None)])
        return next(e for e in self.cluster.endpoints if e.address == address)

    async def _run(self) -> None:
        interval = self.settings.refresh_interval if self.settings else 5.0
        while True:
            await self.refresh()
            self._ready.set()
            self._wake.clear()
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
                await asyncio.sleep(MIN_REFRESH_GAP)
            except TimeoutError:
                pass

    async def refresh(self) -> None:
        seeds = [e.address for e in self.cluster.config.endpoints]
        known = [e.address for e in self.cluster.endpoints]
        for address in dict.fromkeys([*known, *seeds]):
            try:
                slots = await self._ask(address)
            except (OSError, TimeoutError, ValueError, hiredis.ProtocolError) as exc:
                log.debug("cluster %r: CLUSTER SLOTS from %s failed: %s",
                          self.cluster.name, address, exc)  # fmt: skip
                continue
            self._apply(slots, address)
            self.refreshes += 1
            return
        log.warning("cluster %r: no node answered CLUSTER SLOTS", self.cluster.name)

    async def _ask(self, address: Address) -> list[Any]:
        assert self.settings is not None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                address.host, address.port, **self.cluster.tls_options(address.host)
            ),
            self.cluster.config.connect_timeout,
        )
        try:
            parser = hiredis.Reader()
            if self.settings.password:
                user = [self.settings.username] if self.settings.username else []
                writer.write(_command("AUTH", *user, self.settings.password))
            writer.write(_command("CLUSTER", "SLOTS"))
            answers: list[Any] = []
            expected = 2 if self.settings.password else 1
            async with asyncio.timeout(self.cluster.config.connect_timeout * 2):
                while len(answers) < expected:
                    data = await reader.read(65536)
                    if not data:
                        raise ValueError("connection closed")
                    parser.feed(data)
                    while (answer := parser.gets()) is not False:
                        answers.append(answer)
            slots = answers[-1]
            if isinstance(slots, Exception) or not isinstance(slots, list):
                raise ValueError(f"CLUSTER SLOTS answered {slots!r}")
            return slots
        finally:
            writer.close()

    def _apply(self, slots: list[Any], asked: Address) -> None:
        owners: list[Endpoint | None] = [None] * SLOTS
        masters: dict[Address, None] = {}
        ranges = []
        for entry in slots:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            host = master[0].decode() if master[0] else asked.host
            address = Address(host, int(master[1]))
            masters[address] = None
            ranges.append((start, end, address))
        self.cluster.set_endpoints([(a, 1, None) for a in masters])
        by_address = {e.address: e for e in self.cluster.endpoints}
        for start, end, address in ranges:
            endpoint = by_address[address]
            for slot in range(start, end + 1):
                owners[slot] = endpoint
        self.owners = owners


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)
