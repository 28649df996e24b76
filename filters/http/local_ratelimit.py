"""local_ratelimit: a token bucket per listener (and per route override), like Envoy's.

The bucket starts full with `max_tokens`; every `fill_interval` it gains `tokens_per_fill`,
up to `max_tokens`. Each request takes one token; a request that finds none is answered
429 here (flag RL). Refilling is lazy: the bucket catches up from `time.monotonic()` when
a request arrives, so there is no timer. A filter-level bucket is shared by every stream of
the connection manager; a route with its own `filters.local_ratelimit` block gets its own
bucket, made the first time the route is used and kept for the life of the listener.

With `enable_x_ratelimit_headers: true` every response (the 429 too) carries
`x-ratelimit-limit` (max_tokens), `x-ratelimit-remaining` (tokens left after this request)
and `x-ratelimit-reset` (whole seconds until the next fill).
"""

from __future__ import annotations

import math
import time
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
from filters.http.registry import HttpFilterSpec
from protocols.http.events import RequestHeaders, ResponseHeaders
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import ResponseFlag

NAME = "local_ratelimit"
BODY = b"local rate limited\n"


@dataclass(frozen=True, slots=True)
class LocalRateLimitConfig:
    max_tokens: int
    tokens_per_fill: int = 1
    fill_interval: float = 1.0
    enable_x_ratelimit_headers: bool = False


def parse_config(node: Node, context: ParseContext) -> LocalRateLimitConfig:
    node.only("max_tokens", "tokens_per_fill", "fill_interval", "enable_x_ratelimit_headers")
    return LocalRateLimitConfig(
        max_tokens=node.integer("max_tokens", minimum=1),
        tokens_per_fill=node.integer("tokens_per_fill", 1, minimum=1),
        fill_interval=node.duration("fill_interval", positive=True),
        enable_x_ratelimit_headers=node.flag("enable_x_ratelimit_headers", False),
    )


class TokenBucket:
    """Whole tokens, refilled in whole `fill_interval` steps when someone asks."""

    __slots__ = ("_last_fill", "fill_interval", "limit", "max_tokens", "tokens", "tokens_per_fill")

    def __init__(self, config: LocalRateLimitConfig, now: float) -> None:
        self.max_tokens = config.max_tokens
        self.tokens_per_fill = config.tokens_per_fill
        self.fill_interval = config.fill_interval
        self.tokens = config.max_tokens
        self._last_fill = now
        self.limit = b"%d" % config.max_tokens
        """The x-ratelimit-limit value, made once."""

    def consume(self, now: float) -> bool:
        """Take one token if there is one (after catching up on missed fills)."""
        elapsed = now - self._last_fill
        if elapsed >= self.fill_interval:
            fills = int(elapsed / self.fill_interval)
            self.tokens = min(self.max_tokens, self.tokens + fills * self.tokens_per_fill)
            self._last_fill += fills * self.fill_interval
        if self.tokens > 0:
            self.tokens -= 1
            return True
        return False

    def seconds_to_fill(self, now: float) -> float:
        return max(0.0, self._last_fill + self.fill_interval - now)


def create_factory(
    config: LocalRateLimitConfig, context: HttpFactoryContext
) -> StreamFilterFactory:
    shared = TokenBucket(config, time.monotonic())
    per_route: dict[int, tuple[LocalRateLimitConfig, TokenBucket]] = {}
    """Route buckets by the identity of the route's parsed config (which the value keeps alive)."""

    def bucket_of(override: LocalRateLimitConfig) -> TokenBucket:
        entry = per_route.get(id(override))
        if entry is None:
            entry = per_route[id(override)] = (override, TokenBucket(override, time.monotonic()))
        return entry[1]

    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        override: LocalRateLimitConfig | None = callbacks.per_route_config(NAME)
        if override is None:
            bucket, headers = shared, config.enable_x_ratelimit_headers
        else:
            bucket, headers = bucket_of(override), override.enable_x_ratelimit_headers
        if headers:
            return LocalRateLimitWithHeaders(bucket, callbacks)
        return LocalRateLimit(bucket, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory, parse_per_route=parse_config)


class LocalRateLimit(StreamFilter):
    __slots__ = ("_bucket", "_callbacks")

    def __init__(self, bucket: TokenBucket, callbacks: StreamCallbacks) -> None:
        self._bucket = bucket
        self._callbacks = callbacks

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        if self._bucket.consume(time.monotonic()):
            return CONTINUE
        self._callbacks.send_local_reply(
            429, BODY, ResponseFlag.RATE_LIMITED, details="local rate limited"
        )
        return STOP


class LocalRateLimitWithHeaders(LocalRateLimit):
    """Also tells the client its quota; remembers it at decode time for the response."""

    __slots__ = ("_remaining", "_reset")
    encodes = True

    def __init__(self, bucket: TokenBucket, callbacks: StreamCallbacks) -> None:
        super().__init__(bucket, callbacks)
        self._remaining = -1
        """Tokens left after this request; -1 until the request was counted."""
        self._reset = 0

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        bucket = self._bucket
        now = time.monotonic()
        allowed = bucket.consume(now)
        self._remaining = bucket.tokens
        self._reset = math.ceil(bucket.seconds_to_fill(now))
        if allowed:
            return CONTINUE
        self._callbacks.send_local_reply(
            429, BODY, ResponseFlag.RATE_LIMITED, details="local rate limited"
        )
        return STOP

    def encode_headers(self, response: ResponseHeaders, end_stream: bool) -> FilterStatus:
        if self._remaining >= 0 and not response.informational:
            headers = response.headers
            headers.set(b"x-ratelimit-limit", self._bucket.limit)
            headers.set(b"x-ratelimit-remaining", b"%d" % self._remaining)
            headers.set(b"x-ratelimit-reset", b"%d" % self._reset)
        return CONTINUE
