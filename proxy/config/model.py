"""The typed configuration: what the YAML becomes once it has been validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.config.units import Address

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class AdminConfig:
    address: Address


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """One entry of a filter chain: the registered name and its parsed, typed config."""

    name: str
    config: Any


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    address: Address
    filters: tuple[FilterConfig, ...]
    reuse_port: bool = False
    backlog: int = 1024
    max_connections: int | None = None
    buffer_limit: int = MIB
    idle_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    address: Address
    weight: int = 1


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


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[ListenerConfig, ...]
    clusters: tuple[ClusterConfig, ...]
    admin: AdminConfig | None
    drain_timeout: float = 15.0
    document: Any = None
    """The expanded YAML document, kept for /config_dump."""
