"""PublishEvent and BulkPublishEvent (and its Alpha1 name) over gRPC.

The payload becomes a CloudEvent exactly as over HTTP (`data_content_type` plays the
HTTP Content-Type; `text/plain` when empty, as Dapr defaults it).
"""

from __future__ import annotations

from dapr.proto.runtime.v1 import pubsub_pb2
from google.protobuf import empty_pb2

from filters.http.runtime_api import pubsub as shared
from filters.http.runtime_api.base import malformed
from filters.http.runtime_grpc.context import Context

EMPTY = empty_pb2.Empty()


async def publish_event(ctx: Context, request: pubsub_pb2.PublishEventRequest) -> empty_pb2.Empty:
    name, topic = request.pubsub_name, request.topic
    pubsub = shared.checked_pubsub(ctx.runtime, name, topic)
    metadata = dict(request.metadata)
    content_type = request.data_content_type or "text/plain"
    event = shared.event_bytes(
        ctx.runtime, name, topic, request.data, content_type, metadata, ctx.header(b"traceparent")
    )
    await shared.publish_event(pubsub, name, topic, event, metadata)
    return EMPTY


async def bulk_publish(
    ctx: Context, request: pubsub_pb2.BulkPublishRequest
) -> pubsub_pb2.BulkPublishResponse:
    """Failed entries are listed in the answer (its status stays OK), as Dapr's gRPC API does."""
    name, topic = request.pubsub_name, request.topic
    pubsub = shared.checked_pubsub(ctx.runtime, name, topic)
    ids = [entry.entry_id for entry in request.entries]
    if not all(ids):
        raise malformed("entryId is required and must be a non-empty string")
    if len(set(ids)) != len(ids):
        raise malformed("entryId must be unique within a bulk publish")
    common = dict(request.metadata)
    entries: list[shared.BulkEntry] = [
        (
            entry.entry_id,
            entry.event,
            entry.content_type or "application/json",
            common | dict(entry.metadata),
        )
        for entry in request.entries
    ]
    failed = await shared.publish_entries(
        ctx.runtime, pubsub, name, topic, entries, ctx.header(b"traceparent")
    )
    answer = pubsub_pb2.BulkPublishResponse()
    for entry_id, error in failed:
        answer.failedEntries.add(entry_id=entry_id, error=error)
    return answer
