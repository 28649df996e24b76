"""Validate an expanded YAML document into a `Config`, reporting every problem with its path."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from proxy.config.context import ParseContext
from proxy.config.listeners import parse_listener
from proxy.config.loader import load_document, read_source
from proxy.config.model import (
    AdminConfig,
    CircuitBreakers,
    ClusterConfig,
    Config,
    EndpointConfig,
    HealthCheckConfig,
    HealthConfig,
    HttpPoolSettings,
    ListenerConfig,
    OriginalDstSettings,
    OutlierDetection,
    RedisClusterSettings,
)
from proxy.config.overload import parse_overload
from proxy.config.reader import Node, Problem
from proxy.config.tls import parse_upstream_tls
from proxy.config.units import Address, parse_address
from proxy.upstream.lb import LOAD_BALANCERS
from runtime.config import parse_runtime

CLUSTER_TYPES = ("static", "strict_dns", "redis_cluster", "original_dst")
DNS_FAMILIES = ("auto", "v4_only", "v6_only")
DEFAULT_ADMIN = Address("127.0.0.1", 15000)
DEFAULT_HEALTH = Address("0.0.0.0", 15021)
"""Probes come from the kubelet on the pod's address, as for Istio's 15021."""


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate a config file; raises ConfigError listing every problem."""
    source = read_source(path)
    config = parse_config(load_document(path, environ, source), Path(path).resolve().parent)
    return dataclasses.replace(config, source_digest=hashlib.sha256(source).hexdigest())


def parse_config(document: Any, base_dir: Path | None = None) -> Config:
    """`base_dir` resolves relative paths in the file (e.g. runtime.components_path)."""
    root = Node({} if document is None else document)
    if not isinstance(root.value, dict):
        root.problem("the config must be a mapping with listeners, clusters and admin")
        root.raise_if_problems()
    root.only("admin", "health", "listeners", "clusters", "drain_timeout", "overload", "runtime")
    clusters = tuple(_cluster(node, base_dir) for node in root.items("clusters"))
    _unique(root, "clusters", [c.name for c in clusters])
    warnings: list[Problem] = []
    runtime = (
        parse_runtime(root.section("runtime"), base_dir, warnings) if root.has("runtime") else None
    )
    context = ParseContext(frozenset(c.name for c in clusters), {c.name: c for c in clusters},
                           runtime, base_dir)  # fmt: skip
    listeners = tuple(parse_listener(node, context) for node in root.items("listeners"))
    _unique(root, "listeners", [listener.name for listener in listeners])
    admin, health = _admin(root), _health(root)
    _unique_addresses(root, listeners, admin, health)
    config = Config(
        listeners=listeners,
        clusters=clusters,
        admin=admin,
        health=health,
        drain_timeout=root.duration("drain_timeout", 15.0),
        overload=parse_overload(root),
        document=root.value,
        runtime=runtime,
        file_digests=dict(_file_digests(root.value, base_dir)),
        warnings=tuple(warnings),
    )
    root.raise_if_problems()
    return config


def _file_digests(value: Any, base_dir: Path | None) -> Iterator[tuple[str, str]]:
    """Files named under `*_file` keys (certificates, keys, CAs) and their content's digest,
    so that a reload sees a file rewritten in place."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.endswith("_file") and isinstance(item, str):
                path = Path(item)
                if not path.is_absolute() and base_dir is not None:
                    path = base_dir / path
                with contextlib.suppress(OSError):  # a missing file is a problem reported already
                    yield item, hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                yield from _file_digests(item, base_dir)
    elif isinstance(value, list):
        for item in value:
            yield from _file_digests(item, base_dir)


def _unique(root: Node, section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name and name in seen:
            root.problem(f"duplicate name {name!r}", f"{section}[{index}].name")
        seen.add(name)


def _unique_addresses(root: Node, listeners: tuple[ListenerConfig, ...],
                      admin: AdminConfig | None, health: HealthConfig | None) -> None:  # fmt: skip
    seen: dict[Address, str] = {}
    for what, config in (("the admin", admin), ("the health listener", health)):
        if config is not None and config.address.port:
            if config.address in seen:
                root.problem(f"{config.address} is already used by {seen[config.address]}",
                             "health.address")  # fmt: skip
            seen[config.address] = what
    for index, listener in enumerate(listeners):
        address = listener.address
        if address.port and address in seen and not listener.reuse_port:
            root.problem(
                f"{address} is already used by {seen[address]}", f"listeners[{index}].address"
            )
        seen.setdefault(address, f"listener {listener.name!r}")


def _admin(root: Node) -> AdminConfig | None:
    if root.child("admin").value is False:  # `admin: false` turns the admin server off
        return None
    node = root.section("admin")
    node.only("address", "allow_mutations_from")
    return AdminConfig(
        address=node.address("address", DEFAULT_ADMIN),
        allow_mutations_from=tuple(_networks(node, "allow_mutations_from")),
    )


def _networks(node: Node, key: str) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A list of addresses or CIDRs (`10.0.0.0/8`, `fd00::1`)."""
    for item in node.items(key):
        try:
            yield ipaddress.ip_network(str(item.value), strict=False)
        except ValueError:
            item.problem(f"expected an address or a CIDR, got {item.value!r}")


