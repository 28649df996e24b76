"""fault: inject delays and aborts into a share of requests (Envoy's fault filter).

`delay: {fixed_delay: 1s, percentage: 50}` holds half of the requests for a second
before they go on; `abort: {http_status: 503, percentage: 10}` answers one in ten
locally with 503 (gRPC clients see the mapped grpc-status). A request that was delayed
is then considered for the abort too, as in Envoy. Percentages run from 0 to 100 and
may be fractional; they default to 100.

With `header_controlled: true` the client may ask for faults (for tests of its own
resilience; only enable it where clients are trusted):
`x-envoy-fault-abort-request: <status>`, `x-envoy-fault-delay-request: <milliseconds>`,
and optionally `x-envoy-fault-abort-request-percentage` /
`x-envoy-fault-delay-request-percentage`. A header percentage is capped by the
configured percentage of that fault, if any.

`max_active_faults` bounds how many requests are held in a delay at once (a fault that
would go over it is not injected). A route's `filters.fault` block replaces the whole
filter config for that route.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from filters.http.api import (
    CONTINUE,
    STOP,
    FilterStatus,
    HttpFactoryContext,
    StreamCallbacks,
    StreamFilter,
    StreamFilterFactory,
)
from filters.http.config_values import percentage
from filters.http.registry import HttpFilterSpec
from protocols.http.events import RequestHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import ResponseFlag

NAME = "fault"
ABORT_BODY = b"fault filter abort\n"
ABORT_DETAILS = "fault filter abort"

H_ABORT = b"x-envoy-fault-abort-request"
H_ABORT_PERCENT = b"x-envoy-fault-abort-request-percentage"
H_DELAY = b"x-envoy-fault-delay-request"
H_DELAY_PERCENT = b"x-envoy-fault-delay-request-percentage"

_random: Callable[[], float] = random.random
"""Uniform in [0, 1); tests replace it."""


@dataclass(frozen=True, slots=True)
class DelayFault:
    fixed_delay: float
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class AbortFault:
    http_status: int
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class FaultConfig:
    delay: DelayFault | None = None
    abort: AbortFault | None = None
    header_controlled: bool = False
    max_active_faults: int | None = None


def parse_config(node: Node, context: ParseContext) -> FaultConfig:
    node.only("delay", "abort", "header_controlled", "max_active_faults")
    if not (node.has("delay") or node.has("abort") or node.has("header_controlled")):
        node.problem("configure at least one of: delay, abort, header_controlled")
    max_active = node.integer("max_active_faults", 0, minimum=1)
    return FaultConfig(
        delay=_delay(node.section("delay")) if node.has("delay") else None,
        abort=_abort(node.section("abort")) if node.has("abort") else None,
        header_controlled=node.flag("header_controlled", False),
        max_active_faults=max_active or None,
    )


def _delay(node: Node) -> DelayFault:
    node.only("fixed_delay", "percentage")
    return DelayFault(node.duration("fixed_delay", positive=True), percentage(node, "percentage"))


def _abort(node: Node) -> AbortFault:
    node.only("http_status", "percentage")
    return AbortFault(
        node.integer("http_status", minimum=200, maximum=599), percentage(node, "percentage")
    )


class _Active:
    """Requests held in an injected delay right now, across the streams of one factory."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def create_factory(config: FaultConfig, context: HttpFactoryContext) -> StreamFilterFactory:
    active = _Active()

    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        return FaultFilter(config, active, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory, parse_per_route=parse_config)


def _chance(percent: float) -> bool:
    return percent >= 100.0 or (percent > 0.0 and _random() * 100.0 < percent)


def _header_int(headers: Headers, name: bytes) -> int | None:
    value = headers.get(name)
    if value is None or not value.isdigit() or len(value) > 9:
        return None
    return int(value)


def _header_percent(headers: Headers, name: bytes, configured: float | None) -> float:
    """The header's percentage, capped by the configured one; the configured one, or 100."""
    cap = 100.0 if configured is None else configured
    requested = _header_int(headers, name)
    return cap if requested is None else min(float(requested), cap)


class FaultFilter(StreamFilter):
    __slots__ = ("_active", "_callbacks", "_cancel", "_config")

    def __init__(self, config: FaultConfig, active: _Active, callbacks: StreamCallbacks) -> None:
        self._config = config
        self._active = active
        self._callbacks = callbacks
        self._cancel: Callable[[], None] | None = None
        """Cancels the delay timer while the request is held."""

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        override = self._callbacks.per_route_config(NAME)
        if override is not None:
            self._config = override
        delay = self._delay_for(request.headers)
        if delay is not None and self._room():
            self._active.count += 1
            self._callbacks.info.flags.add(ResponseFlag.DELAY_INJECTED)
            self._cancel = self._callbacks.call_later(delay, self._delay_over)
            return STOP
        return self._maybe_abort(request.headers)

    def _room(self) -> bool:
        limit = self._config.max_active_faults
        return limit is None or self._active.count < limit

    def _delay_for(self, headers: Headers) -> float | None:
        """Seconds to hold this request, or None."""
        config = self._config
        configured = config.delay
        if config.header_controlled:
            millis = _header_int(headers, H_DELAY)
            if millis is not None:
                percent = configured.percentage if configured is not None else None
                chosen = _chance(_header_percent(headers, H_DELAY_PERCENT, percent))
                return millis / 1000.0 if chosen else None
        if configured is not None and _chance(configured.percentage):
            return configured.fixed_delay
        return None

    def _abort_status(self, headers: Headers) -> int | None:
        config = self._config
        configured = config.abort
        if config.header_controlled:
            status = _header_int(headers, H_ABORT)
            if status is not None and 200 <= status <= 599:
                percent = configured.percentage if configured is not None else None
                chosen = _chance(_header_percent(headers, H_ABORT_PERCENT, percent))
                return status if chosen else None
        if configured is not None and _chance(configured.percentage):
            return configured.http_status
        return None

    def _maybe_abort(self, headers: Headers) -> FilterStatus:
        status = self._abort_status(headers)
        if status is None or not self._room():
            return CONTINUE
        self._callbacks.send_local_reply(
            status, ABORT_BODY, ResponseFlag.FAULT_INJECTED, details=ABORT_DETAILS
        )
        return STOP

    def _delay_over(self) -> None:
        self._release()
        if self._maybe_abort(self._callbacks.request.headers) is CONTINUE:
            self._callbacks.continue_decoding()

    def _release(self) -> None:
        if self._cancel is not None:
            self._cancel = None
            self._active.count -= 1

    def on_destroy(self) -> None:
        cancel = self._cancel
        self._release()
        if cancel is not None:
            cancel()
