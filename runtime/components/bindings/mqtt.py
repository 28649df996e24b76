"""`bindings.mqtt3`: an MQTT topic as an input and an output binding (Dapr's `bindings.mqtt3`).

Output: operation `create` publishes the request's data to `topic` (request metadata may set
`topic` and `retain` for one message). Input: every message of `topic` (a filter, wildcards
allowed) becomes a BindingEvent, with the message's topic in its `topic` metadata; a QoS >= 1
message is acknowledged only when the handler returned. A handler that raises is called again
after `backOffInitialInterval` (doubled, at most `backOffMaxInterval`), `backOffMaxRetries`
times (Dapr's default 0: not again; -1: without limit); then the message stays
unacknowledged, and the broker sends it again when the session reconnects (with
`cleanSession: false`, the default). One connection, client id `consumerID`, serves both
directions. The MQTT client and what MQTT can promise are described in
runtime/components/pubsub/mqtt.py.

Metadata (Dapr's names, unless marked *mecha*): `url` (required), `topic` (required),
`consumerID` (the client id; default a random one, so nothing survives a restart), `qos`
(*mecha*: default 1), `retain`, `cleanSession`, `direction` (`input`, `output` or both, the
default), `backOffMaxRetries`, `backOffInitialInterval` (100ms), `backOffMaxInterval` (5s), and
`protocolVersion`, `keepAlive`, `timeout` as for `pubsub.mqtt3`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from protocols.mqtt import NO_PROPERTIES
from runtime.components.api import (
    BindingEvent,
    BindingHandler,
    BindingResponse,
    Delivery,
    Message,
    Metadata,
)
from runtime.components.errors import BadMetadata, ComponentError, NotSupported
from runtime.components.metadata import duration, integer
from runtime.components.mqtt_client import MqttSettings, parse_settings
from runtime.components.pubsub.mqtt import Consumer, Member

log = logging.getLogger("mecha.bindings.mqtt")


class MqttBinding:
    operations = ("create",)

    def __init__(self) -> None:
        self.settings = MqttSettings()
        self.topic = ""
        self._input = self._output = True
        self._consumer: Consumer | None = None
        self._reader: Member | None = None

    async def init(self, metadata: Metadata) -> None:
        self.topic = metadata.get("topic", "").strip()
        if not self.topic:
            raise BadMetadata("topic", "required: the topic to read from and publish to")
        directions = {d.strip() for d in metadata.get("direction", "").split(",") if d.strip()}
        if not directions <= {"input", "output"}:
            raise BadMetadata("direction", "input, output or both")
        self._input = not directions or "input" in directions
        self._output = not directions or "output" in directions
        retries = integer(metadata, "backOffMaxRetries", 0)
        settings = parse_settings(metadata)
        self.settings = replace(
            settings,
            initial=duration(metadata, "backOffInitialInterval", 0.1),
            maximum=duration(metadata, "backOffMaxInterval", 5.0),
        )
        consumer = Consumer(self.settings, self.topic, settings.client_id,
                            settings.clean_session, None if retries < 0 else retries)  # fmt: skip
        await consumer.client.start()
        self._consumer = consumer

    async def ping(self) -> None:
        if self._consumer is None or not self._consumer.client.connected:
            raise ComponentError("mqtt binding: not connected to the broker")

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    # -- output -------------------------------------------------------------------------------

    async def invoke(self, operation: str, data: bytes, metadata: Metadata) -> BindingResponse:
        if operation not in self.operations:
            raise NotSupported(f"operation {operation!r}", "bindings.mqtt3")
        if not self._output:
            raise NotSupported("output (direction is input)", "bindings.mqtt3")
        consumer = self._connected()
        topic = metadata.get("topic") or self.topic
        retain = metadata.get("retain", "").strip().lower()
        flag = retain in ("true", "1") if retain else self.settings.retain
        await consumer.client.publish(topic, data, self.settings.qos, flag, NO_PROPERTIES)
        return BindingResponse()

    # -- input --------------------------------------------------------------------------------

    async def read(self, handler: BindingHandler) -> _Reading:
        consumer = self._connected()
        if not self._input:
            return _Reading(None)
        if self._reader is not None:
            raise ComponentError("mqtt binding: already read by another handler", retryable=False)
        await consumer.client.subscribe(self.topic, self.settings.qos)

        async def deliver(message: Message) -> Delivery:
            event = BindingEvent(message.data, {"topic": message.topic})
            await handler(event)  # an exception: retried by the consumer, or left unacked
            return Delivery.SUCCESS

        self._reader = Member(consumer, deliver, self._stop_reading)
        consumer.members.add(self._reader)
        return _Reading(self._reader)

    async def _stop_reading(self, member: Member) -> None:
        member.consumer.members.discard(member)
        if self._reader is member:
            self._reader = None
            if member.consumer.client.clean_session:
                with contextlib.suppress(ComponentError):
                    await member.consumer.client.unsubscribe(self.topic)

    def _connected(self) -> Consumer:
        if self._consumer is None:
            raise ComponentError("mqtt binding is not initialised (or closed)")
        return self._consumer


class _Reading:
    """What read() returns: cancel() stops the handler (a direction without input: nothing)."""

    def __init__(self, member: Member | None) -> None:
        self._member = member

    async def cancel(self) -> None:
        if self._member is not None:
            await self._member.cancel()
