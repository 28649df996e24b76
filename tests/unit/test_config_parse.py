"""Validating documents into a typed Config, with every problem reported by YAML path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.network.tcp_proxy import TcpProxyConfig
from proxy.config.model import (
    AdminConfig,
    CircuitBreakers,
    ClusterConfig,
    Config,
    EndpointConfig,
    HealthCheckConfig,
)
from proxy.config.parse import parse_config
from proxy.config.reader import ConfigError
from proxy.config.units import Address


def valid_document() -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": "tcp",
                "address": "127.0.0.1:16379",
                "filters": [{"name": "tcp_proxy", "config": {"cluster": "redis"}}],
            }
        ],
        "clusters": [{"name": "redis", "endpoints": ["127.0.0.1:6379"]}],
    }


def problems_of(document: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return [str(problem) for problem in caught.value.problems]


def test_minimal_tcp_proxy_config_and_defaults() -> None:
    document = valid_document()
    config = parse_config(document)

    assert isinstance(config, Config)
    assert config.admin == AdminConfig(Address("127.0.0.1", 15000))
    assert config.drain_timeout == 15.0
    assert config.document is document

    [listener] = config.listeners
    assert listener.name == "tcp"
    assert listener.address == Address("127.0.0.1", 16379)
    assert (listener.reuse_port, listener.backlog, listener.buffer_limit) == (False, 1024, 1 << 20)
    assert listener.max_connections is None
    assert listener.idle_timeout is None
    [proxy_filter] = listener.filter_chains[0].filters
    assert proxy_filter.name == "tcp_proxy"
    assert proxy_filter.config == TcpProxyConfig(
        cluster="redis", idle_timeout=3600.0, max_connect_attempts=1, access_log="stdout"
    )

    assert config.clusters == (
        ClusterConfig(
            name="redis",
            endpoints=(EndpointConfig(Address("127.0.0.1", 6379), weight=1),),
            type="static",
            lb_policy="round_robin",
            connect_timeout=5.0,
            dns_refresh_rate=5.0,
            health_check=None,
            circuit_breakers=CircuitBreakers(max_connections=1024),
        ),
    )


def test_full_config_is_typed() -> None:
    document = {
        "admin": {"address": "0.0.0.0:9901"},
        "drain_timeout": "30s",
        "listeners": [
            {
                "name": "tcp",
                "address": "[::1]:16379",
                "reuse_port": True,
                "backlog": 64,
                "max_connections": 100,
                "buffer_limit": "64KiB",
                "idle_timeout": "5m",
                "filters": [
                    {
                        "name": "tcp_proxy",
                        "config": {
                            "cluster": "redis",
                            "idle_timeout": 0,
                            "max_connect_attempts": 3,
                            "access_log": "off",
                        },
                    }
                ],
            }
        ],
        "clusters": [
            {
                "name": "redis",
                "type": "strict_dns",
                "lb_policy": "least_request",
                "endpoints": [{"address": "redis.internal:6379", "weight": 3}, "10.0.0.2:6379"],
                "connect_timeout": "250ms",
                "dns_refresh_rate": "1m",
                "health_check": {"interval": "2s", "send": "PING\r\n", "expect": "+PONG"},
                "circuit_breakers": {"max_connections": 10},
            }
        ],
    }
    config = parse_config(document)

    assert config.admin == AdminConfig(Address("0.0.0.0", 9901))
    assert config.drain_timeout == 30.0
    [listener] = config.listeners
    assert listener.address == Address("::1", 16379)
    assert listener.reuse_port is True
    assert (listener.backlog, listener.max_connections) == (64, 100)
    assert (listener.buffer_limit, listener.idle_timeout) == (64 * 1024, 300.0)
    assert listener.filter_chains[0].filters[0].config == TcpProxyConfig("redis", None, 3, None)
    [cluster] = config.clusters
    assert (cluster.type, cluster.lb_policy) == ("strict_dns", "least_request")
    assert cluster.endpoints == (
        EndpointConfig(Address("redis.internal", 6379), 3),
        EndpointConfig(Address("10.0.0.2", 6379), 1),
    )
    assert (cluster.connect_timeout, cluster.dns_refresh_rate) == (0.25, 60.0)
    assert cluster.health_check == HealthCheckConfig(
        interval=2.0, timeout=1.0, healthy_threshold=2, unhealthy_threshold=3,
        send=b"PING\r\n", expect=b"+PONG",
    )  # fmt: skip
    assert cluster.circuit_breakers == CircuitBreakers(10)


@pytest.mark.parametrize("document", [None, {}])
def test_empty_document_is_an_empty_config(document: object) -> None:
    config = parse_config(document)
    assert (config.listeners, config.clusters) == ((), ())
    assert config.admin == AdminConfig(Address("127.0.0.1", 15000))


def test_admin_can_be_disabled() -> None:
    document = valid_document() | {"admin": False}
    assert parse_config(document).admin is None


def test_endpoints_as_comma_separated_string() -> None:
    document = valid_document()
    document["clusters"][0]["endpoints"] = "127.0.0.1:6379, 127.0.0.2:6380"
    [cluster] = parse_config(document).clusters
    assert [e.address for e in cluster.endpoints] == [
        Address("127.0.0.1", 6379),
        Address("127.0.0.2", 6380),
    ]


def test_same_address_is_allowed_with_reuse_port() -> None:
    document = valid_document()
    second = copy.deepcopy(document["listeners"][0]) | {"name": "tcp2", "reuse_port": True}
    document["listeners"].append(second)
    assert len(parse_config(document).listeners) == 2


def edit(path: str, value: Any) -> dict[str, Any]:
    """The valid document with one value replaced (path like 'clusters.0.name')."""
    document = valid_document()
    *parents, last = path.split(".")
    target: Any = document
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return document


LISTENER = "listeners[0]"
FILTER = "listeners[0].filters[0]"
CLUSTER = "clusters[0]"


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (
            "listeners.0.filters.0.config.cluster",
            "x",
            f"{FILTER}.config.cluster: unknown cluster 'x' (clusters: redis)",
        ),
        (
            "listeners.0.filters.0.name",
            "tcp_proxi",
            f"{FILTER}.name: unknown filter 'tcp_proxi' (known: http, mqtt_proxy, redis_proxy, "
            "rpc_proxy, runtime_api, runtime_grpc, tcp_proxy)",
        ),
        (
            "listeners.0.filters.0.config",
            {},
            f"{FILTER}.config.cluster: required value is missing",
        ),
        (
            "listeners.0.filters.0.config",
            {"cluster": "redis", "idle_timeut": "1s"},
            f"{FILTER}.config.idle_timeut: unknown key (expected one of: "
            "access_log, cluster, idle_timeout, max_connect_attempts)",
        ),
        (
            "listeners.0.filters.0.config",
            {"cluster": "redis", "max_connect_attempts": 0},
            f"{FILTER}.config.max_connect_attempts: must be at least 1, got 0",
        ),
        ("listeners.0.filters", [], f"{LISTENER}.filters: at least one filter is needed"),
        ("listeners.0.filters", "tcp_proxy", f"{LISTENER}.filters: expected a list, got str"),
        (
            "listeners.0.filters",
            None,
            f"{LISTENER}: a listener needs exactly one of: filters, filter_chains",
        ),
        ("listeners.0.address", None, f"{LISTENER}.address: required value is missing"),
        (
            "listeners.0.address",
            "127.0.0.1",
            f"{LISTENER}.address: expected host:port, got '127.0.0.1'",
        ),
        (
            "listeners.0.address",
            "127.0.0.1:99999",
            f"{LISTENER}.address: port must be 0-65535 in '127.0.0.1:99999'",
        ),
        ("listeners.0.backlog", 0, f"{LISTENER}.backlog: must be at least 1, got 0"),
        ("listeners.0.backlog", True, f"{LISTENER}.backlog: expected an integer, got True"),
        ("listeners.0.idle_timeout", "-1s", f"{LISTENER}.idle_timeout: expected a duration"),
        ("listeners.0.buffer_limit", 10, f"{LISTENER}.buffer_limit: must be at least 1024"),
        ("listeners.0.reuse_port", "yes", f"{LISTENER}.reuse_port: expected true or false"),
        ("listeners.0", "tcp", f"{LISTENER}: expected a mapping, got str"),
        (
            "clusters.0.endpoints",
            ["redis.internal:6379"],
            f"{CLUSTER}.endpoints[0]: 'redis.internal' is not an IP address "
            "(use type: strict_dns to resolve names)",
        ),
        (
            "clusters.0.endpoints",
            [{"address": "redis.internal:6379"}],
            f"{CLUSTER}.endpoints[0].address: 'redis.internal' is not an IP address",
        ),
        (
            "clusters.0.endpoints",
            "127.0.0.1:6379,redis.internal:6379",
            f"{CLUSTER}.endpoints: 'redis.internal' is not an IP address",
        ),
        (
            "clusters.0.endpoints",
            "127.0.0.1:6379,",
            f"{CLUSTER}.endpoints: expected host:port, got ''",
        ),
        ("clusters.0.endpoints", [], f"{CLUSTER}.endpoints: a cluster needs at least one endpoint"),
        ("clusters.0.endpoints", None, f"{CLUSTER}.endpoints: required list is missing"),
        (
            "clusters.0.endpoints",
            [{"address": "127.0.0.1:1", "weight": 0}],
            f"{CLUSTER}.endpoints[0].weight: must be at least 1, got 0",
        ),
        ("clusters.0.endpoints", [6379], f"{CLUSTER}.endpoints[0]: expected a mapping, got int"),
        ("clusters.0.type", "dns", f"{CLUSTER}.type: unknown value 'dns' (expected one of: "),
        ("clusters.0.lb_policy", "fastest", f"{CLUSTER}.lb_policy: unknown value 'fastest'"),
        ("clusters.0.connect_timeout", 0, f"{CLUSTER}.connect_timeout: must be greater than zero"),
        ("clusters.0.connect_timeout", "0ms", f"{CLUSTER}.connect_timeout: must be greater"),
        (
            "clusters.0.connect_timeout",
            -1,
            f"{CLUSTER}.connect_timeout: a duration cannot be negative",
        ),
        ("clusters.0.connect_timeout", float("nan"), f"{CLUSTER}.connect_timeout: a duration"),
        ("clusters.0.dns_refresh_rate", 0, f"{CLUSTER}.dns_refresh_rate: must be greater"),
        (
            "clusters.0.health_check",
            {"interval": 0},
            f"{CLUSTER}.health_check.interval: must be greater than zero",
        ),
        (
            "clusters.0.health_check",
            {"unhealthy_threshold": 0},
            f"{CLUSTER}.health_check.unhealthy_threshold: must be at least 1, got 0",
        ),
        ("clusters.0.health_check", [1], f"{CLUSTER}.health_check: expected a mapping, got list"),
        (
            "clusters.0.circuit_breakers",
            {"max_connections": 0},
            f"{CLUSTER}.circuit_breakers.max_connections: must be at least 1, got 0",
        ),
        ("clusters.0.name", None, f"{CLUSTER}.name: required value is missing"),
        ("drain_timeout", "soon", "drain_timeout: expected a duration such as 5s or 250ms"),
        ("admin", {"address": "nowhere"}, "admin.address: expected host:port, got 'nowhere'"),
        ("admin", True, "admin: expected a mapping, got bool"),
        ("listeners", {"name": "tcp"}, "listeners: expected a list, got dict"),
    ],
)
def test_problem_is_reported_with_its_path(path: str, value: Any, problem: str) -> None:
    problems = problems_of(edit(path, value))
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("adress", "127.0.0.1:1", "adress: unknown key (expected one of: "),
        ("listeners.0.adress", "127.0.0.1:1", f"{LISTENER}.adress: unknown key (expected one of: "),
        ("clusters.0.endpoint", [], f"{CLUSTER}.endpoint: unknown key (expected one of: "),
        ("clusters.0.health_check", {"intervl": "1s"}, f"{CLUSTER}.health_check.intervl: unknown"),
        ("listeners.0.filters.0.typo", 1, f"{FILTER}.typo: unknown key"),
    ],
)
def test_unknown_keys_are_reported(path: str, value: Any, problem: str) -> None:
    [only] = problems_of(edit(path, value))
    assert only.startswith(problem)


def test_unknown_key_lists_the_expected_keys() -> None:
    [problem] = problems_of(edit("listeners.0.adress", "127.0.0.1:1"))
    assert problem == (
        "listeners[0].adress: unknown key (expected one of: address, backlog, buffer_limit, "
        "filter_chains, filters, idle_timeout, listener_filters, listener_filters_timeout, "
        "max_connections, name, reuse_port, tls)"
    )


def test_unknown_cluster_message_is_exact() -> None:
    assert problems_of(edit("listeners.0.filters.0.config.cluster", "x")) == [
        "listeners[0].filters[0].config.cluster: unknown cluster 'x' (clusters: redis)"
    ]


def test_unknown_cluster_when_none_are_defined() -> None:
    document = valid_document() | {"clusters": []}
    assert problems_of(document) == [
        "listeners[0].filters[0].config.cluster: unknown cluster 'redis' (clusters: none defined)"
    ]


def test_duplicate_names_are_reported() -> None:
    document = valid_document()
    document["listeners"].append(
        copy.deepcopy(document["listeners"][0]) | {"address": "127.0.0.1:16380"}
    )
    document["clusters"].append(copy.deepcopy(document["clusters"][0]))
    assert sorted(problems_of(document)) == [
        "clusters[1].name: duplicate name 'redis'",
        "listeners[1].name: duplicate name 'tcp'",
    ]


def test_duplicate_listener_address_is_reported() -> None:
    document = valid_document()
    document["listeners"].append(copy.deepcopy(document["listeners"][0]) | {"name": "tcp2"})
    assert problems_of(document) == [
        "listeners[1].address: 127.0.0.1:16379 is already used by listener 'tcp'"
    ]


def test_terminal_filter_must_be_last() -> None:
    document = valid_document()
    filters = document["listeners"][0]["filters"]
    filters.append(copy.deepcopy(filters[0]))
    assert problems_of(document) == [
        "listeners[0].filters[0].name: tcp_proxy is a terminal filter and must be last in the chain"
    ]


@pytest.mark.parametrize("document", ["listeners: []", [1, 2], 42, True])
def test_non_mapping_document(document: object) -> None:
    assert problems_of(document) == [
        "the config must be a mapping with listeners, clusters and admin"
    ]


def test_every_problem_is_reported_at_once() -> None:
    document = {
        "admin": {"address": "localhost"},
        "drain_timeout": -5,
        "listeners": [
            {
                "name": "tcp",
                "adress": "127.0.0.1:1",
                "filters": [{"name": "tcp_proxy", "config": {"cluster": "x"}}],
            },
            {"name": "empty", "address": "127.0.0.1:2", "filters": []},
        ],
        "clusters": [
            {"name": "redis", "endpoints": "redis.internal:6379", "connect_timeout": 0},
            {"name": "redis", "endpoints": ["127.0.0.1:1"], "lb_policy": "fastest"},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    paths = {problem.path for problem in caught.value.problems}
    assert paths == {
        "admin.address",
        "drain_timeout",
        "listeners[0].adress",
        "listeners[0].address",
        "listeners[0].filters[0].config.cluster",
        "listeners[1].filters",
        "clusters[0].endpoints",
        "clusters[0].connect_timeout",
        "clusters[1].lb_policy",
        "clusters[1].name",
    }
    assert len(caught.value.problems) == len(paths)
    assert str(caught.value).count("\n") == len(paths) - 1


def test_parse_config_does_not_modify_the_document() -> None:
    document = valid_document()
    before = copy.deepcopy(document)
    parse_config(document)
    assert document == before


# -- robustness: any JSON-like document is either a Config or a ConfigError ---------------

KEYS = (
    "admin", "listeners", "clusters", "drain_timeout", "name", "address", "filters",
    "reuse_port", "backlog", "max_connections", "buffer_limit", "idle_timeout", "config",
    "cluster", "max_connect_attempts", "access_log", "type", "lb_policy", "endpoints",
    "connect_timeout", "dns_refresh_rate", "health_check", "circuit_breakers", "interval",
    "timeout", "healthy_threshold", "unhealthy_threshold", "send", "expect", "weight",
)  # fmt: skip
VALUES = (
    "tcp_proxy", "redis", "static", "strict_dns", "round_robin", "least_request", "off",
    "127.0.0.1:6379", "[::1]:80", "redis.internal:6379", "a,b", "5s", "0ms", "64KiB", "",
)  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(VALUES)
)
keys = st.sampled_from(KEYS) | st.text(max_size=10)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(json_like)
def test_parse_config_returns_config_or_raises_config_error(document: object) -> None:
    try:
        result = parse_config(document)
    except ConfigError as error:
        assert error.problems
    else:
        assert isinstance(result, Config)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), json_like, max_size=4), st.integers(0, 2))
def test_mutated_valid_document_returns_config_or_raises_config_error(
    patch: dict[str, Any], where: int
) -> None:
    document = valid_document()
    target = [
        document["listeners"][0],
        document["listeners"][0]["filters"][0]["config"],
        document["clusters"][0],
    ][where]
    target.update(patch)
    try:
        result = parse_config(document)
    except ConfigError as error:
        assert error.problems
    else:
        assert isinstance(result, Config)


@pytest.mark.parametrize("value", [False, "off"])
def test_access_log_off_in_plain_yaml_or_quoted(value: object) -> None:
    config = parse_config(edit("listeners.0.filters.0.config.access_log", value))
    assert config.listeners[0].filter_chains[0].filters[0].config.access_log is None


def test_unnamed_entries_are_not_also_duplicates() -> None:
    document = valid_document()
    document["clusters"] = [{"endpoints": ["127.0.0.1:1"]}, {"endpoints": ["127.0.0.1:2"]}]
    assert not [p for p in problems_of(document) if "duplicate" in p]
