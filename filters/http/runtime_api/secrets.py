"""`/v1.0/secrets/{store}/{key}` and `/v1.0/secrets/{store}/bulk`, with Dapr's odd codes
(401 for an unknown store, 204 for an unknown secret)."""

from __future__ import annotations

from typing import TypeVar

from filters.http.runtime_api.base import (
    NO_CONTENT,
    Answer,
    ApiError,
    ApiRequest,
    Block,
    json_answer,
    lookup,
)
from runtime.components.api import SecretStore
from runtime.components.errors import ComponentError, NotFound
from runtime.runtime import Runtime

T = TypeVar("T")

SECRETS = Block(
    "secretstores",
    (500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured"),
    (401, "ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key {}"),
)


def secret_store(runtime: Runtime, name: str) -> SecretStore:
    return lookup(runtime, SECRETS, runtime.secrets, name)


def check_allowed(runtime: Runtime, name: str, key: str) -> None:
    """The Configuration's secret scope of the store (403, as Dapr answers)."""
    if not runtime.config.secret_allowed(name, key):
        raise ApiError(403, "ERR_PERMISSION_DENIED",
                       f"access denied by policy to get {key!r} from {name!r}")  # fmt: skip


def allowed_only(runtime: Runtime, name: str, values: dict[str, T]) -> dict[str, T]:
    """A bulk read keeps the secrets the scope allows, as Dapr's does."""
    config = runtime.config
    return {key: value for key, value in values.items() if config.secret_allowed(name, key)}


async def get(runtime: Runtime, request: ApiRequest, name: str, key: str) -> Answer:
    store = secret_store(runtime, name)
    check_allowed(runtime, name, key)
    try:
        values = await store.get(key, request.metadata())
    except NotFound:
        return NO_CONTENT
    except ComponentError as error:
        raise ApiError(
            500,
            "ERR_SECRET_GET",
            f"failed getting secret with key {key} from secret store {name}: {error}",
        ) from None
    return json_answer(values)


async def bulk(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = secret_store(runtime, name)
    try:
        values = await store.bulk_get(request.metadata())
    except ComponentError as error:
        raise ApiError(
            500, "ERR_SECRET_GET", f"failed getting secrets from secret store {name}: {error}"
        ) from None
    return json_answer(allowed_only(runtime, name, values))