def _health(root: Node) -> HealthConfig | None:
    if not root.has("health"):
        return None
    node = root.section("health")
    node.only("address")
    return HealthConfig(address=node.address("address", DEFAULT_HEALTH))


def _cluster(node: Node, base_dir: Path | None = None) -> ClusterConfig:
    if not node.expect_mapping():
        return ClusterConfig("", ())
    node.only(
        "name", "type", "lb_policy", "endpoints", "connect_timeout",
        "dns_refresh_rate", "dns_lookup_family", "health_check", "circuit_breakers",
        "protocol", "outlier_detection", "http_pool", "redis_cluster", "original_dst", "tls",
    )  # fmt: skip
    kind = node.choice("type", CLUSTER_TYPES, "static")
    protocol = node.choice("protocol", ("http1", "http2"), "http1")
    alpn = ("h2",) if protocol == "http2" else ()
    return ClusterConfig(
        name=node.text("name"),
        type=kind,
        lb_policy=node.choice("lb_policy", LOAD_BALANCERS, "round_robin"),
        endpoints=_endpoints(node, kind),
        connect_timeout=node.duration("connect_timeout", 5.0, positive=True),
        dns_refresh_rate=node.duration("dns_refresh_rate", 5.0, positive=True),
        dns_lookup_family=node.choice("dns_lookup_family", DNS_FAMILIES, "auto"),
        health_check=_health_check(node),
        circuit_breakers=_circuit_breakers(node),
        protocol=protocol,
        outlier_detection=_outlier_detection(node),
        http_pool=_http_pool(node),
        redis_cluster=_redis_cluster(node, kind),
        original_dst=_original_dst(node, kind),
        tls=parse_upstream_tls(node.child("tls"), base_dir, alpn),
    )


def _endpoints(cluster: Node, kind: str) -> tuple[EndpointConfig, ...]:
    if kind == "original_dst":
        return ()  # made per connection; _original_dst reports a listed one
    listed = cluster.child("endpoints")
    if isinstance(listed.value, str):  # "host:port,host:port", handy with ${VAR}
        nodes = [
            Node(part.strip(), listed.path, listed.problems) for part in listed.value.split(",")
        ]
    else:
        nodes = cluster.items("endpoints", required=True)
    if cluster.has("endpoints") and not nodes:
        cluster.problem("a cluster needs at least one endpoint", "endpoints")
    result = []
    for node in nodes:
        endpoint = _endpoint(node)
        if endpoint is None:
            continue
        if kind != "strict_dns" and not endpoint.address.is_ip:
            node.problem(
                f"{endpoint.address.host!r} is not an IP address "
                "(use type: strict_dns to resolve names)",
                "address" if isinstance(node.value, dict) else None,
            )
        result.append(endpoint)
    return tuple(result)


def _endpoint(node: Node) -> EndpointConfig | None:
    """`- 127.0.0.1:6379` or `- {address: 127.0.0.1:6379, weight: 2, name: server1}`."""
    if isinstance(node.value, str):
        try:
            return EndpointConfig(parse_address(node.value))
        except ValueError as exc:
            node.problem(str(exc))
            return None
    if not node.expect_mapping():
        return None
    node.only("address", "weight", "name")
    return EndpointConfig(
        address=node.address("address"),
        weight=node.integer("weight", 1, minimum=1, maximum=1_000_000),
        name=node.text("name") if node.has("name") else None,
    )


