"""Calls from the runtime to the application (events, bindings, configuration updates).

The app is a mesh cluster like any other upstream, so these requests use the same
keep-alive pools, timeouts and metrics as proxied traffic. An app that speaks gRPC
(`app_protocol: grpc`, an HTTP/2 cluster) is called with `call_grpc`: unary calls of its
AppCallback service, framed by protocols/grpc.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from protocols.grpc.framing import GrpcError, MessageDecoder, encode_message, format_timeout
from protocols.grpc.status import StatusCode, percent_decode
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.headers import Headers
from proxy.stream_info import ResponseFlag
from proxy.upstream.cluster import Cluster
from proxy.upstream.endpoint import Endpoint
from proxy.upstream.http_api import UpstreamStream


class AppUnavailable(Exception):
    """The app could not be reached, or did not answer in time."""


class NotSent(AppUnavailable):
    """No connection could be had: the request never left (safe to try again)."""


class NoAnswer(AppUnavailable):
    """The request went out but no answer came in time."""


class AppCallError(Exception):
    """The app answered a gRPC call with a status other than OK."""

    def __init__(self, code: int, message: str) -> None:
        name = StatusCode(code).name if 0 <= code <= max(StatusCode) else str(code)
        super().__init__(f"{name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    headers: Headers
    body: bytes
    trailers: Headers | None = None


class _Exchange:
    """UpstreamCallbacks that collects one response into a future."""

    def __init__(self, request: RequestHeaders, body: bytes) -> None:
        self.request = request
        self.body = body
        self.future: asyncio.Future[AppResponse] = asyncio.get_running_loop().create_future()
        self.stream: UpstreamStream | None = None
        self._head: ResponseHeaders | None = None
        self._chunks: list[bytes] = []
        self._trailers: Headers | None = None

    def on_pool_ready(self, stream: UpstreamStream) -> None:
        self.stream = stream
        stream.send_headers(self.request, not self.body)
        if self.body:
            stream.send_data(self.body, True)

    def on_pool_failure(self, flag: ResponseFlag, reason: str, endpoint: Endpoint | None) -> None:
        if not self.future.done():
            self.future.set_exception(NotSent(reason))

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
        self._trailers = trailers
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
                                               b"".join(self._chunks), self._trailers))  # fmt: skip

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
        return await cluster_request(self.cluster, method, path, body, headers, timeout)

    async def call_grpc(
        self, method: str, message: bytes,
        timeout: float = 30.0,  # noqa: ASYNC109 - the call's deadline, sent as grpc-timeout
    ) -> bytes:  # fmt: skip
        """A unary call of the app's `method` (`/package.Service/Method`): the response message,
        or AppCallError with the app's status, AppUnavailable if it cannot be had."""
        headers = Headers([(b"content-type", b"application/grpc"), (b"te", b"trailers"),
                           (b"grpc-timeout", format_timeout(timeout))])  # fmt: skip
        return grpc_reply(await self.request("POST", method, encode_message(message), headers,
                                             timeout))  # fmt: skip


async def cluster_request(
    cluster: Cluster, method: str, path: str, body: bytes, headers: Headers,
    timeout: float | None,  # noqa: ASYNC109 - a deadline for the peer, not for the caller
) -> AppResponse:  # fmt: skip
    """One buffered request to an endpoint of `cluster` (its balancing and pools); raises
    AppUnavailable (NotSent when no connection could be had) or the answer."""
    if body:
        headers.set(b"content-length", b"%d" % len(body))
    endpoint = cluster.endpoints[0].address if cluster.endpoints else None
    authority = str(endpoint).encode() if endpoint else b"app"
    request = RequestHeaders(method.encode(), path.encode(), authority, headers,
                             end_stream=not body, content_length=len(body))  # fmt: skip
    exchange = _Exchange(request, body)
    pending = cluster.new_http_stream(exchange)
    try:
        async with asyncio.timeout(timeout):
            return await exchange.future
    except TimeoutError:
        raise NoAnswer(f"no answer within {timeout or 0:.1f}s") from None
    finally:
        if not exchange.future.done():
            if pending is not None:
                pending.cancel()
            if exchange.stream is not None:
                exchange.stream.reset()


def grpc_reply(answer: AppResponse) -> bytes:
    """The one response message of a unary gRPC call, or its status as AppCallError."""
    if answer.status != 200:
        raise AppCallError(StatusCode.UNKNOWN, f"the app answered HTTP {answer.status}")
    fields = answer.trailers if answer.trailers is not None else answer.headers
    raw = fields.get(b"grpc-status")
    if raw is None or not raw.isdigit():
        raise AppCallError(StatusCode.INTERNAL, "the app's answer has no grpc-status")
    if int(raw) != StatusCode.OK:
        raise AppCallError(int(raw), percent_decode(fields.get(b"grpc-message") or b""))
    decoder = MessageDecoder(max_message_size=max(len(answer.body), 1))
    try:
        messages = decoder.feed(answer.body)
        decoder.end()
    except GrpcError as error:
        raise AppCallError(error.code, f"the app's answer: {error.reason}") from None
    if len(messages) != 1:
        raise AppCallError(StatusCode.INTERNAL, f"the app sent {len(messages)} messages, not 1")
    return messages[0]
