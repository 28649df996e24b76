"""One gRPC call on one HTTP stream: request messages in, response messages and status out.

The filter feeds the request's DATA in (`receive`); the handler task reads messages with
`recv` and writes with `send`, and the call ends once with `finish`: trailers after a
response, or a trailers-only answer when nothing was sent. Reading is bounded both ways: a
call takes at most one message when it expects one (unary and server-streaming methods)
and pauses the client (HTTP/2 flow control) while INBOX_LIMIT messages wait to be read;
`drain` lets a streaming handler wait while the client is not reading the response.
"""

from __future__ import annotations

import asyncio
from collections import deque

from filters.http.api import StreamCallbacks
from protocols.grpc.framing import GrpcError, MessageDecoder, encode_message
from protocols.grpc.status import Status, StatusCode
from protocols.http.events import ResponseHeaders
from protocols.http.headers import Headers

CONTENT_TYPE = b"application/grpc"
INBOX_LIMIT = 64


class ServerCall:
    __slots__ = (
        "_callbacks",
        "_decoder",
        "_inbox",
        "_paused",
        "_read_paused",
        "_single",
        "_waiter",
        "_writable",
        "done",
        "half_closed",
        "headers_sent",
        "initial_metadata",
    )

    def __init__(self, callbacks: StreamCallbacks, max_message: int, single: bool) -> None:
        self._callbacks = callbacks
        self._decoder = MessageDecoder(max_message)
        self._single = single
        self._inbox: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._paused = False
        self._writable: asyncio.Event | None = None
        self.half_closed = False
        self.headers_sent = False
        self.done = False
        self.initial_metadata: list[tuple[bytes, bytes]] = []
        """Sent with the response headers (set before the first `send`)."""

    # -- the request side ----------------------------------------------------------------------

    def receive(self, data: bytes, end_stream: bool) -> None:
        """Request DATA from the client; raises GrpcError when it must end the call."""
        messages = self._decoder.feed(data) if data else []
        if end_stream:
            self._decoder.end()
            self.half_closed = True
        if messages:
            if self._single and len(self._inbox) + len(messages) > 1:
                raise GrpcError(StatusCode.INTERNAL, "more than one request message")
            self._inbox.extend(messages)
            if len(self._inbox) >= INBOX_LIMIT and not self._read_paused:
                self._read_paused = True
                self._callbacks.read_disable(True)
        if (messages or end_stream) and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> bytes | None:
        """The next request message, or None once the client has finished sending."""
        while not self._inbox:
            if self.half_closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._inbox.popleft()
        if self._read_paused and len(self._inbox) < INBOX_LIMIT // 2:
            self._read_paused = False
            self._callbacks.read_disable(False)
        return message

    async def recv_single(self) -> bytes:
        """The one request message of a unary or server-streaming call."""
        message = await self.recv()
        if message is None:
            raise GrpcError(StatusCode.INTERNAL, "the client sent no request message")
        while not self.half_closed:  # the client must end its side after the message
            await self._wait_input()
        return message

    async def _wait_input(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # -- the response side -----------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        if self.done:
            return
        if not self.headers_sent:
            self.headers_sent = True
            headers = Headers([(b"content-type", CONTENT_TYPE), *self.initial_metadata])
            self._callbacks.encode_headers(ResponseHeaders(200, headers), False)
        self._callbacks.encode_data(encode_message(payload), False)

    async def drain(self) -> None:
        """Wait while the client's connection is not taking what was sent."""
        while self._paused and not self.done:
            if self._writable is None:
                self._writable = asyncio.Event()
            await self._writable.wait()

    def pause(self, paused: bool) -> None:
        self._paused = paused
        if not paused and self._writable is not None:
            self._writable.set()
            self._writable = None

    def finish(self, status: Status) -> None:
        """End the call with `status` (once; later calls are ignored)."""
        if self.done:
            return
        self.done = True
        if self._writable is not None:
            self._writable.set()
        trailers = status.trailers()
        if self.headers_sent:
            self._callbacks.encode_trailers(Headers(trailers))
            return
        headers = Headers([(b"content-type", CONTENT_TYPE), *self.initial_metadata, *trailers])
        self._callbacks.encode_headers(ResponseHeaders(200, headers, end_stream=True), True)
