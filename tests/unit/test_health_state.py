"""The health-check state machine (HealthChecker._record), without any real checks."""

from __future__ import annotations

import logging

import pytest

from proxy.config.model import ClusterConfig, EndpointConfig, HealthCheckConfig
from proxy.config.units import Address
from proxy.upstream.cluster import Cluster
from proxy.upstream.endpoint import Endpoint, Health
from proxy.upstream.health import HealthChecker

H, U, P = Health.HEALTHY, Health.UNHEALTHY, Health.PENDING
OK, FAIL = None, "connection refused"


def make_cluster(healthy_threshold: int = 2, unhealthy_threshold: int = 3) -> Cluster:
    config = ClusterConfig(
        name="redis",
        endpoints=(
            EndpointConfig(Address("10.0.0.1", 6379)),
            EndpointConfig(Address("10.0.0.2", 6379)),
        ),
        health_check=HealthCheckConfig(
            healthy_threshold=healthy_threshold, unhealthy_threshold=unhealthy_threshold
        ),
    )
    return Cluster(config)


def checker_of(cluster: Cluster) -> HealthChecker:
    assert cluster.health_checker is not None
    return cluster.health_checker


def test_endpoints_start_pending_and_unchosen() -> None:
    cluster = make_cluster()
    assert [e.health for e in cluster.endpoints] == [P, P]
    assert cluster.healthy_count == 0
    assert cluster.lb.choose() is None


@pytest.mark.parametrize(
    ("results", "states"),
    [
        # The first answer decides at once.
        ([OK], [H]),
        ([FAIL], [U]),
        # Healthy survives fewer than unhealthy_threshold (3) failures in a row.
        ([OK, FAIL, FAIL], [H, H, H]),
        ([OK, FAIL, FAIL, FAIL], [H, H, H, U]),
        # A success resets the failure streak.
        ([OK, FAIL, FAIL, OK, FAIL, FAIL], [H, H, H, H, H, H]),
        ([OK, FAIL, FAIL, OK, FAIL, FAIL, FAIL], [H, H, H, H, H, H, U]),
        # Unhealthy needs healthy_threshold (2) successes in a row.
        ([FAIL, OK], [U, U]),
        ([FAIL, OK, OK], [U, U, H]),
        ([FAIL, OK, FAIL, OK], [U, U, U, U]),
        ([FAIL, OK, FAIL, OK, OK], [U, U, U, U, H]),
        # Further failures or successes keep the state.
        ([FAIL, FAIL, FAIL, FAIL], [U, U, U, U]),
        ([OK, OK, OK], [H, H, H]),
        # A round trip: down after 3 failures, back after 2 successes.
        ([OK, FAIL, FAIL, FAIL, OK, OK, FAIL], [H, H, H, U, U, H, H]),
    ],
)
def test_state_machine(results: list[str | None], states: list[Health]) -> None:
    cluster = make_cluster(healthy_threshold=2, unhealthy_threshold=3)
    checker = checker_of(cluster)
    endpoint, other = cluster.endpoints
    seen = []
    for failure in results:
        checker._record(endpoint, failure)
        seen.append(endpoint.health)
    assert seen == states
    assert other.health is P


@pytest.mark.parametrize(("healthy", "unhealthy"), [(1, 1), (1, 5), (4, 2)])
def test_thresholds_are_configurable(healthy: int, unhealthy: int) -> None:
    cluster = make_cluster(healthy_threshold=healthy, unhealthy_threshold=unhealthy)
    checker = checker_of(cluster)
    endpoint = cluster.endpoints[0]
    checker._record(endpoint, OK)
    for _ in range(unhealthy - 1):
        checker._record(endpoint, FAIL)
        assert endpoint.health is H
    checker._record(endpoint, FAIL)
    assert endpoint.health is U
    for _ in range(healthy - 1):
        checker._record(endpoint, OK)
        assert endpoint.health is U
    checker._record(endpoint, OK)
    assert endpoint.health is H


def test_streak_counters() -> None:
    cluster = make_cluster()
    checker = checker_of(cluster)
    endpoint = cluster.endpoints[0]
    for failure in [OK, OK, FAIL, FAIL]:
        checker._record(endpoint, failure)
    assert (endpoint.hc_successes, endpoint.hc_failures) == (0, 2)
    checker._record(endpoint, OK)
    assert (endpoint.hc_successes, endpoint.hc_failures) == (1, 0)


def test_cluster_stats_count_every_check() -> None:
    cluster = make_cluster()
    checker = checker_of(cluster)
    first, second = cluster.endpoints
    for endpoint, failure in [(first, OK), (first, FAIL), (second, FAIL), (first, OK)]:
        checker._record(endpoint, failure)
    assert (cluster.stats.hc_success, cluster.stats.hc_failure) == (2, 2)


def chosen(cluster: Cluster, count: int = 20) -> set[Endpoint | None]:
    return {cluster.lb.choose() for _ in range(count)}


def test_load_balancer_follows_health_changes() -> None:
    cluster = make_cluster(healthy_threshold=2, unhealthy_threshold=1)
    checker = checker_of(cluster)
    first, second = cluster.endpoints

    checker._record(first, OK)
    assert chosen(cluster) == {first}  # second is still pending
    checker._record(second, OK)
    assert chosen(cluster) == {first, second}
    assert cluster.healthy_count == 2

    checker._record(first, FAIL)
    assert first.health is U
    assert chosen(cluster) == {second}
    assert cluster.healthy_count == 1

    checker._record(second, FAIL)
    assert chosen(cluster) == {None}

    checker._record(first, OK)
    assert chosen(cluster) == {None}  # one success of the two needed
    checker._record(first, OK)
    assert chosen(cluster) == {first}


async def test_settled_once_every_endpoint_has_answered() -> None:
    cluster = make_cluster()
    checker = checker_of(cluster)
    first, second = cluster.endpoints
    checker._record(first, OK)
    assert not checker._settled.is_set()
    checker._record(second, FAIL)
    assert checker._settled.is_set()


def test_transitions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    cluster = make_cluster(unhealthy_threshold=2)
    checker = checker_of(cluster)
    endpoint = cluster.endpoints[0]
    with caplog.at_level(logging.INFO, logger="mecha.health"):
        checker._record(endpoint, OK)
        checker._record(endpoint, FAIL)  # no transition yet
        checker._record(endpoint, FAIL)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "cluster 'redis' endpoint 10.0.0.1:6379 is healthy"),
        (
            logging.WARNING,
            "cluster 'redis' endpoint 10.0.0.1:6379 is unhealthy (connection refused)",
        ),
    ]