def _health_check(cluster: Node) -> HealthCheckConfig | None:
    if not cluster.has("health_check"):
        return None
    node = cluster.section("health_check")
    node.only("interval", "timeout", "healthy_threshold", "unhealthy_threshold", "send", "expect")
    return HealthCheckConfig(
        interval=node.duration("interval", 5.0, positive=True),
        timeout=node.duration("timeout", 1.0, positive=True),
        healthy_threshold=node.integer("healthy_threshold", 2, minimum=1),
        unhealthy_threshold=node.integer("unhealthy_threshold", 3, minimum=1),
        send=node.text("send", "").encode(),
        expect=node.text("expect", "").encode(),
    )


def _circuit_breakers(cluster: Node) -> CircuitBreakers:
    node = cluster.section("circuit_breakers")
    node.only("max_connections", "max_pending_requests", "max_requests", "max_retries",
              "retry_budget")  # fmt: skip
    budget = node.section("retry_budget")
    budget.only("budget_percent", "min_retry_concurrency")
    return CircuitBreakers(
        max_connections=node.integer("max_connections", 1024, minimum=1),
        max_pending_requests=node.integer("max_pending_requests", 1024, minimum=0),
        max_requests=node.integer("max_requests", 1024, minimum=1),
        max_retries=node.integer("max_retries", 3, minimum=0),
        retry_budget_percent=(
            budget.number("budget_percent", 20.0, minimum=0.0, maximum=100.0)
            if node.has("retry_budget")
            else None
        ),
        min_retry_concurrency=budget.integer("min_retry_concurrency", 3, minimum=0),
    )


def _outlier_detection(cluster: Node) -> OutlierDetection | None:
    if not cluster.has("outlier_detection"):
        return None
    node = cluster.section("outlier_detection")
    node.only("consecutive_5xx", "consecutive_gateway_failure", "consecutive_connect_failure",
              "base_ejection_time", "max_ejection_time", "max_ejection_percent")  # fmt: skip
    return OutlierDetection(
        consecutive_5xx=node.integer("consecutive_5xx", 5, minimum=0),
        consecutive_gateway_failure=node.integer("consecutive_gateway_failure", 5, minimum=0),
        consecutive_connect_failure=node.integer("consecutive_connect_failure", 5, minimum=0),
        base_ejection_time=node.duration("base_ejection_time", 30.0, positive=True),
        max_ejection_time=node.duration("max_ejection_time", 300.0, positive=True),
        max_ejection_percent=node.integer("max_ejection_percent", 10, minimum=0, maximum=100),
    )


def _redis_cluster(cluster: Node, kind: str) -> RedisClusterSettings | None:
    if kind != "redis_cluster":
        if cluster.has("redis_cluster"):
            cluster.problem("only for type: redis_cluster", "redis_cluster")
        return None
    node = cluster.section("redis_cluster")
    node.only("refresh_interval", "username", "password")
    return RedisClusterSettings(
        refresh_interval=node.duration("refresh_interval", 5.0, positive=True),
        username=node.text("username") if node.has("username") else None,
        password=node.text("password") if node.has("password") else None,
    )


def _original_dst(cluster: Node, kind: str) -> OriginalDstSettings | None:
    if kind != "original_dst":
        if cluster.has("original_dst"):
            cluster.problem("only for type: original_dst", "original_dst")
        return None
    for key in ("endpoints", "health_check", "outlier_detection", "lb_policy"):
        if cluster.has(key):
            cluster.problem("not with type: original_dst (the endpoint is each connection's "
                            "original destination)", key)  # fmt: skip
    node = cluster.section("original_dst")
    node.only("cleanup_interval")
    return OriginalDstSettings(cleanup_interval=node.duration("cleanup_interval", 5.0,
                                                              positive=True))  # fmt: skip


def _http_pool(cluster: Node) -> HttpPoolSettings:
    node = cluster.section("http_pool")
    node.only("idle_timeout", "max_requests_per_connection")
    return HttpPoolSettings(
        idle_timeout=node.duration("idle_timeout", 55.0, positive=True),
        max_requests_per_connection=node.integer("max_requests_per_connection", 0, minimum=0),
    )
