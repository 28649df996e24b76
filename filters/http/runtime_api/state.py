"""`/v1.0/state/{store}`: save, get, delete, bulk get and transactions, as Dapr serves them.

Values are JSON: a saved value is stored as its JSON text and a get answers that text back
(`"x"` for a string), as Dapr's HTTP API does. Keys are stored under the store's prefix
(`<app id>||<key>` by default), so `||` is refused in keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from filters.http.runtime_api.base import (
    NO_CONTENT,
    Answer,
    ApiError,
    ApiRequest,
    Block,
    component_failed,
    embed,
    json_answer,
    lookup,
    malformed,
    string_map,
)
from protocols import strict_json
from runtime.components.api import (
    Concurrency,
    DeleteRequest,
    SetRequest,
    StateFeature,
    StateItem,
    StateOperation,
    StateStore,
)
from runtime.components.errors import ComponentError
from runtime.runtime import Runtime

CONCURRENCY = {"first-write": Concurrency.FIRST_WRITE, "last-write": Concurrency.LAST_WRITE}
CONSISTENCY = ("eventual", "strong")
BULK_PARALLELISM = 100


STATE = Block(
    "state",
    (500, "ERR_STATE_STORE_NOT_CONFIGURED", "state store is not configured"),
    (400, "ERR_STATE_STORE_NOT_FOUND", "state store {} is not found"),
)


def state_store(runtime: Runtime, name: str) -> StateStore:
    return lookup(runtime, STATE, runtime.state, name)


def state_key(runtime: Runtime, store: str, key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise malformed("key is required and must be a string")
    if "||" in key:
        raise malformed(f"input key/keyPrefix {key!r} can't contain '||'")
    return runtime.key_prefix(store) + key


def _options(value: Any) -> Concurrency:
    options = value if isinstance(value, dict) else {}
    if value is not None and not isinstance(value, dict):
        raise malformed("options must be an object")
    concurrency = options.get("concurrency") or "last-write"
    if concurrency not in CONCURRENCY:
        raise malformed(f"options.concurrency {concurrency!r} is not first-write or last-write")
    consistency = options.get("consistency") or "eventual"
    if consistency not in CONSISTENCY:
        raise malformed(f"options.consistency {consistency!r} is not eventual or strong")
    return CONCURRENCY[concurrency]


def ttl_of(metadata: dict[str, str]) -> float | None:
    raw = metadata.get("ttlInSeconds")
    if raw is None:
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise malformed(f"metadata.ttlInSeconds {raw!r} is not a whole number") from None
    if ttl < -1:
        raise malformed(f"metadata.ttlInSeconds {ttl} must be -1 (never expire) or more")
    return None if ttl == -1 else float(ttl)


def _etag(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise malformed("etag must be a string")
    return value


def _set_request(runtime: Runtime, store: str, item: Any, query: dict[str, str]) -> SetRequest:
    if not isinstance(item, dict):
        raise malformed("each state item must be an object with key and value")
    metadata = query | string_map(item.get("metadata"), "metadata")
    value = item.get("value")
    data = value.encode() if isinstance(value, str) and _raw(metadata) else _encode(value)
    return SetRequest(
        state_key(runtime, store, item.get("key")),
        data,
        _etag(item.get("etag")),
        _options(item.get("options")),
        ttl_of(metadata),
        metadata,
    )


def _raw(metadata: dict[str, str]) -> bool:
    return metadata.get("rawPayload") == "true"


def _encode(value: Any) -> bytes:
    return strict_json.dumps(value)


def require_feature(
    store: StateStore, feature: StateFeature, what: str, requests: Sequence[Any]
) -> None:
    if feature not in store.features and any(requests):
        raise ApiError(400, "ERR_STATE_SAVE", f"state store does not support {what}")


# The operations themselves, shared with the gRPC API (filters/http/runtime_grpc/state.py):
# both parse their own bodies into the component's requests and call these.


async def save_items(store: StateStore, name: str, requests: Sequence[SetRequest]) -> None:
    require_feature(store, StateFeature.TTL, "ttlInSeconds", [r.ttl is not None for r in requests])
    try:
        if len(requests) == 1:
            await store.set(requests[0])
        elif requests:
            await store.bulk_set(requests)
    except ComponentError as error:
        raise component_failed(
            error, "ERR_STATE_SAVE", f"failed saving state in state store {name}"
        ) from None


async def get_item(store: StateStore, name: str, key: str, full_key: str,
                   metadata: dict[str, str]) -> StateItem:  # fmt: skip
    try:
        return await store.get(full_key, metadata)
    except ComponentError as error:
        raise component_failed(
            error, "ERR_STATE_GET", f"fail to get {key} from state store {name}"
        ) from None


async def delete_item(store: StateStore, request: DeleteRequest, key: str) -> None:
    try:
        await store.delete(request)
    except ComponentError as error:
        raise component_failed(
            error, "ERR_STATE_DELETE", f"failed deleting state with key {key}"
        ) from None


async def bulk_get_items(store: StateStore, full_keys: list[str], metadata: dict[str, str],
                         parallelism: Any) -> list[StateItem | BaseException]:  # fmt: skip
    try:
        return list(await store.bulk_get(full_keys, metadata))
    except ComponentError:
        return await get_one_by_one(store, full_keys, metadata, parallelism)


def require_transactions(store: StateStore, name: str) -> None:
    if StateFeature.TRANSACTIONAL not in store.features:
        raise ApiError(
            500, "ERR_STATE_STORE_NOT_SUPPORTED", f"state store {name} doesn't support transaction"
        )


async def run_transaction(store: StateStore, operations: Sequence[StateOperation],
                          metadata: dict[str, str]) -> None:  # fmt: skip
    try:
        await store.transact(operations, metadata)
    except ComponentError as error:
        raise component_failed(
            error, "ERR_STATE_TRANSACTION", "error while executing state transaction"
        ) from None


def unknown_operation(kind: Any) -> ApiError:
    message = f"operation type {kind} not supported"
    return ApiError(400, "ERR_NOT_SUPPORTED_STATE_OPERATION", message)


# -- HTTP handlers -------------------------------------------------------------------------------


async def save(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = state_store(runtime, name)
    items = request.json()
    if not isinstance(items, list):
        raise malformed("the body must be a JSON array of state items")
    query = request.metadata()
    await save_items(store, name, [_set_request(runtime, name, item, query) for item in items])
    return NO_CONTENT


async def get(runtime: Runtime, request: ApiRequest, name: str, key: str) -> Answer:
    store = state_store(runtime, name)
    _consistency(request)
    item = await get_item(store, name, key, state_key(runtime, name, key), request.metadata())
    if item.value is None:
        return NO_CONTENT
    headers = [] if item.etag is None else [(b"etag", item.etag.encode())]
    if item.metadata:
        headers += [(b"metadata." + k.encode(), v.encode()) for k, v in item.metadata.items()]
    return Answer(200, item.value, headers)


def _consistency(request: ApiRequest) -> None:
    for value in request.values("consistency"):
        if value not in CONSISTENCY:
            raise malformed(f"consistency {value!r} is not eventual or strong")


async def delete(runtime: Runtime, request: ApiRequest, name: str, key: str) -> Answer:
    store = state_store(runtime, name)
    concurrency = request.values("concurrency")
    options = {"concurrency": concurrency[-1]} if concurrency else None
    etag = request.header(b"if-match")
    delete_request = DeleteRequest(
        state_key(runtime, name, key), _etag(etag), _options(options), request.metadata()
    )
    await delete_item(store, delete_request, key)
    return NO_CONTENT


async def bulk_get(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = state_store(runtime, name)
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise malformed('the body must be {"keys": [...], "parallelism": n}')
    keys: list[str] = body["keys"]
    full_keys = [state_key(runtime, name, key) for key in keys]
    items = await bulk_get_items(store, full_keys, request.metadata(), body.get("parallelism"))
    answer = []
    for key, item in zip(keys, items, strict=True):
        entry: dict[str, Any] = {"key": key}
        if isinstance(item, BaseException):
            entry["error"] = str(item)
        elif item.value is not None:
            entry["data"] = embed(item.value)
            if item.etag is not None:
                entry["etag"] = item.etag
            if item.metadata:
                entry["metadata"] = dict(item.metadata)
        answer.append(entry)
    return json_answer(answer)


async def get_one_by_one(store: StateStore, keys: list[str], metadata: dict[str, str],
                         parallelism: Any) -> list[StateItem | BaseException]:  # fmt: skip
    """When the store's bulk read fails, Dapr answers per key: errors go in the entries."""
    limit = parallelism if isinstance(parallelism, int) and parallelism > 0 else BULK_PARALLELISM
    gate = asyncio.Semaphore(limit)

    async def one(key: str) -> StateItem:
        async with gate:
            return await store.get(key, metadata)

    return await asyncio.gather(*(one(key) for key in keys), return_exceptions=True)


