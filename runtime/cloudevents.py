"""CloudEvents 1.0 envelopes as Dapr builds them for pub/sub.

JSON is read and written by protocols/strict_json.py: an event is always valid JSON. A
payload said to be JSON that is not (bad syntax, NaN, nested too deep, ...) travels as
text, as Dapr does; a body said to be a CloudEvent must be a JSON object.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from protocols import strict_json

CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPE = "com.dapr.event.sent"


class InvalidCloudEvent(ValueError):
    """A publisher's `application/cloudevents+json` body that is not a JSON object."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def envelope(data: bytes, content_type: str, topic: str, pubsub: str, source: str,
             traceparent: str | None = None) -> bytes:  # fmt: skip
    """Wrap a payload (or complete a CloudEvent the publisher built) the way Dapr does;
    InvalidCloudEvent when the publisher's CloudEvent is no JSON object."""
    if content_type.startswith(CLOUDEVENT_CONTENT_TYPE):
        try:
            given = strict_json.loads(data)
        except strict_json.JsonError as error:
            raise InvalidCloudEvent(f"the CloudEvent is not valid JSON: {error}") from None
        if not isinstance(given, dict):
            raise InvalidCloudEvent("the CloudEvent is not a JSON object")
        return _complete(given, topic, pubsub, source, traceparent)
    event: dict[str, Any] = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": EVENT_TYPE,
        "datacontenttype": content_type or "text/plain", "topic": topic, "pubsubname": pubsub,
        "time": _now(),
    }  # fmt: skip
    _put_data(event, data, content_type)
    if traceparent:
        event["traceparent"] = event["traceid"] = traceparent
    return strict_json.dumps(event)


def _put_data(event: dict[str, Any], data: bytes, content_type: str) -> None:
    if "json" in content_type:
        try:
            event["data"] = strict_json.loads(data)
            return
        except strict_json.JsonError:
            pass
    try:
        event["data"] = data.decode("utf-8")
    except UnicodeDecodeError:
        event["data_base64"] = base64.b64encode(data).decode()


def _complete(event: dict[str, Any], topic: str, pubsub: str, source: str,
              traceparent: str | None) -> bytes:  # fmt: skip
    event.setdefault("specversion", "1.0")
    event.setdefault("id", str(uuid.uuid4()))
    event.setdefault("source", source)
    event.setdefault("type", EVENT_TYPE)
    event.setdefault("datacontenttype", "application/json")
    event.setdefault("time", _now())
    event["topic"] = topic
    event["pubsubname"] = pubsub
    if traceparent:
        event.setdefault("traceparent", traceparent)
        event.setdefault("traceid", traceparent)
    return strict_json.dumps(event)


def parse(data: bytes) -> dict[str, Any] | None:
    """The CloudEvent in `data`, or None for a raw payload."""
    try:
        event = strict_json.loads(data)
    except strict_json.JsonError:
        return None
    if isinstance(event, dict) and "specversion" in event and "id" in event:
        return event
    return None


def wrap_raw(data: bytes, topic: str, pubsub: str, source: str) -> dict[str, Any]:
    """A raw (rawPayload) message delivered to a subscriber that expects CloudEvents."""
    event: dict[str, Any] = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": EVENT_TYPE,
        "datacontenttype": "application/octet-stream", "topic": topic, "pubsubname": pubsub,
        "time": _now(), "data_base64": base64.b64encode(data).decode(),
    }  # fmt: skip
    return event
