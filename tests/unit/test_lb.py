"""Load balancers: rotation, weights, least-request preference, exclusions and updates."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable

import pytest

from proxy.config.units import Address
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.lb import (
    LOAD_BALANCERS,
    Ketama,
    LeastRequest,
    LoadBalancer,
    Maglev,
    Random,
    RoundRobin,
)

POLICIES: list[Callable[[], LoadBalancer]] = [RoundRobin, Random, LeastRequest]


def endpoints(*weights: int) -> list[Endpoint]:
    return [Endpoint(Address("10.0.0.1", 8000 + i), weight) for i, weight in enumerate(weights)]


def balancer(factory: Callable[[], LoadBalancer], members: list[Endpoint]) -> LoadBalancer:
    lb = factory()
    lb.update(members)
    return lb


def picks(lb: LoadBalancer, count: int) -> list[Endpoint]:
    chosen = [lb.choose() for _ in range(count)]
    assert None not in chosen
    return [e for e in chosen if e is not None]


def test_registry_names_every_policy() -> None:
    assert set(LOAD_BALANCERS) == {"round_robin", "random", "least_request", "ketama", "maglev"}
    assert isinstance(LOAD_BALANCERS["round_robin"](), RoundRobin)
    assert isinstance(LOAD_BALANCERS["random"](), Random)
    assert isinstance(LOAD_BALANCERS["least_request"](), LeastRequest)


# -- round robin ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_round_robin_rotates_evenly(seed: int) -> None:
    random.seed(seed)  # the starting offset is random
    members = endpoints(1, 1, 1, 1)
    chosen = picks(balancer(RoundRobin, members), 40)
    start = members.index(chosen[0])
    expected = [members[(start + i) % 4] for i in range(40)]
    assert chosen == expected


def test_round_robin_equal_weights_above_one_rotate() -> None:
    members = endpoints(3, 3)
    chosen = picks(balancer(RoundRobin, members), 10)
    assert all(a is not b for a, b in itertools.pairwise(chosen))


def test_smooth_weighted_round_robin_5_1_1() -> None:
    a, b, c = members = endpoints(5, 1, 1)
    chosen = picks(balancer(RoundRobin, members), 70)
    assert Counter(chosen) == {a: 50, b: 10, c: 10}
    # nginx's smooth WRR interleaves: the cycle is a a b a c a a.
    assert chosen[:7] == [a, a, b, a, c, a, a]
    # Exact proportions in every window of one cycle (sum of weights), not just overall.
    for start in range(len(chosen) - 7 + 1):
        assert Counter(chosen[start : start + 7]) == {a: 5, b: 1, c: 1}
    # Light endpoints are spread out: never two of them back to back.
    assert all(x is a or y is a for x, y in itertools.pairwise(chosen))


@pytest.mark.parametrize("weights", [(2, 1), (3, 2, 1), (1, 1, 4), (7, 3), (1, 2, 3, 4)])
def test_smooth_weighted_round_robin_exact_per_cycle(weights: tuple[int, ...]) -> None:
    members = endpoints(*weights)
    total = sum(weights)
    chosen = picks(balancer(RoundRobin, members), total * 6)
    for cycle in range(6):
        counts = Counter(chosen[cycle * total : (cycle + 1) * total])
        assert counts == dict(zip(members, weights, strict=True))


def test_round_robin_update_resets_weighted_state() -> None:
    lb = balancer(RoundRobin, endpoints(5, 1, 1))
    picks(lb, 3)
    a, b = members = endpoints(1, 3)
    lb.update(members)
    assert Counter(picks(lb, 8)) == {a: 2, b: 6}


# -- random --------------------------------------------------------------------------------


def test_random_is_uniform_with_equal_weights() -> None:
    random.seed(1)
    members = endpoints(1, 1, 1, 1)
    counts = Counter(picks(balancer(Random, members), 8000))
    assert set(counts) == set(members)
    for endpoint in members:
        assert counts[endpoint] / 8000 == pytest.approx(0.25, abs=0.03)


def test_random_is_proportional_to_weight() -> None:
    random.seed(2)
    members = endpoints(6, 3, 1)
    counts = Counter(picks(balancer(Random, members), 10000))
    for endpoint, share in zip(members, (0.6, 0.3, 0.1), strict=True):
        assert counts[endpoint] / 10000 == pytest.approx(share, abs=0.03)


# -- least request -------------------------------------------------------------------------


def test_least_request_prefers_fewer_active_requests() -> None:
    random.seed(3)
    busy, idle = members = endpoints(1, 1)
    busy.rq_active = 10
    counts = Counter(picks(balancer(LeastRequest, members), 8000))
    # The busy one wins only when both random picks land on it: 1/4 of the time.
    assert counts[busy] / 8000 == pytest.approx(0.25, abs=0.03)
    assert counts[idle] / 8000 == pytest.approx(0.75, abs=0.03)


def test_least_request_compares_active_requests_per_weight() -> None:
    random.seed(4)
    heavy, light = members = endpoints(3, 1)
    heavy.rq_active = 3  # one per unit of weight
    light.rq_active = 2  # two per unit of weight: worse, though fewer in absolute terms
    counts = Counter(picks(balancer(LeastRequest, members), 8000))
    # light wins only when both picks are light: (1/4)^2.
    assert counts[light] / 8000 == pytest.approx(1 / 16, abs=0.02)


def test_least_request_with_equal_load_follows_weights() -> None:
    random.seed(5)
    members = endpoints(3, 1)
    counts = Counter(picks(balancer(LeastRequest, members), 8000))
    assert counts[members[0]] / 8000 == pytest.approx(0.75, abs=0.03)


def test_least_request_single_endpoint() -> None:
    [only] = members = endpoints(1)
    only.rq_active = 100
    assert picks(balancer(LeastRequest, members), 5) == [only] * 5


# -- common behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("factory", POLICIES)
def test_empty_balancer_chooses_nothing(factory: Callable[[], LoadBalancer]) -> None:
    lb = factory()
    assert lb.choose() is None
    lb.update([])
    assert lb.choose() is None
    lb.update(endpoints(1))
    lb.update([])
    assert lb.choose() is None
    assert lb.choose(exclude=set(endpoints(1))) is None


@pytest.mark.parametrize("factory", POLICIES)
@pytest.mark.parametrize("weights", [(1, 1, 1), (5, 1, 1), (1, 1, 100)])
def test_exclude_avoids_excluded_endpoints(
    factory: Callable[[], LoadBalancer], weights: tuple[int, ...]
) -> None:
    random.seed(6)
    members = endpoints(*weights)
    lb = balancer(factory, members)
    for keep in members:
        excluded = {e for e in members if e is not keep}
        assert all(lb.choose(excluded) is keep for _ in range(50))


@pytest.mark.parametrize("factory", POLICIES)
def test_exclude_everything_still_returns_an_endpoint(
    factory: Callable[[], LoadBalancer],
) -> None:
    members = endpoints(1, 2)
    lb = balancer(factory, members)
    for _ in range(20):
        assert lb.choose(set(members)) in members


@pytest.mark.parametrize("factory", POLICIES)
def test_update_replaces_membership(factory: Callable[[], LoadBalancer]) -> None:
    random.seed(7)
    old = endpoints(1, 1, 1)
    new = [Endpoint(Address("10.0.0.2", 9000 + i)) for i in range(2)]
    lb = balancer(factory, old)
    assert set(picks(lb, 30)) == set(old)
    lb.update(new)
    assert set(picks(lb, 30)) == set(new)


def _endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(Address("127.0.0.1", 7000 + i)) for i in range(count)]


@pytest.mark.parametrize("ring", [Ketama, Maglev])
def test_hash_rings_spread_keys_and_move_few_when_one_leaves(ring: type[Ketama | Maglev]) -> None:
    import zlib

    def owners(count: int) -> list[str]:
        balancer = ring()
        balancer.update(_endpoints(count))
        found = [balancer.choose_hash(zlib.crc32(b"key:%d" % i)) for i in range(6000)]
        return [str(e.address) if e else "" for e in found]

    three, two = owners(3), owners(2)
    counts = Counter(three)
    assert len(counts) == 3 and min(counts.values()) > 1200
    gone = "127.0.0.1:7002"
    moved = sum(1 for a, b in zip(three, two, strict=True) if a != gone and a != b)
    assert moved < 0.05 * 6000  # keys of the endpoints that stay mostly stay put
    assert all(b != gone for b in two)


def test_hash_rings_are_deterministic_across_instances() -> None:
    first, second = Ketama(), Ketama()
    first.update(_endpoints(3))
    second.update(list(reversed(_endpoints(3))))
    for point in range(0, 2**32, 2**24):
        a, b = first.choose_hash(point), second.choose_hash(point)
        assert a is not None and b is not None and a.address == b.address