OPERATIONS = ("upsert", "delete")


def _operation(runtime: Runtime, store: str, entry: Any) -> StateOperation:
    if not isinstance(entry, dict):
        raise malformed("each operation must be an object with operation and request")
    kind = entry.get("operation")
    if kind not in OPERATIONS:
        raise unknown_operation(kind)
    item = entry.get("request")
    if kind == "upsert":
        return _set_request(runtime, store, item, {})
    if not isinstance(item, dict):
        raise malformed("a delete operation's request must be an object with a key")
    return DeleteRequest(
        state_key(runtime, store, item.get("key")),
        _etag(item.get("etag")),
        _options(item.get("options")),
        string_map(item.get("metadata"), "metadata"),
    )


async def transaction(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = state_store(runtime, name)
    require_transactions(store, name)
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        raise malformed('the body must be {"operations": [...], "metadata": {...}}')
    operations = [_operation(runtime, name, entry) for entry in body["operations"]]
    metadata = request.metadata() | string_map(body.get("metadata"), "metadata")
    await run_transaction(store, operations, metadata)
    return NO_CONTENT


async def query(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    """No mecha store implements Dapr's alpha query language yet: Dapr's answer for that."""
    state_store(runtime, name)
    raise ApiError(
        500, "ERR_STATE_STORE_NOT_SUPPORTED", f"state store {name} does not support querying"
    )
