"""mecha's own service (proto/mecha/runtime/v1/mecha.proto): Layotto's extras over gRPC.

GetNextId (sequencer), TryLock with a fencing token, and RenewLock, on the same components
and shared operations as their HTTP paths. Errors carry ErrorInfo in the `mecha.io` domain.
"""

from __future__ import annotations

from filters.http.runtime_api import lock
from filters.http.runtime_api.sequencer import take_next_id
from filters.http.runtime_grpc import mecha_pb2
from filters.http.runtime_grpc.context import Context

SERVICE = "/mecha.runtime.v1.Mecha/"
DOMAIN = "mecha.io"


async def get_next_id(
    ctx: Context, request: mecha_pb2.GetNextIdRequest
) -> mecha_pb2.GetNextIdResponse:
    value = await take_next_id(ctx.runtime, request.store_name, request.key, dict(request.metadata))
    return mecha_pb2.GetNextIdResponse(next_id=value)


async def try_lock(ctx: Context, request: mecha_pb2.TryLockRequest) -> mecha_pb2.TryLockResponse:
    name = request.store_name
    store = lock.lock_store(ctx.runtime, name)
    resource, owner, seconds = lock.check_fields(
        name, request.resource_id, request.lock_owner, request.expiry_in_seconds
    )
    result = await lock.acquire(
        store, lock.lock_resource(ctx.runtime, name, resource), owner, seconds
    )
    token = result.fencing_token if result.success else 0
    return mecha_pb2.TryLockResponse(success=result.success, fencing_token=token)


async def renew_lock(
    ctx: Context, request: mecha_pb2.RenewLockRequest
) -> mecha_pb2.RenewLockResponse:
    name = request.store_name
    store = lock.lock_store(ctx.runtime, name)
    resource, owner, seconds = lock.check_fields(
        name, request.resource_id, request.lock_owner, request.expiry_in_seconds
    )
    status = await lock.extend(
        store, lock.lock_resource(ctx.runtime, name, resource), owner, seconds
    )
    return mecha_pb2.RenewLockResponse(status=int(status))  # type: ignore[arg-type]
