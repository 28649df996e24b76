"""State over gRPC: GetState, GetBulkState, SaveState, DeleteState, DeleteBulkState,
ExecuteStateTransaction and QueryStateAlpha1, on the HTTP API's shared operations.

Values are bytes, stored as given (the HTTP API stores JSON text; both read back what is
stored). Keys get the same `<app id>||` prefix, so both APIs see the same items.
"""

from __future__ import annotations

from collections.abc import Mapping

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2
from google.protobuf import empty_pb2

from filters.http.runtime_api import state as shared
from filters.http.runtime_grpc.context import Context
from filters.http.runtime_grpc.errors import RpcError
from protocols.grpc.status import StatusCode
from runtime.components.api import Concurrency, DeleteRequest, SetRequest, StateOperation

EMPTY = empty_pb2.Empty()
FIRST_WRITE = common_pb2.StateOptions.StateConcurrency.CONCURRENCY_FIRST_WRITE


def _concurrency(item: common_pb2.StateItem | state_pb2.DeleteStateRequest) -> Concurrency:
    if item.HasField("options") and item.options.concurrency == FIRST_WRITE:
        return Concurrency.FIRST_WRITE
    return Concurrency.LAST_WRITE


def _etag(item: common_pb2.StateItem | state_pb2.DeleteStateRequest) -> str | None:
    return item.etag.value or None if item.HasField("etag") else None


def _set_request(
    ctx: Context, store: str, item: common_pb2.StateItem, common: Mapping[str, str]
) -> SetRequest:
    metadata = {**common, **item.metadata}
    return SetRequest(
        shared.state_key(ctx.runtime, store, item.key),
        item.value,
        _etag(item),
        _concurrency(item),
        shared.ttl_of(metadata),
        metadata,
    )


def _delete_request(ctx: Context, store: str, item: common_pb2.StateItem) -> DeleteRequest:
    return DeleteRequest(
        shared.state_key(ctx.runtime, store, item.key),
        _etag(item),
        _concurrency(item),
        dict(item.metadata),
    )


async def get_state(ctx: Context, request: state_pb2.GetStateRequest) -> state_pb2.GetStateResponse:
    store = shared.state_store(ctx.runtime, request.store_name)
    full_key = shared.state_key(ctx.runtime, request.store_name, request.key)
    item = await shared.get_item(
        store, request.store_name, request.key, full_key, dict(request.metadata)
    )
    if item.value is None:
        return state_pb2.GetStateResponse()
    return state_pb2.GetStateResponse(
        data=item.value, etag=item.etag or "", metadata=dict(item.metadata)
    )


async def get_bulk_state(
    ctx: Context, request: state_pb2.GetBulkStateRequest
) -> state_pb2.GetBulkStateResponse:
    name = request.store_name
    store = shared.state_store(ctx.runtime, name)
    keys = list(request.keys)
    full_keys = [shared.state_key(ctx.runtime, name, key) for key in keys]
    items = await shared.bulk_get_items(
        store, full_keys, dict(request.metadata), request.parallelism
    )
    answer = state_pb2.GetBulkStateResponse()
    for key, item in zip(keys, items, strict=True):
        entry = answer.items.add(key=key)
        if isinstance(item, BaseException):
            entry.error = str(item)
        elif item.value is not None:
            entry.data = item.value
            entry.etag = item.etag or ""
            entry.metadata.update(item.metadata)
    return answer


async def save_state(ctx: Context, request: state_pb2.SaveStateRequest) -> empty_pb2.Empty:
    name = request.store_name
    store = shared.state_store(ctx.runtime, name)
    requests = [_set_request(ctx, name, item, {}) for item in request.states]
    await shared.save_items(store, name, requests)
    return EMPTY


async def delete_state(ctx: Context, request: state_pb2.DeleteStateRequest) -> empty_pb2.Empty:
    name = request.store_name
    store = shared.state_store(ctx.runtime, name)
    delete = DeleteRequest(
        shared.state_key(ctx.runtime, name, request.key),
        _etag(request),
        _concurrency(request),
        dict(request.metadata),
    )
    await shared.delete_item(store, delete, request.key)
    return EMPTY


async def delete_bulk_state(
    ctx: Context, request: state_pb2.DeleteBulkStateRequest
) -> empty_pb2.Empty:
    """One by one, as Dapr does: the first failure ends the call."""
    name = request.store_name
    store = shared.state_store(ctx.runtime, name)
    deletes = [_delete_request(ctx, name, item) for item in request.states]
    for delete, item in zip(deletes, request.states, strict=True):
        await shared.delete_item(store, delete, item.key)
    return EMPTY


async def execute_transaction(
    ctx: Context, request: state_pb2.ExecuteStateTransactionRequest
) -> empty_pb2.Empty:
    name = request.storeName
    store = shared.state_store(ctx.runtime, name)
    shared.require_transactions(store, name)
    operations: list[StateOperation] = []
    for operation in request.operations:
        kind = operation.operationType
        if kind == "upsert":
            operations.append(_set_request(ctx, name, operation.request, {}))
        elif kind == "delete":
            operations.append(_delete_request(ctx, name, operation.request))
        else:
            raise shared.unknown_operation(kind)
    await shared.run_transaction(store, operations, dict(request.metadata))
    return EMPTY


async def query_state(
    ctx: Context, request: state_pb2.QueryStateRequest
) -> state_pb2.QueryStateResponse:
    """No mecha store implements Dapr's query language yet: Dapr's answer for that."""
    shared.state_store(ctx.runtime, request.store_name)
    raise RpcError(
        StatusCode.INTERNAL,
        "state store does not support querying",
        "DAPR_STATE_QUERYING_NOT_SUPPORTED",
        {"errorCode": "ERR_STATE_STORE_NOT_SUPPORTED"},
    )
