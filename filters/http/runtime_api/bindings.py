"""`/v1.0/bindings/{name}`: invoke an output binding with `{data, metadata, operation}`.

The binding's answer is the response body (204 when it has none); its metadata comes back
as `metadata.<key>` headers, as Dapr sends them.
"""

from __future__ import annotations

from filters.http.runtime_api.base import (
    Answer,
    ApiError,
    ApiRequest,
    Block,
    data_bytes,
    lookup,
    malformed,
    string_map,
)
from protocols.http.headers import Headers
from runtime.components.api import BindingResponse
from runtime.components.errors import ComponentError
from runtime.runtime import Runtime

CODE = "ERR_INVOKE_OUTPUT_BINDING"
BINDINGS = Block(
    "bindings",
    (500, CODE, "no output bindings are configured"),
    (500, CODE, "couldn't find output binding {}"),
)


async def invoke(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    lookup(runtime, BINDINGS, runtime.output_binding, name)
    body = request.json()
    if not isinstance(body, dict):
        raise malformed('the body must be {"data": ..., "metadata": {...}, "operation": "..."}')
    operation = body.get("operation")
    if not isinstance(operation, str) or not operation:
        raise malformed("operation is required")
    metadata = request.metadata() | string_map(body.get("metadata"), "metadata")
    data = data_bytes(body["data"]) if body.get("data") is not None else b""
    response = await invoke_output(runtime, name, operation, data, metadata)
    headers = Headers(
        [(b"metadata." + k.encode(), v.encode()) for k, v in response.metadata.items()]
    )
    if not response.data:
        return Answer(204, b"", headers)
    return Answer(200, response.data, headers)


async def invoke_output(runtime: Runtime, name: str, operation: str, data: bytes,
                        metadata: dict[str, str]) -> BindingResponse:  # fmt: skip
    """The output binding's answer; shared with the gRPC API's InvokeBinding."""
    binding = lookup(runtime, BINDINGS, runtime.output_binding, name)
    if not operation:
        raise malformed("operation is required")
    if operation not in binding.operations:
        supported = ", ".join(binding.operations)
        raise ApiError(
            500,
            CODE,
            f"binding {name} does not support operation {operation}. "
            f"supported operations: {supported}",
        )
    try:
        return await binding.invoke(operation, data, metadata)
    except ComponentError as error:
        raise ApiError(500, CODE, f"error when invoke output binding {name}: {error}") from None
