"""MQTT data representations (section 1.5) and MQTT 5 properties (section 2.2.2).

Every property identifier with its data type and the packets that may carry it (Table
2-4), the checks the spec puts on values, and the readers and writers of the wire types:
Two/Four Byte Integer, Variable Byte Integer, UTF-8 Encoded String, Binary Data and
UTF-8 String Pair.

Decoding errors follow the spec's words: a property not allowed in its packet, or a value
that is not of its data type (truncated, bad UTF-8, U+0000), is a Malformed Packet (0x81);
a property repeated where it may appear once, or a value out of its range (Receive
Maximum 0, a 0/1 flag set to 2, ...), is a Protocol Error (0x82); Topic Alias 0 is 0x94.
Only User Property may repeat, and Subscription Identifier in a PUBLISH.
"""

from __future__ import annotations

from enum import IntEnum

from protocols.mqtt.errors import MqttError, malformed, protocol_error
from protocols.mqtt.packets import (
    NO_PROPERTIES,
    PROPERTY_FIELDS,
    PacketType,
    Properties,
    build_properties,
)
from protocols.mqtt.reason_codes import ReasonCode
from protocols.mqtt.topics import is_topic_name

# -- wire types ----------------------------------------------------------------------------

MAX_VARINT = 268_435_455
"""The largest Variable Byte Integer (4 bytes)."""


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer at buf[pos:end] -> (value, position after it)."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            raise malformed("truncated variable byte integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                raise malformed("variable byte integer not in its shortest form")
            return value, pos
    raise malformed("variable byte integer longer than 4 bytes")


