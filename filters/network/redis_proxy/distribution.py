"""twemproxy's key distributions over a pool of servers: ketama, modula, random.

Built as twemproxy builds them (src/hashkit/nc_ketama.c, nc_modula.c, nc_random.c), so a
key lands on the server it lands on behind nutcracker:
- ketama: each live server gets floor(weight / total * 40 * live servers) groups of 4
  points (the arithmetic in single precision, as twemproxy's), the points of group i being
  the four little-endian words of md5("<name>-<i>"), where name is the server's name or
  `host:port` (`host` alone for port 11211); a key hash goes to the first point at or
  above it, past the last to the first;
- modula: each live server listed `weight` times, in the order of their names (twemproxy
  sorts them), key hash modulo that count;
- random: any live server.
With auto_eject_hosts, a server whose connections failed server_failure_limit times in a
row is left out (the ring rebuilt without it) for server_retry_timeout, then let in again.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from proxy.upstream.endpoint import Endpoint

DISTRIBUTIONS = ("ketama", "modula", "random")
POINTS_PER_SERVER = 160


@dataclass(frozen=True, slots=True)
class Server:
    endpoint: Endpoint
    name: str
    """What ketama hashes: the configured name, else `host:port`."""
    weight: int


@dataclass(frozen=True, slots=True)
class Ejection:
    failure_limit: int
    retry_timeout: float
    failures: Callable[[Endpoint], int]
    """Consecutive connection failures to an endpoint, as its pool counts them."""
    forgive: Callable[[Endpoint], None]
    """Reset that count (the server is out: its next chance starts afresh)."""


def ketama_name(endpoint: Endpoint, name: str | None) -> str:
    if name:
        return name
    address = endpoint.address
    return address.host if address.port == 11211 else f"{address.host}:{address.port}"


class Distribution:
    """Key hash -> endpoint over `servers` (HashBalancer's choose_hash)."""

    def __init__(self, kind: str, servers: Sequence[Server], ejection: Ejection | None = None):
        self.kind = kind
        # twemproxy sorts a pool's servers by name (shorter first, then bytewise) while
        # checking them for duplicates, and keeps that order: modula counts in it.
        self.servers = sorted(servers, key=lambda s: (len(s.name.encode()), s.name.encode()))
        self.ejection = ejection
        self._retry_at: dict[Endpoint, float] = {}
        self._next_rebuild = float("inf")
        self._points: list[int] = []
        self._owners: list[Endpoint] = []
        self._rebuild(time.monotonic())
        if ejection is not None:
            self.choose_hash = self._choose_ejecting  # type: ignore[method-assign]

    def choose_hash(self, key_hash: int) -> Endpoint | None:
        owners = self._owners
        if not owners:
            return None
        if self.kind == "ketama":
            index = bisect.bisect_left(self._points, key_hash)
            return owners[index if index < len(owners) else 0]
        if self.kind == "modula":
            return owners[key_hash % len(owners)]
        return owners[random.randrange(len(owners))]

    def _choose_ejecting(self, key_hash: int) -> Endpoint | None:
        ejection = self.ejection
        assert ejection is not None
        now = time.monotonic()
        if now >= self._next_rebuild:
            self._rebuild(now)
        endpoint = Distribution.choose_hash(self, key_hash)
        if endpoint is not None and ejection.failures(endpoint) >= ejection.failure_limit:
            ejection.forgive(endpoint)
            self._retry_at[endpoint] = now + ejection.retry_timeout
            self._rebuild(now)
            endpoint = Distribution.choose_hash(self, key_hash)
        return endpoint

    @property
    def ejected(self) -> list[Endpoint]:
        return list(self._retry_at)

    def _rebuild(self, now: float) -> None:
        self._retry_at = {e: t for e, t in self._retry_at.items() if t > now}
        self._next_rebuild = min(self._retry_at.values(), default=float("inf"))
        live = [s for s in self.servers if s.endpoint not in self._retry_at]
        if self.kind == "ketama":
            self._points, self._owners = _continuum(live)
        elif self.kind == "modula":
            self._owners = [s.endpoint for s in live for _ in range(s.weight)]
        else:
            self._owners = [s.endpoint for s in live]


def _f32(value: float) -> float:
    """Rounded to single precision, as each step of twemproxy's float arithmetic is."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _continuum(live: Sequence[Server]) -> tuple[list[int], list[Endpoint]]:
    total = sum(s.weight for s in live)
    points: list[tuple[int, Endpoint]] = []
    for server in live:
        share = _f32(_f32(server.weight) / _f32(total))
        scaled = _f32(_f32(_f32(share * POINTS_PER_SERVER) / 4) * _f32(len(live)))
        groups = int(_f32(scaled + 0.0000000001))
        for group in range(groups):
            digest = hashlib.md5(f"{server.name}-{group}".encode(), usedforsecurity=False)
            raw = digest.digest()
            for word in range(4):
                value = int.from_bytes(raw[word * 4 : word * 4 + 4], "little")
                points.append((value, server.endpoint))
    points.sort(key=lambda point: point[0])
    return [p for p, _ in points], [e for _, e in points]
