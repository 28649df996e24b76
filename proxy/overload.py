"""The overload manager: sheds load in stages as memory or descriptors run short.

Every `check_interval` it reads the process's resident memory and open descriptors and turns
each into a pressure, a fraction of its limit (`max_rss`; `max_descriptors` or the soft
RLIMIT_NOFILE). Each action starts when the highest pressure reaches its watermark and stops
once it is HYSTERESIS below (so a pressure hovering at a watermark does not flap):

- close_idle_connections: every listener closes its idle connections, at each check while
  active (kept-alive HTTP between requests, Redis and RPC clients with nothing due);
- stop_accepting: listeners leave new connections in the kernel's backlog;
- refuse_requests: HTTP answers new requests 503 (HTTP/1.1, then closes) or resets new
  streams with REFUSED_STREAM (HTTP/2), which clients may retry elsewhere.

Each start and stop is logged, and the pressures and active actions are metrics. Filters
see only `OverloadState` (a service, like the timer wheel): one flag per request to read.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.config.overload import ACTIONS, OverloadConfig

if TYPE_CHECKING:
    from proxy.listener import Listener

log = logging.getLogger("mecha.overload")

HYSTERESIS = 0.02
"""An action stops when the pressure is this far below its watermark."""
PAUSE_REASON = "overload"
EXHAUSTED = (errno.EMFILE, errno.ENFILE)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class OverloadState:
    """What the data path reads: set by the manager, per process."""

    __slots__ = ("refuse_requests",)

    def __init__(self) -> None:
        self.refuse_requests = False


def resident_memory() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # (the one listdir itself had open)


def descriptor_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Readings:
    """Where the manager reads the resources (a test gives its own)."""

    def memory(self) -> int:
        return resident_memory()

    def descriptors(self) -> int:
        return open_descriptors()

    def descriptor_limit(self) -> int:
        return descriptor_limit()


class OverloadManager:
    def __init__(
        self,
        config: OverloadConfig,
        listeners: Callable[[], Iterable[Listener]],
        readings: Readings | None = None,
    ) -> None:
        self.config = config
        self.state = OverloadState()
        self._listeners = listeners
        self._readings = readings or Readings()
        self._watermarks = dict(config.watermarks)
        self.active: dict[str, bool] = dict.fromkeys(ACTIONS, False)
        self.activations: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        self.pressure: dict[str, float] = {"descriptors": 0.0}
        if config.max_rss is not None:
            self.pressure["memory"] = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.check()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> None:
        """Read, then start or stop actions; runs every check_interval."""
        try:
            self._read()
            self._act()
        except Exception:  # never let a reading error stop the checks
            log.exception("overload: check failed")
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.config.check_interval, self.check)

    def _read(self) -> None:
        """Both readings open a file in /proc. With no descriptor free, descriptors are at
        their limit by definition, and memory keeps its last reading."""
        readings = self._readings
        limit = self.config.max_descriptors or readings.descriptor_limit()
        try:
            used = readings.descriptors()
        except OSError as error:
            if error.errno not in EXHAUSTED:
                raise
            used = limit
        self.pressure["descriptors"] = used / limit
        if self.config.max_rss is not None:
            try:
                self.pressure["memory"] = readings.memory() / self.config.max_rss
            except OSError as error:
                if error.errno not in EXHAUSTED:
                    raise

    def _act(self) -> None:
        resource_name, pressure = max(self.pressure.items(), key=lambda item: item[1])
        for action, watermark in self._watermarks.items():
            active = self.active[action]
            if not active and pressure >= watermark:
                self._enter(action, resource_name, pressure)
            elif active and pressure < watermark - HYSTERESIS:
                self._leave(action, resource_name, pressure)
        if self.active["close_idle_connections"]:
            self._close_idle()
        if self.active["stop_accepting"]:
            for listener in self._listeners():  # (listeners a reload added, too)
                listener.pause_accepting(PAUSE_REASON)

    def _enter(self, action: str, resource_name: str, pressure: float) -> None:
        self.active[action] = True
        self.activations[action] += 1
        log.warning("overload: %s at %.0f%%: %s starts", resource_name, pressure * 100, action)
        if action == "refuse_requests":
            self.state.refuse_requests = True

    def _leave(self, action: str, resource_name: str, pressure: float) -> None:
        self.active[action] = False
        log.info("overload: %s at %.0f%%: %s stops", resource_name, pressure * 100, action)
        if action == "refuse_requests":
            self.state.refuse_requests = False
        elif action == "stop_accepting":
            for listener in self._listeners():
                listener.resume_accepting(PAUSE_REASON)

    def _close_idle(self) -> None:
        closed = sum(listener.close_idle() for listener in self._listeners())
        if closed:
            log.info("overload: closed %d idle connections", closed)


class OverloadCollector(Collector):
    def __init__(self, manager: OverloadManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        manager = self._manager
        pressure = GaugeMetricFamily(
            "mecha_overload_pressure", "Use of a watched resource, as a fraction of its limit",
            labels=["resource"],
        )  # fmt: skip
        for name, value in manager.pressure.items():
            pressure.add_metric([name], value)
        active = GaugeMetricFamily(
            "mecha_overload_action_active", "1 while an overload action is in force",
            labels=["action"],
        )  # fmt: skip
        started = CounterMetricFamily(
            "mecha_overload_action_activations", "Times an overload action started",
            labels=["action"],
        )  # fmt: skip
        for action in ACTIONS:
            active.add_metric([action], float(manager.active[action]))
            started.add_metric([action], manager.activations[action])
        yield from (pressure, active, started)
