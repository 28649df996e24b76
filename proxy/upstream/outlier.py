"""Outlier detection: eject an endpoint after consecutive errors seen in real traffic.

Ejection lasts base_ejection_time times the number of ejections so far (capped), and
never takes more than max_ejection_percent of a cluster out — but always allows one,
so a two-endpoint cluster can still shed its broken half.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from proxy.config.model import OutlierDetection
from proxy.upstream.endpoint import Endpoint

if TYPE_CHECKING:
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.outlier")

GATEWAY_ERRORS = frozenset({502, 503, 504})


class OutlierDetector:
    def __init__(self, cluster: Cluster, config: OutlierDetection) -> None:
        self.cluster = cluster
        self.config = config
        self.ejections_total = 0
        self._timers: dict[Endpoint, asyncio.TimerHandle] = {}

    def record_status(self, endpoint: Endpoint, status: int) -> None:
        """A response arrived from endpoint (status) — or the proxy made a 5xx on its behalf."""
        if status >= 500:
            endpoint.consecutive_5xx += 1
            if status in GATEWAY_ERRORS:
                endpoint.consecutive_gateway_failure += 1
            else:
                endpoint.consecutive_gateway_failure = 0
        else:
            endpoint.consecutive_5xx = 0
            endpoint.consecutive_gateway_failure = 0
        endpoint.consecutive_connect_failure = 0
        self._check(endpoint)

    def record_failure(self, endpoint: Endpoint, connect: bool) -> None:
        """No response at all: a connect failure, a reset or a timeout (a gateway failure)."""
        endpoint.consecutive_5xx += 1
        endpoint.consecutive_gateway_failure += 1
        if connect:
            endpoint.consecutive_connect_failure += 1
        self._check(endpoint)

    def _check(self, endpoint: Endpoint) -> None:
        if endpoint.ejected:
            return
        config = self.config
        reasons = (
            ("consecutive 5xx", endpoint.consecutive_5xx, config.consecutive_5xx),
            ("consecutive gateway failures", endpoint.consecutive_gateway_failure,
             config.consecutive_gateway_failure),
            ("consecutive connect failures", endpoint.consecutive_connect_failure,
             config.consecutive_connect_failure),
        )  # fmt: skip
        for reason, count, threshold in reasons:
            if threshold and count >= threshold:
                self._eject(endpoint, reason)
                return

    def _eject(self, endpoint: Endpoint, reason: str) -> None:
        members = len(self.cluster.endpoints)
        ejected = sum(1 for e in self.cluster.endpoints if e.ejected)
        allowed = max(1, members * self.config.max_ejection_percent // 100)
        if ejected >= allowed:
            return
        endpoint.ejections += 1
        self.ejections_total += 1
        endpoint.ejected = True
        seconds = min(
            self.config.base_ejection_time * endpoint.ejections, self.config.max_ejection_time
        )
        log.warning("cluster %r: ejecting %s for %.1fs (%s)",
                    self.cluster.name, endpoint.address, seconds, reason)  # fmt: skip
        loop = asyncio.get_running_loop()
        self._timers[endpoint] = loop.call_later(seconds, self._uneject, endpoint)
        self.cluster.refresh_load_balancer()

    def _uneject(self, endpoint: Endpoint) -> None:
        self._timers.pop(endpoint, None)
        endpoint.ejected = False
        endpoint.consecutive_5xx = 0
        endpoint.consecutive_gateway_failure = 0
        endpoint.consecutive_connect_failure = 0
        log.info("cluster %r: %s back in load balancing", self.cluster.name, endpoint.address)
        self.cluster.refresh_load_balancer()

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
