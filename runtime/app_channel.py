"""Calls from the runtime to the application (events, bindings, configuration updates).

The app is a mesh cluster like any other upstream, so these requests use the same
keep-alive pools, timeouts and metrics as proxied traffic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.stream_info import ResponseFlag
from proxy.upstream.cluster import Cluster
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http_api import UpstreamStream


class AppUnavailable(Exception):
    """The app could not be reached, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    headers: Headers
    body: bytes


class _Exchange:
    """UpstreamCallbacks that collects one response into a future."""

    def __init__(self, request: RequestHeaders, body: bytes) -> None:
        self.request = request
        self.body = body
        self.future: asyncio.Future[AppResponse] = asyncio.get_running_loop().create_future()
        self.stream: UpstreamStream | None = None
        self._head: ResponseHeaders | None = None
        self._chunks: list[bytes] = []

    def on_pool_ready(self, stream: UpstreamStream) -> None:
        self.stream = stream
        stream.send_headers(self.request, not self.body)
        if self.body:
            stream.send_data(self.body, True)

    def on_pool_failure(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None) -> None:
        self._fail(reason)

    def on_upstream_headers(self, head: ResponseHeaders) -> None:
        if head.informational:
            return
        self._head = head
        if head.end_stream:
            self._finish()

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None:
        self._chunks.append(data)
        if end_stream:
            self._finish()

    def on_upstream_trailers(self, trailers: Headers) -> None:
        self._finish()

    def on_upstream_reset(self, reason: str, before_response: bool, reused: bool) -> None:
        self._fail(reason)

    def on_upstream_above_write_buffer_high_watermark(self) -> None:
        pass  # one small request body: nothing to pause

    def on_upstream_below_write_buffer_low_watermark(self) -> None:
        pass

    def _finish(self) -> None:
        assert self._head is not None
        if not self.future.done():
            self.future.set_result(AppResponse(self._head.status, self._head.headers,
                                               b"".join(self._chunks)))  # fmt: skip

    def _fail(self, reason: str) -> None:
        if not self.future.done():
            self.future.set_exception(AppUnavailable(reason))


class AppChannel:
    def __init__(self, cluster: Cluster, app_token: str | None = None) -> None:
        self.cluster = cluster
        self.app_token = app_token

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Headers | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the app, not for the caller
    ) -> AppResponse:  # fmt: skip
        headers = headers or Headers()
        if self.app_token:
            headers.set(b"dapr-api-token", self.app_token.encode())
        if body:
            headers.set(b"content-length", b"%d" % len(body))
        endpoint = self.cluster.endpoints[0].address if self.cluster.endpoints else None
        authority = str(endpoint).encode() if endpoint else b"app"
        request = RequestHeaders(method.encode(), path.encode(), authority, headers,
                                 end_stream=not body, content_length=len(body))  # fmt: skip
        exchange = _Exchange(request, body)
        pending = self.cluster.new_http_stream(exchange)
        try:
            async with asyncio.timeout(timeout):
                return await exchange.future
        except TimeoutError:
            raise AppUnavailable(f"no answer from the app within {timeout:.0f}s") from None
        finally:
            if not exchange.future.done():
                if pending is not None:
                    pending.cancel()
                if exchange.stream is not None:
                    exchange.stream.reset()
