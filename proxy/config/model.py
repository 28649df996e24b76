"""The typed configuration: what the YAML becomes once it has been validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any

from proxy.config.overload import OverloadConfig
from proxy.config.reader import Problem
from proxy.config.tls import DownstreamTls, UpstreamTls
from proxy.config.units import Address

if TYPE_CHECKING:
    from runtime.config import RuntimeConfig

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class AdminConfig:
    address: Address
    allow_mutations_from: tuple[IPv4Network | IPv6Network, ...] = ()
    """Peers besides loopback that may use the views that change something (POST /reload)."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """A read-only listener for probes (`/healthz/ready`, `/healthz/live`), apart from the
    admin, so the admin can stay on loopback (Istio's 15021)."""

    address: Address


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """One entry of a filter chain: the registered name and its parsed, typed config."""

    name: str
    config: Any


@dataclass(frozen=True, slots=True)
class FilterChainMatch:
    """Every condition that is set must hold; an empty match is the default chain."""

    protocols: frozenset[str] | None = None
    server_names: tuple[str, ...] | None = None
    """Exact names or `*.suffix` wildcards, matched against the TLS SNI."""
    alpn: frozenset[str] | None = None
    destination_ports: frozenset[int] | None = None

    @property
    def is_default(self) -> bool:
        return not (self.protocols or self.server_names or self.alpn or self.destination_ports)


@dataclass(frozen=True, slots=True)
class FilterChainConfig:
    name: str
    match: FilterChainMatch
    filters: tuple[FilterConfig, ...]
    tls: DownstreamTls | None = None
    """Terminate TLS before the filters (the chain's `tls:`, or the listener's)."""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    address: Address
    filter_chains: tuple[FilterChainConfig, ...]
    listener_filters: tuple[FilterConfig, ...] = ()
    listener_filters_timeout: float = 15.0
    reuse_port: bool = False
    backlog: int = 1024
    max_connections: int | None = None
    buffer_limit: int = MIB
    idle_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    address: Address
    weight: int = 1
    name: str | None = None
    """What key distributions that hash server names (twemproxy's ketama) use, if set."""


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """Active TCP check: connect, optionally send bytes and expect a reply prefix."""

    interval: float = 5.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    send: bytes = b""
    expect: bytes = b""


@dataclass(frozen=True, slots=True)
class CircuitBreakers:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    retry_budget_percent: float | None = None
    """If set, active retries may also reach this share of active requests (Envoy's budget)."""
    min_retry_concurrency: int = 3


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Passive health: eject an endpoint after consecutive errors, for a growing while."""

    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    consecutive_connect_failure: int = 5
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10


@dataclass(frozen=True, slots=True)
class HttpPoolSettings:
    idle_timeout: float = 55.0
    """Close pooled connections idle this long (below common upstream keep-alive timeouts)."""
    max_requests_per_connection: int = 0
    """0: unlimited."""


@dataclass(frozen=True, slots=True)
class RedisClusterSettings:
    """Slot discovery for `type: redis_cluster` (the endpoints are seeds)."""

    refresh_interval: float = 5.0
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class OriginalDstSettings:
    """`type: original_dst`: endpoints are made per connection from its original destination."""

    cleanup_interval: float = 5.0
    """Endpoints unused for this long (and idle) are removed, with their pooled connections."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    endpoints: tuple[EndpointConfig, ...]
    type: str = "static"
    lb_policy: str = "round_robin"
    connect_timeout: float = 5.0
    dns_refresh_rate: float = 5.0
    dns_lookup_family: str = "auto"
    health_check: HealthCheckConfig | None = None
    circuit_breakers: CircuitBreakers = field(default_factory=CircuitBreakers)
    protocol: str = "http1"
    """What HTTP the endpoints speak: http1 or http2 (prior knowledge, e.g. gRPC)."""
    outlier_detection: OutlierDetection | None = None
    http_pool: HttpPoolSettings = field(default_factory=HttpPoolSettings)
    redis_cluster: RedisClusterSettings | None = None
    original_dst: OriginalDstSettings | None = None
    tls: UpstreamTls | None = None


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[ListenerConfig, ...]
    clusters: tuple[ClusterConfig, ...]
    admin: AdminConfig | None
    health: HealthConfig | None = None
    drain_timeout: float = 15.0
    overload: OverloadConfig | None = field(default_factory=OverloadConfig)
    """Watermarks on memory and descriptors and the load shed past each; None: off."""
    runtime: RuntimeConfig | None = None
    """The application runtime (components, app channel); None: mesh only."""
    document: Any = None
    """The expanded YAML document, kept for /config_dump."""
    file_digests: Mapping[str, str] = field(default_factory=dict)
    source_digest: str | None = None
    """SHA-256 of the config file's bytes as loaded (None: not read from a file)."""
    """SHA-256 of each file the YAML names under a `*_file` key, as read at parse time."""
    warnings: tuple[Problem, ...] = ()
    """What was read past (unknown kinds and keys in Dapr files): `validate --strict` refuses
    them, `run` logs them."""
