"""`POST /v1.0-alpha1/sequencer/{store}` with `{"key": ...}`: Layotto's GetNextId over HTTP.

Answers `{"nextId": "<n>"}`; ids are strictly increasing per key. The id is a string, as the
protobuf JSON mapping writes int64, so JavaScript clients do not lose precision.
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
    string_map,
)
from runtime.components.errors import ComponentError
from runtime.runtime import Runtime

INCREMENTS = ("WEAK", "STRONG")
SEQUENCERS = Block(
    "sequencer",
    (500, "ERR_SEQUENCER_STORE_NOT_CONFIGURED", "sequencer store is not configured"),
    (400, "ERR_SEQUENCER_STORE_NOT_FOUND", "sequencer store {} not found"),
)


async def next_id(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    lookup(runtime, SEQUENCERS, runtime.sequencer, name)
    body = request.json()
    if not isinstance(body, dict):
        raise malformed('the body must be {"key": "...", "options": {...}, "metadata": {...}}')
    options = body.get("options") or {}
    increment = options.get("increment", "WEAK") if isinstance(options, dict) else None
    if increment not in INCREMENTS:
        raise malformed(f"options.increment {increment!r} is not WEAK or STRONG")
    metadata = request.metadata() | string_map(body.get("metadata"), "metadata")
    value = await take_next_id(runtime, name, body.get("key"), metadata)
    return json_answer({"nextId": str(value)})


async def take_next_id(runtime: Runtime, name: str, key: Any, metadata: dict[str, str]) -> int:
    """The next id of `key`; shared with mecha's gRPC GetNextId."""
    store = lookup(runtime, SEQUENCERS, runtime.sequencer, name)
    if not isinstance(key, str) or not key:
        raise malformed("key is required and must be a string")
    if "||" in key:
        raise malformed(f"key {key!r} can't contain '||'")
    try:
        return await store.next_id(runtime.key_prefix(name) + key, metadata)
    except ComponentError as error:
        raise ApiError(
            500, "ERR_SEQUENCER_NEXT_ID", f"failed to get next id for {key}: {error}"
        ) from None
