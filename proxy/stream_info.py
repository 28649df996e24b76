"""What happened on one connection or request: read by access logs, stats and filters."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class ResponseFlag(enum.Enum):
    """Why a connection or request did not go as planned (Envoy's response flags)."""

    NO_HEALTHY_UPSTREAM = "UH"
    UPSTREAM_CONNECTION_FAILURE = "UF"
    UPSTREAM_OVERFLOW = "UO"
    UPSTREAM_CONNECTION_TERMINATION = "UC"
    UPSTREAM_REQUEST_TIMEOUT = "UT"
    NO_ROUTE_FOUND = "NR"
    RATE_LIMITED = "RL"
    DOWNSTREAM_CONNECTION_TERMINATION = "DC"
    DOWNSTREAM_PROTOCOL_ERROR = "DPE"
    UPSTREAM_PROTOCOL_ERROR = "UPE"
    STREAM_IDLE_TIMEOUT = "SI"
    DOWNSTREAM_OVERFLOW = "DO"
    FAULT_INJECTED = "FI"
    DELAY_INJECTED = "DI"
    UNAUTHORIZED = "UAEX"
    OVERLOAD_MANAGER = "OM"


@dataclass(slots=True)
class StreamInfo:
    """What happened on one connection; the access log and stats read it at close."""

    listener: str
    downstream_remote: str
    downstream_local: str
    start_time: float = field(default_factory=time.time)
    start_monotonic: float = field(default_factory=time.monotonic)
    bytes_received: int = 0
    bytes_sent: int = 0
    upstream_cluster: str | None = None
    upstream_host: str | None = None
    flags: set[ResponseFlag] = field(default_factory=set)
    failure_reason: str | None = None
    downstream_tls: bool = False
    """TLS was terminated on this connection (x-forwarded-proto says https)."""

    def fail(self, flag: ResponseFlag, reason: str) -> None:
        self.flags.add(flag)
        if self.failure_reason is None:
            self.failure_reason = reason

    @property
    def duration(self) -> float:
        return time.monotonic() - self.start_monotonic


@dataclass(slots=True)
class HttpStreamInfo:
    """What happened to one HTTP request; the access log and per-route stats read it."""

    listener: str
    downstream_remote: str
    protocol: bytes
    method: bytes = b"-"
    path: bytes = b"-"
    authority: bytes = b"-"
    start_time: float = field(default_factory=time.time)
    start_monotonic: float = field(default_factory=time.monotonic)
    status: int = 0
    body_bytes_received: int = 0
    body_bytes_sent: int = 0
    route_name: str | None = None
    upstream_cluster: str | None = None
    upstream_host: str | None = None
    upstream_attempts: int = 0
    upstream_service_time: float | None = None
    request_id: bytes | None = None
    user_agent: bytes | None = None
    forwarded_for: bytes | None = None
    grpc: bool = False
    flags: set[ResponseFlag] = field(default_factory=set)
    failure_reason: str | None = None
    end_monotonic: float | None = None

    def fail(self, flag: ResponseFlag, reason: str) -> None:
        self.flags.add(flag)
        if self.failure_reason is None:
            self.failure_reason = reason

    @property
    def duration(self) -> float:
        end = self.end_monotonic if self.end_monotonic is not None else time.monotonic()
        return end - self.start_monotonic

    def end(self, downstream_reset: bool) -> None:
        """The request is over; without an answer, a client that went away says why (DC)."""
        self.end_monotonic = time.monotonic()
        if downstream_reset and not self.status:
            self.fail(ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION, "client went away")
