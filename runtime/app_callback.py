"""Deliveries to an app that speaks gRPC (`app_protocol: grpc`): Dapr's AppCallback service.

The app's ListTopicSubscriptions gives its programmatic subscriptions, OnTopicEvent receives
pub/sub events and OnBindingEvent input-binding events, each a unary call over the app
channel (an HTTP/2 cluster). Answers map as Dapr maps them: TopicEventResponse's SUCCESS /
RETRY / DROP; an UNIMPLEMENTED status drops the event, any other failure retries it.
`topic_event` is also what a streaming subscriber (SubscribeTopicEventsAlpha1) receives.
`on_invoke` is service invocation of the app, shared by the HTTP and gRPC APIs: the app's
status comes back as AppCallError, for each API to answer in its own way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError

from protocols import strict_json
from protocols.grpc.framing import encode_message, format_timeout
from protocols.grpc.status import StatusCode
from protocols.http.headers import Headers
from runtime.app_channel import AppCallError, AppChannel, grpc_reply
from runtime.components.api import BindingEvent, Message
from runtime.components.api import Delivery as Outcome
from runtime.components.errors import ComponentError
from runtime.config import SubscriptionSpec

SERVICE = "/dapr.proto.runtime.v1.AppCallback/"
CORE_FIELDS = frozenset(
    ("id", "source", "type", "specversion", "datacontenttype", "data", "data_base64")
)
NOT_FORWARDED = frozenset(
    (
        b"content-type",
        b"content-length",
        b"te",
        b"dapr-api-token",
        b"dapr-app-id",
        b"host",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"expect",
    )
)
"""Caller headers an invocation does not pass on to the app."""
NOT_RETURNED = frozenset(
    (
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
    )
)
"""The app's response headers an invocation does not pass back to the caller."""
NO_DEADLINE = 24 * 3600.0
"""Seconds an OnInvoke may take when neither the caller nor `runtime.invoke` sets a limit."""
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
    return strict_json.dumps(data)


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


# -- service invocation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoked:
    response: common_pb2.InvokeResponse
    metadata: list[tuple[bytes, bytes]]
    """The app's response headers, for the caller."""


async def on_invoke(
    app: AppChannel, message: common_pb2.InvokeRequest, caller: Iterable[tuple[bytes, bytes]],
    app_id: str, timeout: float | None,  # noqa: ASYNC109 - the call's deadline, sent to the app
    caller_id: str | None = None,
) -> Invoked:  # fmt: skip
    """The app's OnInvoke with `message` and the caller's headers as metadata. Raises
    AppCallError with the app's status, AppUnavailable (NoAnswer: no answer in time).
    `caller_id`: the calling app another sidecar named; None: this app calls itself."""
    limit = NO_DEADLINE if timeout is None else timeout
    headers = Headers([(name, value) for name, value in caller if _forwarded(name)])
    headers.set(b"content-type", b"application/grpc")
    headers.set(b"te", b"trailers")
    headers.set(b"grpc-timeout", format_timeout(limit))
    headers.set(b"dapr-caller-app-id", (caller_id or app_id).encode("latin-1"))
    headers.set(b"dapr-callee-app-id", app_id.encode("latin-1"))
    payload = encode_message(message.SerializeToString())
    answer = await app.request("POST", SERVICE + "OnInvoke", payload, headers, limit)
    raw = grpc_reply(answer)
    try:
        response = common_pb2.InvokeResponse.FromString(raw)
    except DecodeError:
        raise AppCallError(
            StatusCode.INTERNAL, "OnInvoke: the answer is not an InvokeResponse"
        ) from None
    metadata = [(name, value) for name, value in answer.headers if _returned(name)]
    return Invoked(response, metadata)


def _forwarded(name: bytes) -> bool:
    return name not in NOT_FORWARDED and not name.startswith((b"grpc-", b":"))


def _returned(name: bytes) -> bool:
    return name not in NOT_RETURNED and name != b"content-type" and not name.startswith(b"grpc-")
