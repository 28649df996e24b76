"""Distributed locks (`/v1.0-alpha1/lock|unlock/{store}`, Dapr's status numbers) and, beyond
Dapr, lease renewal (`/v1.0-alpha1/lock/{store}/renew`) and a fencing token in every grant.

Lock resources are namespaced like state keys (`lock||<app id>||<resource>` by default), so
two apps sharing a store do not collide unless the store's `keyPrefix` says they should.
"""

from __future__ import annotations

from typing import Any

from filters.http.runtime_api.base import (
    Answer,
    ApiError,
    ApiRequest,
    Block,
    json_answer,
    lookup,
    malformed,
)
from runtime.components.api import LockResult, LockStore, UnlockStatus
from runtime.components.errors import ComponentError
from runtime.runtime import Runtime

LOCKS = Block(
    "lock",
    (500, "ERR_LOCK_STORE_NOT_CONFIGURED", "lock store is not configured"),
    (400, "ERR_LOCK_STORE_NOT_FOUND", "lock store {} not found"),
)


def lock_store(runtime: Runtime, name: str) -> LockStore:
    return lookup(runtime, LOCKS, runtime.lock, name)


def lock_resource(runtime: Runtime, name: str, resource: str) -> str:
    """The store key of a lock resource: namespaced like state keys."""
    return "lock||" + runtime.key_prefix(name) + resource


def check_fields(name: str, resource: Any, owner: Any, seconds: Any) -> tuple[str, str, int]:
    """Dapr's checks of a lock request (`seconds` None: no expiry in this request)."""
    if not isinstance(resource, str) or not resource:
        raise malformed(f"ResourceId is empty in lock store {name}")
    if not isinstance(owner, str) or not owner:
        raise malformed(f"LockOwner is empty in lock store {name}")
    if seconds is None:
        return resource, owner, 0
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise malformed(f"ExpiryInSeconds is not positive in lock store {name}")
    return resource, owner, seconds


def _fields(runtime: Runtime, request: ApiRequest, name: str, expiry: bool) -> tuple[str, str, int]:
    body: Any = request.json()
    if not isinstance(body, dict):
        raise malformed("the body must be a JSON object")
    resource, owner = body.get("resourceId"), body.get("lockOwner")
    seconds = body.get("expiryInSeconds", 0) if expiry else None
    resource, owner, seconds = check_fields(name, resource, owner, seconds)
    return lock_resource(runtime, name, resource), owner, seconds


# The operations, shared with the gRPC API (Dapr's TryLockAlpha1 / UnlockAlpha1, mecha's own).


async def acquire(store: LockStore, resource: str, owner: str, seconds: int) -> LockResult:
    try:
        return await store.try_lock(resource, owner, float(seconds))
    except ComponentError as error:
        raise ApiError(500, "ERR_TRY_LOCK", f"failed to try acquiring lock: {error}") from None


async def release(store: LockStore, resource: str, owner: str) -> UnlockStatus:
    try:
        return await store.unlock(resource, owner)
    except ComponentError as error:
        raise ApiError(500, "ERR_UNLOCK", f"failed to release lock: {error}") from None


async def extend(store: LockStore, resource: str, owner: str, seconds: int) -> UnlockStatus:
    try:
        return await store.renew(resource, owner, float(seconds))
    except ComponentError as error:
        raise ApiError(500, "ERR_RENEW_LOCK", f"failed to renew lock: {error}") from None


async def try_lock(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = lock_store(runtime, name)
    result = await acquire(store, *_fields(runtime, request, name, expiry=True))
    answer: dict[str, Any] = {"success": result.success}
    if result.success:
        answer["fencingToken"] = str(result.fencing_token)
    return json_answer(answer)


async def unlock(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = lock_store(runtime, name)
    resource, owner, _ = _fields(runtime, request, name, expiry=False)
    return json_answer({"status": int(await release(store, resource, owner))})


async def renew(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = lock_store(runtime, name)
    status = await extend(store, *_fields(runtime, request, name, expiry=True))
    return json_answer({"status": int(status)})
