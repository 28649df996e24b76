"""What a gRPC method handler gets: the runtime, the call, its metadata and deadline."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError, Message

from filters.http.runtime_grpc.call import ServerCall
from filters.http.runtime_grpc.errors import RpcError
from protocols.grpc.status import StatusCode
from protocols.http.headers import Headers
from runtime.runtime import Runtime

if TYPE_CHECKING:
    from filters.http.runtime_api.invoke import Invoker


@dataclass(slots=True)
class Context:
    runtime: Runtime
    invoker: Invoker
    headers: Headers
    """The request's metadata (HTTP/2 headers)."""
    call: ServerCall
    deadline: float | None = None
    """The loop time the client gives up at (grpc-timeout), if it set one."""

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    def time_left(self, default: float | None) -> float | None:
        """Seconds until the deadline, or `default` (the smaller, when both exist)."""
        if self.deadline is None:
            return default
        left = max(self.deadline - asyncio.get_running_loop().time(), 0.0)
        return left if default is None else min(left, default)


class Kind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server streaming"
    BIDI = "bidirectional streaming"


@dataclass(frozen=True, slots=True)
class Method:
    kind: Kind
    request: type[Message]
    handler: Callable[..., Awaitable[Any]]
    """UNARY: (ctx, request) -> response; SERVER_STREAM: (ctx, request) sends with ctx.call;
    BIDI: (ctx) reads and sends with ctx.call."""


def unary(request: type[Message], handler: Callable[..., Awaitable[Any]]) -> Method:
    return Method(Kind.UNARY, request, handler)


def parse(kind: type[Message], payload: bytes) -> Any:
    try:
        return kind.FromString(payload)
    except DecodeError as error:
        raise RpcError(
            StatusCode.INVALID_ARGUMENT,
            f"grpc: error unmarshalling request: {error or 'malformed protobuf'}",
        ) from None


async def run(method: Method, ctx: Context) -> None:
    """Read the request(s), run the handler, send the response(s); the caller sends the status."""
    call = ctx.call
    if method.kind is Kind.BIDI:
        await method.handler(ctx)
        return
    request = parse(method.request, await call.recv_single())
    if method.kind is Kind.UNARY:
        response: Message = await method.handler(ctx, request)
        call.send(response.SerializeToString())
    else:
        await method.handler(ctx, request)
