"""`/v1.0/publish/{pubsub}/{topic}` and `/v1.0-alpha1/publish/bulk/{pubsub}/{topic}`.

The body becomes a CloudEvent as Dapr builds it (or completes one the publisher built, for
`application/cloudevents+json`: one that is not a JSON object is a 400
ERR_PUBSUB_CLOUD_EVENTS_SER); `metadata.rawPayload=true` publishes it unwrapped. A
pub/sub component's `allowedTopics` and `publishingScopes` metadata limit what may be
published (403), as in Dapr.
"""

from __future__ import annotations

import asyncio
from typing import Any

from filters.http.runtime_api.base import (
    NO_CONTENT,
    Answer,
    ApiError,
    ApiRequest,
    Block,
    json_answer,
    lookup,
    malformed,
    string_map,
)
from protocols import strict_json
from runtime import cloudevents
from runtime.components.api import PubSub
from runtime.components.errors import ComponentError
from runtime.config import topic_allowed
from runtime.runtime import Runtime

PUBSUBS = Block(
    "pubsub",
    (400, "ERR_PUBSUB_NOT_CONFIGURED", "no pubsub is configured"),
    (400, "ERR_PUBSUB_NOT_FOUND", "pubsub {} is not found"),
)


def checked_pubsub(runtime: Runtime, name: str, topic: str) -> PubSub:
    """The named pub/sub, if this app may publish to `topic` there."""
    pubsub = lookup(runtime, PUBSUBS, runtime.pubsub, name)
    if not topic:
        raise ApiError(404, "ERR_TOPIC_NAME_EMPTY", f"topic is empty in pubsub {name}")
    if not _allowed(runtime, name, topic):
        raise ApiError(
            403,
            "ERR_PUBSUB_FORBIDDEN",
            f"topic {topic} is not allowed for app id {runtime.config.app_id}",
        )
    return pubsub


def _allowed(runtime: Runtime, name: str, topic: str) -> bool:
    metadata = runtime.components[name].spec.metadata
    return topic_allowed(metadata, runtime.config.app_id, topic, "publishingScopes")


def event_bytes(runtime: Runtime, pubsub: str, topic: str, data: bytes, content_type: str,
                metadata: dict[str, str], traceparent: str | None) -> bytes:  # fmt: skip
    """What goes to the broker: a CloudEvent as Dapr builds it, or the raw payload."""
    if metadata.get("rawPayload") == "true":
        return data
    try:
        return cloudevents.envelope(
            data, content_type, topic, pubsub, runtime.config.app_id, traceparent
        )
    except cloudevents.InvalidCloudEvent as error:
        # Dapr's code; 400 because the request is at fault (Dapr's HTTP API says 500).
        message = f"cannot create cloudevent: {error}"
        raise ApiError(400, "ERR_PUBSUB_CLOUD_EVENTS_SER", message) from None


async def publish_event(pubsub: PubSub, name: str, topic: str, event: bytes,
                        metadata: dict[str, str]) -> None:  # fmt: skip
    try:
        await pubsub.publish(topic, event, metadata)
    except ComponentError as error:
        raise ApiError(
            500,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            f"error when publish to topic {topic} in pubsub {name}: {error}",
        ) from None


async def publish(runtime: Runtime, request: ApiRequest, name: str, topic: str) -> Answer:
    pubsub = checked_pubsub(runtime, name, topic)
    metadata = request.metadata()
    content_type = request.header(b"content-type") or "text/plain"
    traceparent = request.header(b"traceparent")
    event = event_bytes(runtime, name, topic, request.body, content_type, metadata, traceparent)
    await publish_event(pubsub, name, topic, event, metadata)
    return NO_CONTENT


BulkEntry = tuple[str, bytes, str, dict[str, str]]
"""(entryId, payload, content type, metadata) of one bulk entry."""


def _entry(value: Any) -> BulkEntry:
    if not isinstance(value, dict):
        raise malformed("each entry must be an object with entryId, event and contentType")
    entry_id = value.get("entryId")
    if not isinstance(entry_id, str) or not entry_id:
        raise malformed("entryId is required and must be a non-empty string")
    content_type = value.get("contentType") or "application/json"
    if not isinstance(content_type, str):
        raise malformed(f"entry {entry_id}: contentType must be a string")
    event = value.get("event")
    if isinstance(event, str) and "json" not in content_type:
        payload = event.encode()
    else:
        payload = strict_json.dumps(event)
    return entry_id, payload, content_type, string_map(value.get("metadata"), "metadata")


async def bulk_publish(runtime: Runtime, request: ApiRequest, name: str, topic: str) -> Answer:
    pubsub = checked_pubsub(runtime, name, topic)
    entries = request.json(f"the bulk request for topic {topic} pubsub {name}",
                           "ERR_PUBSUB_EVENTS_SER")  # fmt: skip
    if not isinstance(entries, list):
        raise malformed("the body must be a JSON array of entries")
    parsed = [_entry(entry) for entry in entries]
    ids = [entry[0] for entry in parsed]
    if len(set(ids)) != len(ids):
        raise malformed("entryId must be unique within a bulk publish")
    common = request.metadata()
    traceparent = request.header(b"traceparent")
    entries_out = [(entry_id, data, ctype, common | own) for entry_id, data, ctype, own in parsed]
    failed = await publish_entries(runtime, pubsub, name, topic, entries_out, traceparent)
    if not failed:
        return NO_CONTENT
    body = {
        "failedEntries": [{"entryId": entry_id, "error": error} for entry_id, error in failed],
        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
    }
    return json_answer(body, 500)


async def publish_entries(runtime: Runtime, pubsub: PubSub, name: str, topic: str,
                          entries: list[BulkEntry], traceparent: str | None,
                          ) -> list[tuple[str, str]]:  # fmt: skip
    """Publish each entry (concurrently); (entryId, error) of the ones that failed. An entry
    that cannot become an event fails the whole request, before anything is published."""
    events = [
        (event_bytes(runtime, name, topic, data, content_type, metadata, traceparent), metadata)
        for _, data, content_type, metadata in entries
    ]
    results = await asyncio.gather(
        *(pubsub.publish(topic, event, metadata) for event, metadata in events),
        return_exceptions=True,
    )
    return [
        (entry[0], str(result))
        for entry, result in zip(entries, results, strict=True)
        if result is not None
    ]
