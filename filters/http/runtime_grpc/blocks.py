"""InvokeBinding, GetSecret, GetBulkSecret, TryLockAlpha1 and UnlockAlpha1 over gRPC."""

from __future__ import annotations

from dapr.proto.runtime.v1 import binding_pb2, lock_pb2, secret_pb2

from filters.http.runtime_api import bindings, lock, secrets
from filters.http.runtime_api.base import ApiError
from filters.http.runtime_grpc.context import Context
from runtime.components.errors import ComponentError, NotFound


async def invoke_binding(
    ctx: Context, request: binding_pb2.InvokeBindingRequest
) -> binding_pb2.InvokeBindingResponse:
    response = await bindings.invoke_output(
        ctx.runtime, request.name, request.operation, request.data, dict(request.metadata)
    )
    return binding_pb2.InvokeBindingResponse(data=response.data, metadata=dict(response.metadata))


async def get_secret(
    ctx: Context, request: secret_pb2.GetSecretRequest
) -> secret_pb2.GetSecretResponse:
    """An unknown secret is an empty answer (the HTTP API's 204)."""
    name, key = request.store_name, request.key
    store = secrets.secret_store(ctx.runtime, name)
    secrets.check_allowed(ctx.runtime, name, key)
    try:
        values = await store.get(key, dict(request.metadata))
    except NotFound:
        return secret_pb2.GetSecretResponse()
    except ComponentError as error:
        raise ApiError(
            500,
            "ERR_SECRET_GET",
            f"failed getting secret with key {key} from secret store {name}: {error}",
        ) from None
    return secret_pb2.GetSecretResponse(data=values)


async def get_bulk_secret(
    ctx: Context, request: secret_pb2.GetBulkSecretRequest
) -> secret_pb2.GetBulkSecretResponse:
    name = request.store_name
    store = secrets.secret_store(ctx.runtime, name)
    try:
        values = await store.bulk_get(dict(request.metadata))
    except ComponentError as error:
        raise ApiError(
            500, "ERR_SECRET_GET", f"failed getting secrets from secret store {name}: {error}"
        ) from None
    answer = secret_pb2.GetBulkSecretResponse()
    for key, secret in secrets.allowed_only(ctx.runtime, name, values).items():
        answer.data[key].secrets.update(secret)
    return answer


async def try_lock(ctx: Context, request: lock_pb2.TryLockRequest) -> lock_pb2.TryLockResponse:
    name = request.store_name
    store = lock.lock_store(ctx.runtime, name)
    resource, owner, seconds = lock.check_fields(
        name, request.resource_id, request.lock_owner, request.expiry_in_seconds
    )
    result = await lock.acquire(
        store, lock.lock_resource(ctx.runtime, name, resource), owner, seconds
    )
    return lock_pb2.TryLockResponse(success=result.success)


async def unlock(ctx: Context, request: lock_pb2.UnlockRequest) -> lock_pb2.UnlockResponse:
    name = request.store_name
    store = lock.lock_store(ctx.runtime, name)
    resource, owner, _ = lock.check_fields(name, request.resource_id, request.lock_owner, None)
    status = await lock.release(store, lock.lock_resource(ctx.runtime, name, resource), owner)
    return lock_pb2.UnlockResponse(status=int(status))  # type: ignore[arg-type]
