"""SubscribeTopicEventsAlpha1: a pull-style subscription over one bidirectional stream.

The client's first message names the pub/sub and topic; the server answers with an initial
response and then sends each message as a TopicEventRequest, which the client acknowledges
with its id and SUCCESS / RETRY / DROP. The subscription is a runtime one like the others
(consumer group = app id, retries and dead letters, listed as STREAMING in the metadata).

Nothing unacknowledged is lost: when the stream ends (half-close, cancel, reset, deadline)
the subscription is cancelled first, and a message that was sent but not acknowledged goes
back to the component, which delivers it again (to the next subscriber of the group).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Final

from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2
from google.protobuf.message import Message as ProtoMessage

from filters.http.runtime_api import pubsub as shared
from filters.http.runtime_api.base import ApiError, lookup
from filters.http.runtime_grpc.context import Context, parse
from filters.http.runtime_grpc.errors import invalid
from runtime import cloudevents
from runtime.app_callback import topic_event
from runtime.components.api import Delivery as Outcome
from runtime.components.api import Message
from runtime.config import SubscriptionSpec

Request = pubsub_pb2.SubscribeTopicEventsRequestAlpha1
Response = pubsub_pb2.SubscribeTopicEventsResponseAlpha1
KIND: Final = "subscribe_topic_events_request_type"
OUTCOMES = {
    appcallback_pb2.TopicEventResponse.SUCCESS: Outcome.SUCCESS,
    appcallback_pb2.TopicEventResponse.RETRY: Outcome.RETRY,
    appcallback_pb2.TopicEventResponse.DROP: Outcome.DROP,
}


async def _initial(ctx: Context) -> pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1:
    raw = await ctx.call.recv()
    if raw is None:
        raise invalid("the stream ended before its initial request")
    request: pubsub_pb2.SubscribeTopicEventsRequestAlpha1 = parse(Request, raw)
    if request.WhichOneof(KIND) != "initial_request":
        raise invalid("the first message must be an initial request")
    initial = request.initial_request
    lookup(ctx.runtime, shared.PUBSUBS, ctx.runtime.pubsub, initial.pubsub_name)
    if not initial.topic:
        raise ApiError(
            404, "ERR_TOPIC_NAME_EMPTY", f"topic is empty in pubsub {initial.pubsub_name}"
        )
    return initial


async def subscribe_topic_events(ctx: Context) -> None:
    initial = await _initial(ctx)
    name, topic = initial.pubsub_name, initial.topic
    spec = SubscriptionSpec(
        pubsub=name,
        topic=topic,
        dead_letter_topic=initial.dead_letter_topic or None,
        metadata=dict(initial.metadata),
        source="SubscribeTopicEventsAlpha1",
    )
    raw = spec.metadata.get("rawPayload", "").lower() == "true"
    call = ctx.call
    pending: dict[str, asyncio.Future[Outcome]] = {}
    started = asyncio.Event()

    async def deliver(message: Message) -> Outcome:
        await started.wait()  # the initial response goes first
        event = cloudevents.parse(message.data)
        if event is None and not raw:
            event = cloudevents.wrap_raw(message.data, topic, name, ctx.runtime.config.app_id)
        request = topic_event(message, event, topic, name, "")
        if not request.id or request.id in pending:
            request.id = f"{request.id or 'event'}-{uuid.uuid4().hex[:12]}"
        acknowledged: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        pending[request.id] = acknowledged
        try:
            await call.drain()
            call.send(Response(event_message=request).SerializeToString())
            return await acknowledged
        finally:
            pending.pop(request.id, None)

    active = await ctx.runtime.delivery.subscribe_stream(spec, deliver)
    try:
        _send(
            ctx, Response(initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1())
        )
        started.set()
        while (raw_message := await call.recv()) is not None:
            message: pubsub_pb2.SubscribeTopicEventsRequestAlpha1 = parse(Request, raw_message)
            if message.WhichOneof(KIND) != "event_processed":
                raise invalid("only event_processed may follow the initial request")
            processed = message.event_processed
            future = pending.get(processed.id)
            if future is not None and not future.done():
                future.set_result(OUTCOMES.get(processed.status.status, Outcome.RETRY))
    finally:
        # Cancelling the subscription cancels a delivery waiting for its acknowledgement,
        # and the component keeps that message: it is not lost with the stream.
        await ctx.runtime.delivery.unsubscribe(active)


def _send(ctx: Context, message: ProtoMessage) -> None:
    ctx.call.send(message.SerializeToString())
