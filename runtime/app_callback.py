"""Deliveries to an app that speaks gRPC (`app_protocol: grpc`): Dapr's AppCallback service.

The app's ListTopicSubscriptions gives its programmatic subscriptions, OnTopicEvent receives
pub/sub events and OnBindingEvent input-binding events, each a unary call over the app
channel (an HTTP/2 cluster). Answers map as Dapr maps them: TopicEventResponse's SUCCESS /
RETRY / DROP; an UNIMPLEMENTED status drops the event, any other failure retries it.
`topic_event` is also what a streaming subscriber (SubscribeTopicEventsAlpha1) receives.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError

from protocols.grpc.status import StatusCode
from runtime.app_channel import AppCallError, AppChannel
from runtime.components.api import BindingEvent, Message
from runtime.components.api import Delivery as Outcome
from runtime.components.errors import ComponentError
from runtime.config import SubscriptionSpec

SERVICE = "/dapr.proto.runtime.v1.AppCallback/"
CORE_FIELDS = frozenset(
    ("id", "source", "type", "specversion", "datacontenttype", "data", "data_base64")
)
OUTCOMES = {
    appcallback_pb2.TopicEventResponse.SUCCESS: Outcome.SUCCESS,
    appcallback_pb2.TopicEventResponse.RETRY: Outcome.RETRY,
    appcallback_pb2.TopicEventResponse.DROP: Outcome.DROP,
}


def topic_event(message: Message, event: dict[str, Any] | None, topic: str, pubsub: str,
                path: str) -> appcallback_pb2.TopicEventRequest:  # fmt: skip
    """A message as Dapr hands it to gRPC subscribers: the CloudEvent's attributes, its data
    as bytes (JSON data re-serialised, data_base64 decoded), the rest as extensions."""
    request = appcallback_pb2.TopicEventRequest(topic=topic, pubsub_name=pubsub, path=path)
    if event is None:  # a raw payload (rawPayload subscription)
        request.data = message.data
        request.data_content_type = "application/octet-stream"
        request.id = message.id
        return request
    request.id = str(event.get("id", ""))
    request.source = str(event.get("source", ""))
    request.type = str(event.get("type", ""))
    request.spec_version = str(event.get("specversion", ""))
    request.data_content_type = str(event.get("datacontenttype", ""))
    request.data = _data(event)
    extensions = {k: v for k, v in event.items() if k not in CORE_FIELDS}
    try:
        request.extensions.update(extensions)
    except (TypeError, ValueError):  # one a Struct cannot hold: the event goes without them
        request.ClearField("extensions")
    return request


def _data(event: dict[str, Any]) -> bytes:
    encoded = event.get("data_base64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return encoded.encode()
    data = event.get("data")
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data, separators=(",", ":")).encode()


class AppCallback:
    def __init__(self, app: AppChannel) -> None:
        self.app = app

    async def subscriptions(self) -> list[SubscriptionSpec]:
        """The app's programmatic subscriptions (none when it does not implement the call)."""
        try:
            raw = await self.app.call_grpc(
                SERVICE + "ListTopicSubscriptions", empty_pb2.Empty().SerializeToString(), 5.0
            )
        except AppCallError as error:
            if error.code == StatusCode.UNIMPLEMENTED:
                return []
            raise
        try:
            answer = appcallback_pb2.ListTopicSubscriptionsResponse.FromString(raw)
        except DecodeError:
            raise AppCallError(StatusCode.INTERNAL, "ListTopicSubscriptions: bad reply") from None
        return [
            SubscriptionSpec(
                pubsub=entry.pubsub_name,
                topic=entry.topic,
                route=entry.routes.default,
                rules=tuple((rule.match, rule.path) for rule in entry.routes.rules),
                dead_letter_topic=entry.dead_letter_topic or None,
                metadata=dict(entry.metadata),
                source="app ListTopicSubscriptions",
            )
            for entry in answer.subscriptions
            if entry.pubsub_name and entry.topic
        ]

    async def deliver(self, spec: SubscriptionSpec, message: Message,
                      event: dict[str, Any] | None, path: str) -> Outcome:  # fmt: skip
        request = topic_event(message, event, spec.topic, spec.pubsub, path)
        try:
            raw = await self.app.call_grpc(SERVICE + "OnTopicEvent", request.SerializeToString())
        except AppCallError as error:
            return Outcome.DROP if error.code == StatusCode.UNIMPLEMENTED else Outcome.RETRY
        try:
            answer = appcallback_pb2.TopicEventResponse.FromString(raw)
        except DecodeError:  # a reply that is not a TopicEventResponse: not acknowledged
            return Outcome.RETRY
        return OUTCOMES.get(answer.status, Outcome.RETRY)

    async def binding(self, name: str, event: BindingEvent) -> None:
        request = appcallback_pb2.BindingEventRequest(
            name=name, data=event.data, metadata={k: str(v) for k, v in event.metadata.items()}
        )
        try:
            await self.app.call_grpc(SERVICE + "OnBindingEvent", request.SerializeToString())
        except AppCallError as error:
            raise ComponentError(f"the app failed binding event {name}: {error}") from None
