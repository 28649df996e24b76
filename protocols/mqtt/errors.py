"""The one error type of the MQTT codec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.errors import ProtocolError
from protocols.mqtt.reason_codes import ReasonCode, v311_connack_code

if TYPE_CHECKING:
    from protocols.mqtt.packets import Packet

MALFORMED = ReasonCode.MALFORMED_PACKET
PROTOCOL = ReasonCode.PROTOCOL_ERROR


class MqttError(ProtocolError):
    """Input the MQTT decoder refuses.

    `reason_code` is the MQTT 5 reason code to answer with: a v5 server sends it in CONNACK
    (while connecting) or DISCONNECT and closes; `v311_connack_code` is what a 3.1.1 server
    answers a refused CONNECT with (None: just close). `packets` holds what the same `feed`
    call decoded before the error, in order, so a proxy can still act on them.
    """

    def __init__(self, reason: str, reason_code: int = MALFORMED) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.packets: list[Packet] = []

    @property
    def v311_connack_code(self) -> int | None:
        return v311_connack_code(self.reason_code)

    def __repr__(self) -> str:
        return f"MqttError({self.reason!r}, 0x{self.reason_code:02X})"


def malformed(reason: str) -> MqttError:
    return MqttError(reason, MALFORMED)


def protocol_error(reason: str) -> MqttError:
    return MqttError(reason, PROTOCOL)
