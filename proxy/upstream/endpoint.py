"""One upstream host of a cluster, with the counters load balancers and /clusters read."""

from __future__ import annotations

import enum

from proxy.config.units import Address


class Health(enum.Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    PENDING = "pending"
    """Active health checking is on and the first check has not answered yet."""


class Endpoint:
    __slots__ = (
        "address",
        "consecutive_5xx",
        "consecutive_connect_failure",
        "consecutive_gateway_failure",
        "cx_active",
        "cx_connect_fail",
        "cx_total",
        "ejected",
        "ejections",
        "hc_failures",
        "hc_successes",
        "health",
        "hostname",
        "name",
        "rq_active",
        "weight",
    )

    def __init__(
        self,
        address: Address,
        weight: int = 1,
        hostname: str | None = None,
        health: Health = Health.HEALTHY,
    ) -> None:
        self.address = address
        self.name = str(address)
        """`host:port`, as access logs and stats show it (made once, read per request)."""
        self.weight = weight
        self.hostname = hostname
        self.health = health
        self.cx_active = 0
        self.cx_total = 0
        self.cx_connect_fail = 0
        self.rq_active = 0
        self.hc_successes = 0
        """Consecutive passed checks (reset by a failure)."""
        self.hc_failures = 0
        """Consecutive failed checks (reset by a success)."""
        self.ejected = False
        """Taken out of load balancing by outlier detection, for a while."""
        self.ejections = 0
        self.consecutive_5xx = 0
        self.consecutive_gateway_failure = 0
        self.consecutive_connect_failure = 0

    @property
    def healthy(self) -> bool:
        return self.health is Health.HEALTHY

    @property
    def available(self) -> bool:
        """Healthy and not ejected: eligible for load balancing."""
        return self.health is Health.HEALTHY and not self.ejected

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, weight={self.weight}, {self.health.value})"
