"""`runtime_grpc`: Dapr's gRPC API as an HTTP stream filter, on mecha's own HTTP/2 stack.

A gRPC request (`application/grpc`) for `dapr.proto.runtime.v1.Dapr` or mecha's own
`mecha.runtime.v1.Mecha` is answered here, by one task per call; every other request goes
on (CONTINUE), so the `runtime_api` filter after this one can route `dapr-app-id` calls
(Dapr's gRPC proxying) and the router can forward plain gRPC. The network filter of the
same name (filters/network/runtime_grpc.py) is the one-line form for a listener.

A call ends with its status in trailers (`grpc-status`, `grpc-message` and, for errors,
`grpc-status-details-bin` with Dapr's ErrorInfo). What a client gets wrong ends its call
only: a malformed message is INVALID_ARGUMENT, an oversized one RESOURCE_EXHAUSTED, an
unknown method UNIMPLEMENTED; a `grpc-timeout` that passes ends it DEADLINE_EXCEEDED. With an
API token (`runtime.api_token` or DAPR_API_TOKEN) calls must carry it in `dapr-api-token`
metadata (UNAUTHENTICATED otherwise), as in Dapr.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
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
from filters.http.runtime_api.base import ApiError
from filters.http.runtime_api.invoke import Invoker
from filters.http.runtime_grpc import mecha
from filters.http.runtime_grpc.call import ServerCall
from filters.http.runtime_grpc.context import Context, Kind, Method, run
from filters.http.runtime_grpc.errors import DOMAIN, RpcError, from_api_error
from filters.http.runtime_grpc.services import METHODS, SERVICES
from protocols.grpc.framing import GrpcError, parse_timeout
from protocols.grpc.status import Status, StatusCode
from protocols.http.events import RequestHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from runtime.api_access import grpc_api
from runtime.runtime import Runtime

log = logging.getLogger("mecha.runtime_grpc")

NAME = "runtime_grpc"
TOKEN_HEADER = b"dapr-api-token"
CONTENT_TYPES = (b"application/grpc", b"application/grpc+proto")
OK = Status(StatusCode.OK)
DEADLINE_EXCEEDED = Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")


@dataclass(frozen=True, slots=True)
class RuntimeGrpcConfig:
    max_message_size: int | None = None
    """Request messages over this are RESOURCE_EXHAUSTED; None: `runtime.max_request_body`."""


def parse_config(node: Node, context: ParseContext) -> RuntimeGrpcConfig:
    node.only("max_message_size")
    if context.runtime is None:
        node.problem("runtime_grpc needs a `runtime:` section at the top level")
    size = node.size("max_message_size", 0)
    return RuntimeGrpcConfig(size or None)


class GrpcShared:
    """What every call of one filter factory shares."""

    def __init__(
        self, runtime: Runtime, config: RuntimeGrpcConfig, context: HttpFactoryContext
    ) -> None:
        self.runtime = runtime
        token = runtime.config.api_token or os.environ.get("DAPR_API_TOKEN") or ""
        self.token = token.encode() or None
        self.max_message = config.max_message_size or runtime.config.max_request_body
        self.invoker = Invoker(runtime, context.cluster_manager)


class RuntimeGrpcFilter(StreamFilter):
    __slots__ = ("_call", "_expired", "_path", "_task", "callbacks", "shared")

    def __init__(self, shared: GrpcShared, callbacks: StreamCallbacks) -> None:
        self.shared = shared
        self.callbacks = callbacks
        self._call: ServerCall | None = None
        self._task: asyncio.Task[None] | None = None
        self._path = b""
        self._expired = False

    # -- decoding ------------------------------------------------------------------------------

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        headers = request.headers
        content_type = headers.get(b"content-type")
        if content_type is None or content_type.partition(b";")[0].strip() not in CONTENT_TYPES:
            return CONTINUE
        path = request.path
        method = METHODS.get(path)
        if method is None and not path.startswith(SERVICES):
            return CONTINUE  # not ours: a dapr-app-id call or plain gRPC for the router
        self._path = path
        call = self._call = ServerCall(
            self.callbacks,
            self.shared.max_message,
            single=method is None or method.kind is not Kind.BIDI,
        )
        token = self.shared.token
        given = headers.get(TOKEN_HEADER)
        if token is not None and (given is None or not hmac.compare_digest(given, token)):
            call.finish(Status(StatusCode.UNAUTHENTICATED, "authentication error: invalid token"))
            return STOP
        access = self.shared.runtime.config.api_access
        if access is not None and not access.allows("grpc", *grpc_api(path)):
            name, version = grpc_api(path)
            message = f"API {name} {version} is not allowed for this app (its Configuration)"
            call.finish(Status(StatusCode.PERMISSION_DENIED, message))
            return STOP
        if method is None:
            service, _, name = path[1:].decode("latin-1").rpartition("/")
            call.finish(
                Status(StatusCode.UNIMPLEMENTED, f"unknown method {name} for service {service}")
            )
            return STOP
        deadline = None
        timeout_header = headers.get(b"grpc-timeout")
        if timeout_header is not None:
            try:
                timeout = parse_timeout(timeout_header)
            except GrpcError as error:
                call.finish(Status(error.code, error.reason))
                return STOP
            if timeout <= 0:  # 0n, 0S...: over before it starts
                call.finish(DEADLINE_EXCEEDED)
                return STOP
            deadline = asyncio.get_running_loop().time() + timeout
            self.callbacks.call_later(timeout, self._deadline_passed)
        ctx = Context(self.shared.runtime, self.shared.invoker, headers, call, deadline)
        name = f"grpc {path.decode('latin-1')}"
        self._task = asyncio.get_running_loop().create_task(self._serve(method, ctx), name=name)
        if end_stream:
            self._receive(b"", True)
        return STOP

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if self._call is None:
            return CONTINUE
        if not self._call.done:
            self._receive(data, end_stream)
        return STOP  # a finished call drops what the client still sends

    def decode_trailers(self, trailers: Headers) -> FilterStatus:
        if self._call is None:
            return CONTINUE
        if not self._call.done:
            self._receive(b"", True)
        return STOP

    def _receive(self, data: bytes, end_stream: bool) -> None:
        assert self._call is not None
        try:
            self._call.receive(data, end_stream)
        except GrpcError as error:
            self._end(Status(error.code, error.reason))

    # -- the call ------------------------------------------------------------------------------

    async def _serve(self, method: Method, ctx: Context) -> None:
        try:
            await run(method, ctx)
            status = OK
        except asyncio.CancelledError:
            if not self._expired:
                raise  # the stream is gone (client reset, connection closed)
            status = DEADLINE_EXCEEDED
        except RpcError as error:
            status = error.status()
        except ApiError as error:
            domain = mecha.DOMAIN if self._path.startswith(mecha.SERVICE.encode()) else DOMAIN
            status = from_api_error(error, domain).status()
        except GrpcError as error:
            status = Status(error.code, error.reason)
        except Exception:
            log.exception("gRPC %s failed", self._path.decode("latin-1"))
            status = Status(StatusCode.INTERNAL, "internal error; see mecha's log")
        ctx.call.finish(status)

    def _deadline_passed(self) -> None:
        """The call ends DEADLINE_EXCEEDED now, whether or not its handler has started: a
        timer as short as 1n fires before the task's first step, and a task cancelled then
        runs none of its code (so it could not answer)."""
        call = self._call
        if call is None or call.done:
            return
        self._expired = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        call.finish(DEADLINE_EXCEEDED)

    def _end(self, status: Status) -> None:
        """End the call now (bad input): its handler stops, other streams go on."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        assert self._call is not None
        self._call.finish(status)

    # -- lifetime ------------------------------------------------------------------------------

    def on_above_write_buffer_high_watermark(self) -> None:
        if self._call is not None:
            self._call.pause(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self._call is not None:
            self._call.pause(False)

    def on_destroy(self) -> None:
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()  # (the task itself finishing the call needs no cancelling)


def create_factory(config: RuntimeGrpcConfig, context: HttpFactoryContext) -> StreamFilterFactory:
    runtime = context.runtime
    assert runtime is not None, "parse_config refuses runtime_grpc without a runtime"
    shared = GrpcShared(runtime, config, context)

    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        return RuntimeGrpcFilter(shared, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory)
