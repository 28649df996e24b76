"""Packets -> bytes: `encode(packet, version)` for every control packet, 3.1.1 (4) or 5.

For a proxy answering locally (CONNACK with a reason code, SUBACK with failures,
DISCONNECT, PUBACK, ...) and for tests. `raw` is ignored: a packet is always encoded from
its fields. What cannot be said in the requested version (properties or a non-zero PUBACK
reason code in 3.1.1, AUTH in 3.1.1, a CONNECT whose `version` differs), values that do
not fit their fields and what the spec forbids a sender (a wildcard in a topic name, an
invalid filter, a property out of range, ...) raise ValueError: they are programming
errors, not input. So what `encode` returns the decoder accepts, but for the rules that
depend on the direction or the session (a client's PUBLISH carries no Subscription
Identifier, a server's DISCONNECT no Session Expiry Interval, ...).

v5 packets use the spec's short forms: a PUBACK-family packet with reason code 0 and no
properties is just the packet identifier, a DISCONNECT or AUTH with reason code 0 and no
properties is empty, and a reason code without properties omits the Property Length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocols.mqtt import reason_codes as rc
from protocols.mqtt.packets import (
    NO_PROPERTIES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from protocols.mqtt.properties import (
    MAX_VARINT,
    WILL,
    binary,
    encode_properties,
    uint,
    utf8,
    varint,
)
from protocols.mqtt.topics import SHARE_PREFIX, is_topic_filter, is_topic_name

P = PacketType
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"


def encode(packet: Packet, version: int) -> bytes:
    """The bytes of `packet` in MQTT 3.1.1 (`version=4`) or 5 (`version=5`)."""
    if version != 4 and version != 5:
        raise ValueError(f"MQTT protocol level must be 4 or 5, not {version}")
    first, body = _ENCODERS[type(packet)](packet, version)
    size = len(body)
    if size < 0x80:
        return bytes((first, size)) + body
    if size > MAX_VARINT:
        raise ValueError(f"packet body of {size} bytes is larger than MQTT allows")
    return bytes((first,)) + varint(size) + body


def _props(props: Properties, kind: int, version: int) -> bytes:
    if version == 5:
        return encode_properties(props, kind)
    if props:
        raise ValueError("properties need MQTT 5")
    return b""


def _packet_id(packet_id: int) -> bytes:
    if not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier {packet_id} is not in 1..65535")
    return packet_id.to_bytes(2, "big")


def _qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos} is not 0, 1 or 2")
    return qos


def _topic_name(topic: str) -> None:
    if not is_topic_name(topic):
        raise ValueError(f"invalid topic name {topic[:40]!r}")


def _topic_filter(topic_filter: str, version: int) -> str:
    if not is_topic_filter(topic_filter, shared=version == 5):
        raise ValueError(f"invalid topic filter {topic_filter[:40]!r}")
    return topic_filter


def _codes(codes: tuple[int, ...], valid: frozenset[int], what: str) -> bytes:
    if not codes or not valid.issuperset(codes):
        raise ValueError(f"{what} needs one or more of its reason codes, not {codes}")
    return bytes(codes)


def _connect(packet: Connect, version: int) -> tuple[int, bytes]:
    if packet.version != version:
        raise ValueError(f"a version {packet.version} CONNECT encoded as version {version}")
    if version == 4 and not packet.client_id and not packet.clean_start:
        raise ValueError("an MQTT 3.1.1 empty client identifier needs clean start")
    will = packet.will
    flags = 0x02 if packet.clean_start else 0
    parts = [b"\x00\x04MQTT", bytes((version,)), b"", uint(packet.keep_alive, 2)]
    parts.append(_props(packet.properties, P.CONNECT, version))
    parts.append(utf8(packet.client_id))
    if will is not None:
        flags |= 0x04 | _qos(will.qos) << 3 | (0x20 if will.retain else 0)
        _topic_name(will.topic)
        parts += (_props(will.properties, WILL, version), utf8(will.topic), binary(will.payload))
    if packet.username is not None:
        flags |= 0x80
        parts.append(utf8(packet.username))
    if packet.password is not None:
        if version == 4 and packet.username is None:
            raise ValueError("an MQTT 3.1.1 password needs a username")
        flags |= 0x40
        parts.append(binary(packet.password))
    parts[2] = bytes((flags,))
    return 0x10, b"".join(parts)


def _connack(packet: Connack, version: int) -> tuple[int, bytes]:
    valid = rc.CONNACK if version == 5 else rc.V311_CONNACK
    if packet.reason_code not in valid:
        raise ValueError(f"0x{packet.reason_code:02X} is not a version {version} CONNACK code")
    if packet.session_present and packet.reason_code:
        raise ValueError("session present in a refusing CONNACK")
    flags = b"\x01" if packet.session_present else b"\x00"
    code = bytes((packet.reason_code,))
    return 0x20, flags + code + _props(packet.properties, P.CONNACK, version)


def _publish(packet: Publish, version: int) -> tuple[int, bytes]:
    qos = _qos(packet.qos)
    first = 0x30 | qos << 1 | (0x08 if packet.dup else 0) | (0x01 if packet.retain else 0)
    if packet.dup and not qos:
        raise ValueError("DUP with QoS 0")
    if packet.topic or version == 4 or packet.properties.topic_alias is None:
        _topic_name(packet.topic)
    parts = [utf8(packet.topic)]
    if qos:
        parts.append(_packet_id(packet.packet_id))
    parts.append(_props(packet.properties, P.PUBLISH, version))
    parts.append(packet.payload)
    return first, b"".join(parts)


def _ack(packet: Puback | Pubrec | Pubrel | Pubcomp, version: int) -> tuple[int, bytes]:
    type_ = P(packet.TYPE)
    first = type_ << 4 | (0x02 if type_ == P.PUBREL else 0)
    body = _packet_id(packet.packet_id)
    code, props = packet.reason_code, packet.properties
    if version == 4:
        if code:
            raise ValueError(f"a reason code in an MQTT 3.1.1 {type_.name}")
        return first, body + _props(props, type_, 4)
    valid = rc.PUBACK if type_ in (P.PUBACK, P.PUBREC) else rc.PUBREL
    if code not in valid:
        raise ValueError(f"0x{code:02X} is not a {type_.name} reason code")
    if props:
        return first, body + bytes((code,)) + encode_properties(props, type_)
    if code:
        return first, body + bytes((code,))
    return first, body


def _subscribe(packet: Subscribe, version: int) -> tuple[int, bytes]:
    if not packet.subscriptions:
        raise ValueError("SUBSCRIBE needs one or more subscriptions")
    parts = [_packet_id(packet.packet_id), _props(packet.properties, P.SUBSCRIBE, version)]
    for sub in packet.subscriptions:
        options = _qos(sub.qos)
        if sub.no_local or sub.retain_as_published or sub.retain_handling:
            if version == 4:
                raise ValueError("subscription options other than QoS need MQTT 5")
            if sub.retain_handling not in (0, 1, 2):
                raise ValueError(f"retain handling {sub.retain_handling}")
            options |= sub.no_local << 2 | sub.retain_as_published << 3
            options |= sub.retain_handling << 4
        _topic_filter(sub.topic_filter, version)
        if sub.no_local and sub.topic_filter.startswith(SHARE_PREFIX):
            raise ValueError("no local on a shared subscription")
        parts += (utf8(sub.topic_filter), bytes((options,)))
    return 0x82, b"".join(parts)


def _suback(packet: Suback, version: int) -> tuple[int, bytes]:
    valid = rc.SUBACK if version == 5 else rc.V311_SUBACK
    codes = _codes(packet.reason_codes, valid, "SUBACK")
    props = _props(packet.properties, P.SUBACK, version)
    return 0x90, _packet_id(packet.packet_id) + props + codes


def _unsubscribe(packet: Unsubscribe, version: int) -> tuple[int, bytes]:
    if not packet.topic_filters:
        raise ValueError("UNSUBSCRIBE needs one or more topic filters")
    parts = [_packet_id(packet.packet_id), _props(packet.properties, P.UNSUBSCRIBE, version)]
    parts.extend(utf8(_topic_filter(f, version)) for f in packet.topic_filters)
    return 0xA2, b"".join(parts)


def _unsuback(packet: Unsuback, version: int) -> tuple[int, bytes]:
    body = _packet_id(packet.packet_id)
    if version == 4:
        if packet.reason_codes:
            raise ValueError("an MQTT 3.1.1 UNSUBACK has no reason codes")
        return 0xB0, body + _props(packet.properties, P.UNSUBACK, 4)
    codes = _codes(packet.reason_codes, rc.UNSUBACK, "UNSUBACK")
    return 0xB0, body + encode_properties(packet.properties, P.UNSUBACK) + codes


def _pingreq(packet: Pingreq, version: int) -> tuple[int, bytes]:
    return 0xC0, b""


def _pingresp(packet: Pingresp, version: int) -> tuple[int, bytes]:
    return 0xD0, b""


def _code_and_props(code: int, props: Properties, type_: P, valid: frozenset[int]) -> bytes:
    if code not in valid:
        raise ValueError(f"0x{code:02X} is not a {type_.name} reason code")
    if props is not NO_PROPERTIES and props:
        return bytes((code,)) + encode_properties(props, type_)
    return bytes((code,)) if code else b""


def _disconnect(packet: Disconnect, version: int) -> tuple[int, bytes]:
    if version == 4:
        if packet.reason_code or packet.properties:
            raise ValueError("an MQTT 3.1.1 DISCONNECT has no reason code or properties")
        return 0xE0, b""
    code, props = packet.reason_code, packet.properties
    return 0xE0, _code_and_props(code, props, P.DISCONNECT, rc.DISCONNECT)


def _auth(packet: Auth, version: int) -> tuple[int, bytes]:
    if version == 4:
        raise ValueError("AUTH needs MQTT 5")
    if packet.reason_code and packet.properties.authentication_method is None:
        raise ValueError("AUTH without authentication method")
    return 0xF0, _code_and_props(packet.reason_code, packet.properties, P.AUTH, rc.AUTH)


_ENCODERS: dict[type[Any], Callable[[Any, int], tuple[int, bytes]]] = {
    Connect: _connect,
    Connack: _connack,
    Publish: _publish,
    Puback: _ack,
    Pubrec: _ack,
    Pubrel: _ack,
    Pubcomp: _ack,
    Subscribe: _subscribe,
    Suback: _suback,
    Unsubscribe: _unsubscribe,
    Unsuback: _unsuback,
    Pingreq: _pingreq,
    Pingresp: _pingresp,
    Disconnect: _disconnect,
    Auth: _auth,
}
