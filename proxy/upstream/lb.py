"""Load balancers: pick an endpoint among a cluster's healthy ones.

A balancer is rebuilt (`update`) whenever membership or health changes, so `choose`
does no filtering and stays cheap. Every policy honours endpoint weights.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from proxy.upstream.endpoint import Endpoint

NO_EXCLUSIONS: frozenset[Endpoint] = frozenset()


class LoadBalancer(Protocol):
    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the set to choose from (already filtered to healthy endpoints)."""

    def choose(self, exclude: Collection[Endpoint] = NO_EXCLUSIONS) -> Endpoint | None:
        """An endpoint, avoiding `exclude` when any other is available; None if empty."""


class _Base:
    _endpoints: Sequence[Endpoint] = ()

    def choose(self, exclude: Collection[Endpoint] = NO_EXCLUSIONS) -> Endpoint | None:
        if not self._endpoints:
            return None
        if not exclude:
            return self._pick()
        # Bounded retries keep the common case O(1); fall back to a scan.
        for _ in range(len(self._endpoints)):
            candidate = self._pick()
            if candidate not in exclude:
                return candidate
        remaining = [e for e in self._endpoints if e not in exclude]
        return remaining[0] if remaining else self._pick()

    def _pick(self) -> Endpoint:
        raise NotImplementedError


class RoundRobin(_Base):
    """Plain rotation; with unequal weights, nginx's smooth weighted round robin."""

    def __init__(self) -> None:
        self._cycle: itertools.cycle[Endpoint] = itertools.cycle(())
        self._current: list[int] = []
        self._weighted = False

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = list(endpoints)
        self._weighted = len({e.weight for e in self._endpoints}) > 1
        # Start at a random offset so many proxies don't hit the same first host.
        offset = random.randrange(len(self._endpoints)) if self._endpoints else 0
        self._cycle = itertools.cycle(self._endpoints[offset:] + self._endpoints[:offset])
        self._current = [0] * len(self._endpoints)

    def choose(self, exclude: Collection[Endpoint] = NO_EXCLUSIONS) -> Endpoint | None:
        if not exclude and not self._weighted and self._endpoints:
            return next(self._cycle)  # the common case, inlined (once per request)
        return super().choose(exclude)

    def _pick(self) -> Endpoint:
        if not self._weighted:
            return next(self._cycle)
        total = 0
        best = 0
        current = self._current
        for i, endpoint in enumerate(self._endpoints):
            current[i] += endpoint.weight
            total += endpoint.weight
            if current[i] > current[best]:
                best = i
        current[best] -= total
        return self._endpoints[best]


class Random(_Base):
    """Uniform, or proportional to weight."""

    def __init__(self) -> None:
        self._cumulative: list[int] = []

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = list(endpoints)
        self._cumulative = list(itertools.accumulate(e.weight for e in self._endpoints))

    def _pick(self) -> Endpoint:
        point = random.randrange(self._cumulative[-1])
        return self._endpoints[bisect.bisect_right(self._cumulative, point)]


class LeastRequest(Random):
    """Power of two choices: of two weighted-random picks, the one with less work per weight."""

    def _pick(self) -> Endpoint:
        first = super()._pick()
        if len(self._endpoints) == 1:
            return first
        second = super()._pick()
        # Compare active/weight without division: a/wa < b/wb  <=>  a*wb < b*wa.
        if second.rq_active * first.weight < first.rq_active * second.weight:
            return second
        return first


class HashBalancer(Protocol):
    """A balancer that maps a key's hash to an endpoint consistently (sharding)."""

    def update(self, endpoints: Sequence[Endpoint]) -> None: ...

    def choose(self, exclude: Collection[Endpoint] = NO_EXCLUSIONS) -> Endpoint | None: ...

    def choose_hash(self, key_hash: int) -> Endpoint | None:
        """The endpoint that owns `key_hash` (a 32-bit value)."""


class Ketama(_Base):
    """twemproxy's ketama continuum: 160 points per endpoint and weight unit, from md5."""

    POINTS_PER_WEIGHT = 160

    def __init__(self) -> None:
        self._points: list[int] = []
        self._owners: list[Endpoint] = []

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = list(endpoints)
        ring: list[tuple[int, str, Endpoint]] = []
        for endpoint in self._endpoints:
            name = str(endpoint.address)
            for index in range(self.POINTS_PER_WEIGHT * endpoint.weight // 4):
                digest = hashlib.md5(f"{name}-{index}".encode(), usedforsecurity=False).digest()
                for part in range(4):
                    point = int.from_bytes(digest[part * 4 : part * 4 + 4], "little")
                    ring.append((point, name, endpoint))
        ring.sort(key=lambda item: (item[0], item[1]))
        self._points = [point for point, _, _ in ring]
        self._owners = [owner for _, _, owner in ring]

    def choose_hash(self, key_hash: int) -> Endpoint | None:
        if not self._points:
            return None
        index = bisect.bisect_left(self._points, key_hash & 0xFFFFFFFF)
        return self._owners[index if index < len(self._owners) else 0]

    def _pick(self) -> Endpoint:
        return self.choose_hash(random.getrandbits(32)) or self._endpoints[0]


class Maglev(_Base):
    """Google's Maglev table (as Envoy's maglev LB): even spread, minimal disruption."""

    TABLE_SIZE = 65537  # prime, Envoy's default

    def __init__(self) -> None:
        self._table: list[Endpoint] = []

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = list(endpoints)
        self._table = _maglev_table(self._endpoints, self.TABLE_SIZE) if endpoints else []

    def choose_hash(self, key_hash: int) -> Endpoint | None:
        return self._table[key_hash % self.TABLE_SIZE] if self._table else None

    def _pick(self) -> Endpoint:
        return self.choose_hash(random.getrandbits(32)) or self._endpoints[0]


def _maglev_table(endpoints: Sequence[Endpoint], size: int) -> list[Endpoint]:
    """Fill `size` entries by each endpoint's permutation, weight turns per round."""
    ordered = sorted(endpoints, key=lambda e: str(e.address))
    permutations = []
    for endpoint in ordered:
        digest = hashlib.md5(str(endpoint.address).encode(), usedforsecurity=False).digest()
        offset = int.from_bytes(digest[:8], "little") % size
        skip = int.from_bytes(digest[8:], "little") % (size - 1) + 1
        permutations.append([offset, skip, 0])
    table: list[Endpoint | None] = [None] * size
    filled = 0
    while True:
        for endpoint, permutation in zip(ordered, permutations, strict=True):
            for _ in range(endpoint.weight):
                offset, skip, turn = permutation
                slot = (offset + turn * skip) % size
                while table[slot] is not None:
                    turn += 1
                    slot = (offset + turn * skip) % size
                permutation[2] = turn + 1
                table[slot] = endpoint
                filled += 1
                if filled == size:
                    return [entry for entry in table if entry is not None]


LOAD_BALANCERS: dict[str, Callable[[], LoadBalancer]] = {
    "round_robin": RoundRobin,
    "random": Random,
    "least_request": LeastRequest,
    "ketama": Ketama,
    "maglev": Maglev,
}
HASH_BALANCERS: dict[str, Callable[[], HashBalancer]] = {"ketama": Ketama, "maglev": Maglev}
