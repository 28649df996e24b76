"""Load balancers: pick an endpoint among a cluster's healthy ones.

A balancer is rebuilt (`update`) whenever membership or health changes, so `choose`
does no filtering and stays cheap. Every policy honours endpoint weights.
"""

from __future__ import annotations

import bisect
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


LOAD_BALANCERS: dict[str, Callable[[], LoadBalancer]] = {
    "round_robin": RoundRobin,
    "random": Random,
    "least_request": LeastRequest,
}