def read_utf8(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """A UTF-8 Encoded String: well-formed UTF-8 without U+0000 (the spec's "SHOULD NOT"
    code points, controls and non-characters, are accepted; a BOM is kept)."""
    if pos + 2 > end:
        raise malformed("truncated string length")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("string longer than its packet")
    try:
        text = buf[pos + 2 : stop].decode()
    except UnicodeDecodeError:
        raise malformed("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise malformed("U+0000 in a string")
    return text, stop


def read_binary(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise malformed("truncated binary data length")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("binary data longer than its packet")
    return buf[pos + 2 : stop], stop


def read_remaining_length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The Remaining Length of the packet whose first byte is at `pos` -> (length, size of the
    fixed header), or (-1, 0) when buf[:end] does not hold all of it yet."""
    value = 0
    for i in range(1, 5):
        if pos + i >= end:
            return -1, 0
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * (i - 1))
        if byte < 0x80:
            if byte == 0 and i > 1:
                raise malformed("remaining length not in its shortest form")
            return value, i + 1
    raise malformed("remaining length longer than 4 bytes")


def read_packet_id(buf: bytes, pos: int) -> int:
    """A Packet Identifier, which is never 0, at buf[pos:pos + 2] (buf ends the packet)."""
    if pos + 2 > len(buf):
        raise malformed("packet too short for its packet identifier")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    if not packet_id:
        raise protocol_error("packet identifier 0")
    return packet_id


def read_topic_name(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """The topic name of a PUBLISH: a string without wildcards (empty: the caller decides)."""
    if pos + 2 > end:
        raise malformed("PUBLISH too short for its topic name")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("topic name longer than the PUBLISH")
    try:
        topic = buf[pos + 2 : stop].decode()
    except UnicodeDecodeError:
        raise malformed("topic name is not well-formed UTF-8") from None
    if "+" in topic or "#" in topic or "\x00" in topic:
        if "\x00" in topic:
            raise malformed("U+0000 in topic name")
        raise MqttError("wildcard in a topic name", ReasonCode.TOPIC_NAME_INVALID)
    return topic, stop


def expect_end(buf: bytes, pos: int, what: str) -> None:
    if pos != len(buf):
        raise malformed(f"{len(buf) - pos} unexpected byte(s) at the end of {what}")


def varint(value: int) -> bytes:
    if value < 0x80 and value >= 0:
        return bytes((value,))
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        value, byte = value >> 7, value & 0x7F
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def uint(value: int, size: int) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{value} does not fit {size} byte(s)")
    return value.to_bytes(size, "big")


def utf8(text: str) -> bytes:
    """A UTF-8 Encoded String; ValueError for U+0000, lone surrogates or > 65535 bytes."""
    data = text.encode()
    if len(data) > 0xFFFF or b"\x00" in data:
        raise ValueError(f"not an MQTT string: {text[:40]!r}")
    return len(data).to_bytes(2, "big") + data


def binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


# -- the property table --------------------------------------------------------------------


class PropertyId(IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


BYTE, TWO_BYTE, FOUR_BYTE, VARINT, UTF8, BINARY, STRING_PAIR = range(7)
"""The data types of property values."""
TYPE_NAMES = ("Byte", "Two Byte Integer", "Four Byte Integer", "Variable Byte Integer",
              "UTF-8 Encoded String", "Binary Data", "UTF-8 String Pair")  # fmt: skip

WILL = 0
"""The property set of a CONNECT's Will Properties; the other sets are packet types."""

P = PacketType
_ACKS = (P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP)
I = PropertyId  # noqa: E741
# id -> (Properties field, data type, where allowed)
SPECS: dict[int, tuple[str, int, frozenset[int]]] = {
    I.PAYLOAD_FORMAT_INDICATOR: ("payload_format_indicator", BYTE, frozenset((P.PUBLISH, WILL))),
    I.MESSAGE_EXPIRY_INTERVAL: ("message_expiry_interval", FOUR_BYTE, frozenset((P.PUBLISH, WILL))),
    I.CONTENT_TYPE: ("content_type", UTF8, frozenset((P.PUBLISH, WILL))),
    I.RESPONSE_TOPIC: ("response_topic", UTF8, frozenset((P.PUBLISH, WILL))),
    I.CORRELATION_DATA: ("correlation_data", BINARY, frozenset((P.PUBLISH, WILL))),
    I.SUBSCRIPTION_IDENTIFIER: (
        "subscription_identifiers", VARINT, frozenset((P.PUBLISH, P.SUBSCRIBE))
    ),
    I.SESSION_EXPIRY_INTERVAL: (
        "session_expiry_interval", FOUR_BYTE, frozenset((P.CONNECT, P.CONNACK, P.DISCONNECT))
    ),
    I.ASSIGNED_CLIENT_IDENTIFIER: ("assigned_client_identifier", UTF8, frozenset((P.CONNACK,))),
    I.SERVER_KEEP_ALIVE: ("server_keep_alive", TWO_BYTE, frozenset((P.CONNACK,))),
    I.AUTHENTICATION_METHOD: (
        "authentication_method", UTF8, frozenset((P.CONNECT, P.CONNACK, P.AUTH))
    ),
    I.AUTHENTICATION_DATA: (
        "authentication_data", BINARY, frozenset((P.CONNECT, P.CONNACK, P.AUTH))
    ),
    I.REQUEST_PROBLEM_INFORMATION: ("request_problem_information", BYTE, frozenset((P.CONNECT,))),
    I.WILL_DELAY_INTERVAL: ("will_delay_interval", FOUR_BYTE, frozenset((WILL,))),
    I.REQUEST_RESPONSE_INFORMATION: (
        "request_response_information", BYTE, frozenset((P.CONNECT,))
    ),
    I.RESPONSE_INFORMATION: ("response_information", UTF8, frozenset((P.CONNACK,))),
    I.SERVER_REFERENCE: ("server_reference", UTF8, frozenset((P.CONNACK, P.DISCONNECT))),
    I.REASON_STRING: (
        "reason_string", UTF8,
        frozenset((P.CONNACK, *_ACKS, P.SUBACK, P.UNSUBACK, P.DISCONNECT, P.AUTH)),
    ),
    I.RECEIVE_MAXIMUM: ("receive_maximum", TWO_BYTE, frozenset((P.CONNECT, P.CONNACK))),
    I.TOPIC_ALIAS_MAXIMUM: ("topic_alias_maximum", TWO_BYTE, frozenset((P.CONNECT, P.CONNACK))),
    I.TOPIC_ALIAS: ("topic_alias", TWO_BYTE, frozenset((P.PUBLISH,))),
    I.MAXIMUM_QOS: ("maximum_qos", BYTE, frozenset((P.CONNACK,))),
    I.RETAIN_AVAILABLE: ("retain_available", BYTE, frozenset((P.CONNACK,))),
    I.USER_PROPERTY: (
        "user_properties", STRING_PAIR,
        frozenset((P.CONNECT, P.CONNACK, P.PUBLISH, WILL, *_ACKS, P.SUBSCRIBE, P.SUBACK,
                   P.UNSUBSCRIBE, P.UNSUBACK, P.DISCONNECT, P.AUTH)),
    ),
    I.MAXIMUM_PACKET_SIZE: ("maximum_packet_size", FOUR_BYTE, frozenset((P.CONNECT, P.CONNACK))),
    I.WILDCARD_SUBSCRIPTION_AVAILABLE: (
        "wildcard_subscription_available", BYTE, frozenset((P.CONNACK,))
    ),
    I.SUBSCRIPTION_IDENTIFIER_AVAILABLE: (
        "subscription_identifier_available", BYTE, frozenset((P.CONNACK,))
    ),
    I.SHARED_SUBSCRIPTION_AVAILABLE: (
        "shared_subscription_available", BYTE, frozenset((P.CONNACK,))
    ),
}  # fmt: skip
assert {name for name, _, _ in SPECS.values()} == set(PROPERTY_FIELDS)

_ALLOWED: dict[int, dict[int, tuple[str, int]]] = {
    kind: {pid: (name, kind_) for pid, (name, kind_, where) in SPECS.items() if kind in where}
    for kind in (WILL, *P)
}
_ZERO_OR_ONE = frozenset((
    "payload_format_indicator", "request_problem_information", "request_response_information",
    "maximum_qos", "retain_available", "wildcard_subscription_available",
    "subscription_identifier_available", "shared_subscription_available",
))  # fmt: skip
_NOT_ZERO = frozenset(("receive_maximum", "maximum_packet_size"))
KIND_NAMES: dict[int, str] = {WILL: "Will Properties", **{p: p.name for p in P}}


# -- decoding ------------------------------------------------------------------------------


def read_properties(buf: bytes, pos: int, end: int, kind: int) -> tuple[Properties, int]:
    """The Property Length and properties at buf[pos:end] -> (properties, position after)."""
    if pos >= end:
        raise malformed(f"{KIND_NAMES[kind]} without a property length")
    size = buf[pos]
    if size == 0:
        return NO_PROPERTIES, pos + 1
    if size < 0x80:
        pos += 1
    else:
        size, pos = read_varint(buf, pos, end)
    stop = pos + size
    if stop > end:
        raise malformed("properties longer than their packet")
    return parse_properties(buf, pos, stop, kind), stop


def parse_properties(buf: bytes, pos: int, end: int, kind: int) -> Properties:
    """The properties in buf[pos:end] (after the Property Length) of a `kind` packet."""
    allowed = _ALLOWED[kind]
    values: dict[str, object] = {}
    pairs: list[tuple[str, str]] = []
    ids: list[int] = []
    value: int | str | bytes
    while pos < end:
        ident = buf[pos]
        spec = allowed.get(ident)
        if spec is None:  # identifiers >= 0x80 (a longer varint) are never valid either
            raise malformed(f"property 0x{ident:02X} is not allowed in {KIND_NAMES[kind]}")
        name, type_ = spec
        pos += 1
        if type_ == BYTE:
            if pos >= end:
                raise malformed(f"truncated {name}")
            value = buf[pos]
            pos += 1
        elif type_ in (TWO_BYTE, FOUR_BYTE):
            size = 2 if type_ == TWO_BYTE else 4
            if pos + size > end:
                raise malformed(f"truncated {name}")
            value = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        elif type_ == VARINT:  # Subscription Identifier, the one that may repeat (PUBLISH)
            number, pos = read_varint(buf, pos, end)
            if not number:
                raise protocol_error("subscription identifier 0")
            if ids and kind != P.PUBLISH:
                raise protocol_error(
                    f"subscription identifier more than once in {KIND_NAMES[kind]}"
                )
            ids.append(number)
            continue
        elif type_ == UTF8:
            value, pos = read_utf8(buf, pos, end)
        elif type_ == BINARY:
            value, pos = read_binary(buf, pos, end)
        else:
            key, pos = read_utf8(buf, pos, end)
            text, pos = read_utf8(buf, pos, end)
            pairs.append((key, text))
            continue
        if name in values:
            raise protocol_error(f"{name} more than once in {KIND_NAMES[kind]}")
        _check(name, value)
        values[name] = value
    if pairs:
        values["user_properties"] = tuple(pairs)
    if ids:
        values["subscription_identifiers"] = tuple(ids)
    return build_properties(values)


def check_authentication(props: Properties) -> None:
    """CONNECT, CONNACK, AUTH: no Authentication Data without an Authentication Method."""
    if props.authentication_data is not None and props.authentication_method is None:
        raise protocol_error("authentication data without authentication method")


def _check(name: str, value: int | str | bytes) -> None:
    if name in _ZERO_OR_ONE:
        if value != 0 and value != 1:
            raise protocol_error(f"{name} is {value!r}, not 0 or 1")
    elif name in _NOT_ZERO:
        if value == 0:
            raise protocol_error(f"{name} is 0")
    elif name == "topic_alias":
        if value == 0:
            raise MqttError("topic alias 0", ReasonCode.TOPIC_ALIAS_INVALID)
    elif name == "response_topic" and not is_topic_name(str(value)):
        raise protocol_error("response topic is not a valid topic name")


# -- encoding ------------------------------------------------------------------------------

_ORDER = sorted(SPECS.items())


def encode_properties(props: Properties, kind: int) -> bytes:
    """Property Length + properties (ascending identifiers). ValueError for a property the
    packet may not carry or a value that does not fit its type."""
    if props is NO_PROPERTIES:
        return b"\x00"
    if props.authentication_data is not None and props.authentication_method is None:
        raise ValueError("authentication data without authentication method")
    out: list[bytes] = []
    for ident, (name, type_, where) in _ORDER:
        value = getattr(props, name)
        if value is None or value == ():
            continue
        if kind not in where:
            raise ValueError(f"{name} is not allowed in {KIND_NAMES[kind]}")
        if type_ == STRING_PAIR:
            out.extend(bytes((ident,)) + utf8(k) + utf8(v) for k, v in value)
        elif type_ == VARINT:
            if 0 in value or (len(value) > 1 and kind != P.PUBLISH):
                raise ValueError(f"subscription identifiers {value} in {KIND_NAMES[kind]}")
            out.extend(bytes((ident,)) + varint(v) for v in value)
        else:
            try:
                _check(name, value)
            except MqttError as error:
                raise ValueError(error.reason) from None
            out.append(bytes((ident,)) + _encode_value(type_, value))
    body = b"".join(out)
    return varint(len(body)) + body


def _encode_value(type_: int, value: int | str | bytes) -> bytes:
    if type_ == UTF8:
        return utf8(str(value))
    if type_ == BINARY:
        if not isinstance(value, bytes):
            raise ValueError(f"binary property value {value!r} is not bytes")
        return binary(value)
    if not isinstance(value, int):
        raise ValueError(f"integer property value {value!r} is not an int")
    return uint(value, 1 if type_ == BYTE else 2 if type_ == TWO_BYTE else 4)
