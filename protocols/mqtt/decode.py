"""MqttDecoder: bytes from one side of an MQTT connection -> packets.

The rules of the connection (all that changes which packets are acceptable lives here):

    server role (bytes from a client)
      HANDSHAKE  CONNECT only, checked from its first byte; its protocol level (4 or 5)
                 becomes `version` as soon as it is read, so that a refused CONNECT can be
                 answered in the client's version -> CONNECTED
      CONNECTED  PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
                 DISCONNECT, and in v5 AUTH. A second CONNECT is a Protocol Error.
    client role (bytes from a server; the caller sets `version` from the CONNECT it sent)
      HANDSHAKE  CONNACK, and in v5 AUTH -> CONNECTED after the CONNACK
      CONNECTED  PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP, and
                 in v5 DISCONNECT and AUTH.

The first byte of a packet (type, reserved flags, QoS 3, DUP with QoS 0) is checked in a
256-entry table as soon as it arrives, the packet size against `max_packet_size` as soon as
the Remaining Length is complete, before the body is buffered: the decoder holds at most
one incomplete packet, shorter than `max_packet_size` (or 4 header bytes). Below the
decoder, one parser per packet type reads the body of a complete packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from protocols.mqtt import packets as pk
from protocols.mqtt import reason_codes as rc
from protocols.mqtt.errors import MqttError, malformed, protocol_error
from protocols.mqtt.packets import NO_PROPERTIES, Packet, PacketType, Properties, Publish
from protocols.mqtt.properties import (
    WILL,
    check_authentication,
    expect_end,
    read_binary,
    read_packet_id,
    read_properties,
    read_remaining_length,
    read_topic_name,
    read_utf8,
)
from protocols.mqtt.topics import SHARE_PREFIX, is_topic_filter, is_topic_name

Role = Literal["server", "client"]
Parser = Callable[["MqttDecoder", int, bytes, int], Packet]

P = PacketType
HANDSHAKE, CONNECTED = 0, 1
_FLAGS_0010 = frozenset((P.PUBREL, P.SUBSCRIBE, P.UNSUBSCRIBE))
_BOTH = (P.PUBLISH, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP)
_FROM_CLIENT = frozenset((*_BOTH, P.SUBSCRIBE, P.UNSUBSCRIBE, P.PINGREQ, P.DISCONNECT))
_FROM_SERVER = frozenset((*_BOTH, P.SUBACK, P.UNSUBACK, P.PINGRESP))


class MqttDecoder:
    """`feed(data) -> list[Packet]` for one direction of one connection (see module doc).

    `role="server"` decodes what a client sends; `role="client"` what a server sends, and
    needs `version` (4 or 5) before the first byte. EOF needs no call: an incomplete packet
    left at EOF is simply dropped with the connection.
    """

    def __init__(
        self, max_packet_size: int, role: Role = "server", version: int | None = None
    ) -> None:
        if max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        self.max_packet_size = max_packet_size
        self.role: Role = role
        self._version: int | None = None
        self._stage = HANDSHAKE
        self._session_expiry_zero = True
        self._chunks: list[bytes] = []
        self._have = self._need = 0
        self._error: MqttError | None = None
        self._valid, self._parsers = _tables(role, None, HANDSHAKE)
        if version is not None:
            self.version = version

    @property
    def version(self) -> int | None:
        """The protocol level, 4 (3.1.1) or 5; None until known."""
        return self._version

    @version.setter
    def version(self, version: int) -> None:
        """Set by the caller in the client role; in the server role it skips the CONNECT
        (whose Session Expiry Interval is then unknown, so DISCONNECT may set any)."""
        if version not in (4, 5):
            raise ValueError(f"MQTT protocol level must be 4 or 5, not {version}")
        self._version = version
        if self.role == "server":
            self._stage = CONNECTED
            self._session_expiry_zero = False
        self._valid, self._parsers = _tables(self.role, version, self._stage)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return self._have

    def feed(self, data: bytes) -> list[Packet]:
        """Decode what `data` completes. Raises MqttError (with `packets` decoded before)."""
        if self._error is not None:
            error = self._error
            raise MqttError(f"decoder failed earlier: {error.reason}", error.reason_code)
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks = []
            self._have = 0
        out: list[Packet] = []
        n = len(data)
        pos = 0
        valid = self._valid
        parsers = self._parsers
        try:
            while pos < n:
                first = data[pos]
                if not valid[first]:
                    raise self._first_byte_error(first)
                if pos + 1 < n and data[pos + 1] < 0x80:
                    start = 2
                    end = pos + 2 + data[pos + 1]
                else:
                    length, start = read_remaining_length(data, pos, n)
                    if length < 0:
                        self._need = n - pos + 1
                        break
                    end = pos + start + length
                if end - pos > self.max_packet_size:
                    raise self._too_large(end - pos)
                if end > n:
                    self._need = end - pos
                    break
                out.append(parsers[first >> 4](self, first, data[pos:end], start))
                pos = end
                if first < 0x30:  # a CONNECT or CONNACK changed the stage
                    valid = self._valid
                    parsers = self._parsers
        except MqttError as error:
            error.packets = out
            self._error = error
            self._chunks = []
            self._have = 0
            raise
        if pos < n:
            rest = data[pos:]
            self._chunks = [rest]
            self._have = len(rest)
        return out

    def _too_large(self, size: int) -> MqttError:
        limit = self.max_packet_size
        reason = f"packet of {size} bytes is larger than the maximum {limit}"
        return MqttError(reason, rc.ReasonCode.PACKET_TOO_LARGE)

    def _first_byte_error(self, first: int) -> MqttError:
        type_ = first >> 4
        version = self._version
        if self.role == "client" and version is None:
            return protocol_error("the client decoder needs `version` (from the CONNECT sent)")
        if type_ == 0 or (type_ == P.AUTH and version == 4):
            return malformed(f"reserved packet type {type_}")
        name = P(type_).name
        if self._stage == HANDSHAKE and self.role == "server" and type_ != P.CONNECT:
            return protocol_error(f"{name} before CONNECT")
        if self._stage == HANDSHAKE and type_ not in (P.CONNECT, P.CONNACK, P.AUTH):
            return protocol_error(f"{name} before CONNACK")
        handshake = P.CONNECT if self.role == "server" else P.CONNACK
        if type_ == handshake and self._stage == CONNECTED:
            return protocol_error(f"a second {name}")
        if type_ not in _types(self.role, version, self._stage):
            peer = "client" if self.role == "server" else "server"
            return protocol_error(f"{name} is not sent by a {peer}")
        if type_ != P.PUBLISH:
            return malformed(f"reserved flags 0x{first & 0x0F:X} in {name}")
        if first & 0x06 == 0x06:
            return malformed("PUBLISH with QoS 3")
        return malformed("PUBLISH with DUP set and QoS 0")

    def _connected(self, version: int, session_expiry: int | None = None) -> None:
        self._version = version
        self._stage = CONNECTED
        self._session_expiry_zero = not session_expiry
        self._valid, self._parsers = _tables(self.role, version, CONNECTED)


# -- tables --------------------------------------------------------------------------------


def _types(role: Role, version: int | None, stage: int) -> frozenset[int]:
    if version is None and role == "client":
        return frozenset()
    if stage == HANDSHAKE:
        if role == "server":
            return frozenset((P.CONNECT,))
        return frozenset((P.CONNACK, P.AUTH) if version == 5 else (P.CONNACK,))
    types = _FROM_CLIENT if role == "server" else _FROM_SERVER
    if version == 5:
        types = types | {P.DISCONNECT, P.AUTH}
    return types


_TABLES: dict[tuple[Role, int | None, int], tuple[bytes, tuple[Parser, ...]]] = {}


def _tables(role: Role, version: int | None, stage: int) -> tuple[bytes, tuple[Parser, ...]]:
    """(valid first bytes, parser per packet type) for a role, version and stage."""
    key = (role, version, stage)
    if key not in _TABLES:
        valid = bytearray(256)
        for type_ in _types(role, version, stage):
            if type_ == P.PUBLISH:
                for flags in range(16):
                    qos = (flags >> 1) & 3
                    valid[0x30 | flags] = qos != 3 and (qos or not flags & 8)
            else:
                valid[type_ << 4 | (2 if type_ in _FLAGS_0010 else 0)] = 1
        parsers = _PARSERS5 if version == 5 else _PARSERS4
        _TABLES[key] = bytes(valid), parsers
    return _TABLES[key]


# -- packet bodies -------------------------------------------------------------------------
# Each parser gets (decoder, first byte, the whole packet, offset of the variable header).


def _publish4(dec: MqttDecoder, first: int, raw: bytes, i: int) -> Publish:
    n = len(raw)
    topic, i = read_topic_name(raw, i, n)
    if not topic:
        raise MqttError("empty topic name", rc.ReasonCode.TOPIC_NAME_INVALID)
    qos = (first >> 1) & 3
    packet_id = 0
    if qos:
        packet_id = read_packet_id(raw, i)
        i += 2
    retain = bool(first & 1)
    return Publish(topic, raw[i:], qos, retain, bool(first & 8), packet_id, NO_PROPERTIES, raw)


def _publish5(dec: MqttDecoder, first: int, raw: bytes, i: int) -> Publish:
    n = len(raw)
    topic, i = read_topic_name(raw, i, n)
    qos = (first >> 1) & 3
    packet_id = 0
    if qos:
        packet_id = read_packet_id(raw, i)
        i += 2
    if i < n and raw[i] == 0:
        props = NO_PROPERTIES
        i += 1
    else:
        props, i = read_properties(raw, i, n, P.PUBLISH)
        if props.subscription_identifiers and dec.role == "server":
            raise protocol_error("subscription identifier in a PUBLISH from a client")
    if not topic and props.topic_alias is None:
        raise protocol_error("empty topic name without a topic alias")
    return Publish(topic, raw[i:], qos, bool(first & 1), bool(first & 8), packet_id, props, raw)


def _connect(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Connect:
    n = len(raw)
    if raw.startswith(b"\x00\x04MQTT", i):
        i += 6
    elif raw.startswith(b"\x00\x06MQIsdp", i):
        raise MqttError("MQTT 3.1 (MQIsdp) is not supported", rc.RC.UNSUPPORTED_PROTOCOL_VERSION)
    else:
        name, _ = read_utf8(raw, i, n)
        raise MqttError(f"protocol name {name!r} is not MQTT", rc.RC.UNSUPPORTED_PROTOCOL_VERSION)
    if i + 4 > n:
        raise malformed("CONNECT too short for its variable header")
    level = raw[i]
    if level != 4 and level != 5:
        raise MqttError(f"protocol level {level}", rc.RC.UNSUPPORTED_PROTOCOL_VERSION)
    dec._version = level
    flags = raw[i + 1]
    keep_alive = (raw[i + 2] << 8) | raw[i + 3]
    _check_connect_flags(flags, level)
    props = NO_PROPERTIES
    if level == 5:
        props, i = read_properties(raw, i + 4, n, P.CONNECT)
        check_authentication(props)
    else:
        i += 4
    client_id, i = read_utf8(raw, i, n)
    will = None
    if flags & 0x04:
        will, i = _will(raw, i, n, flags, level)
    username = password = None
    if flags & 0x80:
        username, i = read_utf8(raw, i, n)
    if flags & 0x40:
        password, i = read_binary(raw, i, n)
    expect_end(raw, i, "CONNECT")
    clean = bool(flags & 0x02)
    if level == 4 and not client_id and not clean:
        raise MqttError(
            "empty client identifier without clean session", rc.RC.CLIENT_IDENTIFIER_NOT_VALID
        )
    dec._connected(level, props.session_expiry_interval)
    return pk.Connect(client_id, level, clean, keep_alive, username, password, will, props, raw)


def _check_connect_flags(flags: int, level: int) -> None:
    if flags & 0x01:
        raise malformed("reserved CONNECT flag set")
    will_qos = (flags >> 3) & 3
    if flags & 0x04:
        if will_qos == 3:
            raise malformed("will QoS 3")
    elif will_qos or flags & 0x20:
        raise malformed("will QoS or will retain without the will flag")
    if level == 4 and flags & 0x40 and not flags & 0x80:
        raise malformed("password without user name")


def _will(raw: bytes, i: int, n: int, flags: int, level: int) -> tuple[pk.Will, int]:
    props = NO_PROPERTIES
    if level == 5:
        props, i = read_properties(raw, i, n, WILL)
    topic, i = read_utf8(raw, i, n)
    if not is_topic_name(topic):
        raise MqttError("invalid will topic", rc.RC.TOPIC_NAME_INVALID)
    payload, i = read_binary(raw, i, n)
    return pk.Will(topic, payload, (flags >> 3) & 3, bool(flags & 0x20), props), i


def _connack(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Connack:
    n = len(raw)
    if i + 2 > n:
        raise malformed("CONNACK too short")
    ack, code = raw[i], raw[i + 1]
    if ack & 0xFE:
        raise malformed("reserved CONNACK acknowledge flags set")
    props = NO_PROPERTIES
    if dec._version == 5:
        props, i = read_properties(raw, i + 2, n, P.CONNACK)
        check_authentication(props)
        valid = rc.CONNACK
    else:
        i += 2
        valid = rc.V311_CONNACK
    expect_end(raw, i, "CONNACK")
    if code not in valid:
        raise protocol_error(f"0x{code:02X} is not a reason code of CONNACK")
    if ack and code:
        raise protocol_error("session present in a refusing CONNACK")
    dec._connected(dec._version or 4)
    return pk.Connack(bool(ack), code, props, raw)


def _code_and_props(raw: bytes, i: int, type_: P, codes: frozenset[int]) -> tuple[int, Properties]:
    """The optional reason code and properties ending a v5 PUBACK-family packet, DISCONNECT
    or AUTH (absent: 0 and none)."""
    n = len(raw)
    if i == n:
        return 0, NO_PROPERTIES
    code = raw[i]
    if code not in codes:
        raise protocol_error(f"0x{code:02X} is not a reason code of {type_.name}")
    if i + 1 == n:
        return code, NO_PROPERTIES
    props, i = read_properties(raw, i + 1, n, type_)
    expect_end(raw, i, type_.name)
    return code, props


def _ack_parser(cls: type[pk.Puback | pk.Pubrec | pk.Pubrel | pk.Pubcomp], v5: bool) -> Parser:
    type_ = P(cls.TYPE)
    codes = rc.PUBACK if type_ in (P.PUBACK, P.PUBREC) else rc.PUBREL

    def parse(dec: MqttDecoder, first: int, raw: bytes, i: int) -> Packet:
        packet_id = read_packet_id(raw, i)
        if len(raw) == i + 2:
            return cls(packet_id, 0, NO_PROPERTIES, raw)
        if not v5:
            raise malformed(f"{type_.name} longer than a packet identifier")
        code, props = _code_and_props(raw, i + 2, type_, codes)
        return cls(packet_id, code, props, raw)

    return parse


def _head(dec: MqttDecoder, raw: bytes, i: int, type_: P) -> tuple[int, Properties, int]:
    """Packet identifier and (v5) properties of a SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK."""
    packet_id = read_packet_id(raw, i)
    if dec._version == 5:
        props, i = read_properties(raw, i + 2, len(raw), type_)
        return packet_id, props, i
    return packet_id, NO_PROPERTIES, i + 2


def _subscribe(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Subscribe:
    packet_id, props, i = _head(dec, raw, i, P.SUBSCRIBE)
    n = len(raw)
    subscriptions: list[pk.Subscription] = []
    while i < n:
        topic_filter, i = read_utf8(raw, i, n)
        if i >= n:
            raise malformed("topic filter without subscription options")
        subscriptions.append(_subscription(topic_filter, raw[i], dec._version == 5))
        i += 1
    if not subscriptions:
        raise protocol_error("SUBSCRIBE without a topic filter")
    return pk.Subscribe(packet_id, tuple(subscriptions), props, raw)


def _subscription(topic_filter: str, options: int, v5: bool) -> pk.Subscription:
    if options & (0xC0 if v5 else 0xFC):
        raise malformed("reserved subscription option bits set")
    qos = options & 3
    if qos == 3:
        raise malformed("subscription with QoS 3")
    _check_filter(topic_filter, v5)
    if not v5:
        return pk.Subscription(topic_filter, qos)
    retain_handling = (options >> 4) & 3
    if retain_handling == 3:
        raise protocol_error("retain handling 3")
    no_local = bool(options & 0x04)
    if no_local and topic_filter.startswith(SHARE_PREFIX):
        raise protocol_error("no local on a shared subscription")
    return pk.Subscription(topic_filter, qos, no_local, bool(options & 0x08), retain_handling)


def _check_filter(topic_filter: str, v5: bool) -> None:
    if not is_topic_filter(topic_filter, shared=v5):
        raise MqttError(f"invalid topic filter {topic_filter!r}", rc.RC.TOPIC_FILTER_INVALID)


def _unsubscribe(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Unsubscribe:
    packet_id, props, i = _head(dec, raw, i, P.UNSUBSCRIBE)
    n = len(raw)
    filters: list[str] = []
    while i < n:
        topic_filter, i = read_utf8(raw, i, n)
        _check_filter(topic_filter, dec._version == 5)
        filters.append(topic_filter)
    if not filters:
        raise protocol_error("UNSUBSCRIBE without a topic filter")
    return pk.Unsubscribe(packet_id, tuple(filters), props, raw)


def _reason_codes(raw: bytes, i: int, valid: frozenset[int], type_: P) -> tuple[int, ...]:
    codes = tuple(raw[i:])
    if not codes:
        raise protocol_error(f"{type_.name} without a reason code")
    if not valid.issuperset(codes):
        raise protocol_error(f"invalid {type_.name} reason code")
    return codes


def _suback(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Suback:
    packet_id, props, i = _head(dec, raw, i, P.SUBACK)
    valid = rc.SUBACK if dec._version == 5 else rc.V311_SUBACK
    return pk.Suback(packet_id, _reason_codes(raw, i, valid, P.SUBACK), props, raw)


def _unsuback(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Unsuback:
    packet_id, props, i = _head(dec, raw, i, P.UNSUBACK)
    if dec._version != 5:
        expect_end(raw, i, "UNSUBACK")
        return pk.Unsuback(packet_id, (), NO_PROPERTIES, raw)
    return pk.Unsuback(packet_id, _reason_codes(raw, i, rc.UNSUBACK, P.UNSUBACK), props, raw)


def _ping(cls: type[pk.Pingreq | pk.Pingresp]) -> Parser:
    def parse(dec: MqttDecoder, first: int, raw: bytes, i: int) -> Packet:
        expect_end(raw, i, P(cls.TYPE).name)
        return cls(raw)

    return parse


def _disconnect(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Disconnect:
    if dec._version != 5:
        expect_end(raw, i, "DISCONNECT")
        return pk.Disconnect(0, NO_PROPERTIES, raw)
    code, props = _code_and_props(raw, i, P.DISCONNECT, rc.DISCONNECT)
    expiry = props.session_expiry_interval
    if expiry is not None:
        if dec.role == "client":
            raise protocol_error("session expiry interval in a DISCONNECT from the server")
        if expiry and dec._session_expiry_zero:
            raise protocol_error("session expiry set in DISCONNECT after 0 in CONNECT")
    return pk.Disconnect(code, props, raw)


def _auth(dec: MqttDecoder, first: int, raw: bytes, i: int) -> pk.Auth:
    code, props = _code_and_props(raw, i, P.AUTH, rc.AUTH)
    check_authentication(props)
    if code and props.authentication_method is None:
        raise protocol_error("AUTH without authentication method")
    return pk.Auth(code, props, raw)


def _never(dec: MqttDecoder, first: int, raw: bytes, i: int) -> Packet:
    raise AssertionError("the first-byte table lets no such packet through")


def _parsers(v5: bool) -> tuple[Parser, ...]:
    return (
        _never, _connect, _connack, _publish5 if v5 else _publish4,
        _ack_parser(pk.Puback, v5), _ack_parser(pk.Pubrec, v5), _ack_parser(pk.Pubrel, v5),
        _ack_parser(pk.Pubcomp, v5), _subscribe, _suback, _unsubscribe, _unsuback,
        _ping(pk.Pingreq), _ping(pk.Pingresp), _disconnect, _auth,
    )  # fmt: skip


_PARSERS4 = _parsers(False)
_PARSERS5 = _parsers(True)
