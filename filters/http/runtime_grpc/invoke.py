"""InvokeService: a call to an app (this one or another) over HTTP, as Dapr makes it for an
app that speaks HTTP; to this app when it speaks gRPC (`app_protocol: grpc`), its AppCallback
OnInvoke with the same InvokeRequest, the caller's metadata, and the app's status passed back.

The app id picks the cluster through the HTTP API's Invoker (`runtime.invoke` config, a
cluster named like the id, or DNS), so the call gets that cluster's balancing and pools.
`message.method` is the path, `http_extension` the verb (POST when unset) and query string,
`data.value` the body; the answer's body and content type come back in InvokeResponse and
its headers as response metadata. A non-2xx answer is a gRPC error with Dapr's mapping of
the HTTP status, and the status and body in an ErrorInfo. Attempts that never reached the
app are retried (`runtime.invoke.retries`); the client's deadline caps the invoke timeout.
"""

from __future__ import annotations

from http import HTTPStatus

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2
from google.protobuf import any_pb2

from filters.http.route import Route
from filters.http.runtime_grpc.context import Context
from filters.http.runtime_grpc.errors import RpcError, invalid
from protocols.grpc.status import StatusCode, code_from_http_status
from protocols.http.headers import Headers
from proxy.upstream.cluster import Cluster
from runtime.app_callback import NOT_FORWARDED, NOT_RETURNED, on_invoke
from runtime.app_channel import (
    AppCallError,
    AppChannel,
    AppResponse,
    AppUnavailable,
    NoAnswer,
    NotSent,
    cluster_request,
)

DETAIL_LIMIT = 63


def _failed(app_id: str, why: str) -> RpcError:
    return RpcError(
        StatusCode.INTERNAL, f"fail to invoke, id: {app_id}, err: {why}", "DAPR_DIRECT_INVOKE"
    )


async def _route(ctx: Context, app_id: str) -> Route:
    route = ctx.invoker.route(app_id)
    if route is not None:
        return route
    if not ctx.invoker.resolvable(app_id):
        raise _failed(app_id, f"no cluster serves app id {app_id!r}")
    route = await ctx.invoker.resolve(app_id)
    if route is None:
        raise _failed(app_id, "no address found (is it running?)")
    return route


def _request_headers(ctx: Context, app_id: str, content_type: str) -> Headers:
    headers = Headers(
        [
            (name, value)
            for name, value in ctx.headers
            if name not in NOT_FORWARDED and not name.startswith(b"grpc-")
        ]
    )
    if content_type:
        headers.set(b"content-type", content_type.encode("latin-1"))
    headers.set(b"dapr-caller-app-id", ctx.runtime.config.app_id.encode())
    headers.set(b"dapr-callee-app-id", app_id.encode("latin-1"))
    return headers


async def invoke_service(
    ctx: Context, request: invoke_pb2.InvokeServiceRequest
) -> common_pb2.InvokeResponse:
    app_id, message = request.id, request.message
    if not app_id:
        raise invalid("failed getting app id either from the URL path or the header dapr-app-id")
    if not message.method:
        raise invalid("invalid method name")
    app = ctx.runtime.app
    if app is not None and app_id == ctx.runtime.config.app_id and _speaks_grpc(ctx):
        return await _on_invoke(ctx, app, message)
    action = (await _route(ctx, app_id)).action
    assert action is not None, "invocation routes always forward"
    cluster = ctx.runtime.clusters.clusters.get(action.pick_cluster())
    if cluster is None:
        raise _failed(app_id, "its cluster is gone")
    extension = message.http_extension
    verb = extension.Verb.Name(extension.verb) if extension.verb else "POST"
    path = "/" + message.method.lstrip("/")
    if extension.querystring:
        path += "?" + extension.querystring
    timeout = ctx.time_left(action.timeout)
    answer = await _call(ctx, app_id, cluster, verb, path, message, timeout)
    ctx.call.initial_metadata = [
        (name, value)
        for name, value in answer.headers
        if name not in NOT_RETURNED and name != b"content-type"
    ]
    if not 200 <= answer.status < 300:
        raise _http_error(answer)
    content_type = (answer.headers.get(b"content-type") or b"").decode("latin-1")
    return common_pb2.InvokeResponse(data=any_pb2.Any(value=answer.body), content_type=content_type)


async def _call(
    ctx: Context,
    app_id: str,
    cluster: Cluster,
    verb: str,
    path: str,
    message: common_pb2.InvokeRequest,
    limit: float | None,
) -> AppResponse:
    attempts = 1 + ctx.runtime.config.invoke_retries
    for attempt in range(attempts):
        headers = _request_headers(ctx, app_id, message.content_type)
        try:
            return await cluster_request(cluster, verb, path, message.data.value, headers, limit)
        except NotSent as error:
            if attempt + 1 == attempts:
                raise _failed(app_id, str(error)) from None
        except AppUnavailable as error:
            late = isinstance(error, NoAnswer)
            code = StatusCode.DEADLINE_EXCEEDED if late else StatusCode.INTERNAL
            raise RpcError(
                code, f"fail to invoke, id: {app_id}, err: {error}", "DAPR_DIRECT_INVOKE"
            ) from None
    raise AssertionError("unreachable")


def _http_error(answer: AppResponse) -> RpcError:
    try:
        text = HTTPStatus(answer.status).phrase
    except ValueError:
        text = str(answer.status)
    detail = answer.body.decode("utf-8", "replace")[:DETAIL_LIMIT]
    return RpcError(
        code_from_http_status(answer.status),
        text,
        text,
        {"http.code": str(answer.status), "http.error_message": detail},
    )


# -- an app that speaks gRPC -------------------------------------------------------------------


def _speaks_grpc(ctx: Context) -> bool:
    return ctx.runtime.config.app_protocol == "grpc"


async def _on_invoke(
    ctx: Context, app: AppChannel, message: common_pb2.InvokeRequest
) -> common_pb2.InvokeResponse:
    app_id = ctx.runtime.config.app_id
    timeout = ctx.time_left(ctx.runtime.config.invoke_timeout)
    try:
        invoked = await on_invoke(app, message, ctx.headers, app_id, timeout)
    except AppCallError as error:  # the app's own status goes back to the caller
        known = 0 < error.code <= max(StatusCode)
        raise RpcError(
            StatusCode(error.code if known else StatusCode.UNKNOWN), error.message
        ) from None
    except NoAnswer as error:
        late = f"fail to invoke, id: {app_id}, err: {error}"
        raise RpcError(StatusCode.DEADLINE_EXCEEDED, late) from None
    except AppUnavailable as error:
        raise _failed(app_id, str(error)) from None
    ctx.call.initial_metadata = invoked.metadata
    return invoked.response
