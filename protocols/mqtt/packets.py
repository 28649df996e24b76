"""The MQTT control packets (3.1.1 and 5.0 share one vocabulary) and MQTT 5 properties.

Every packet the decoder returns keeps `raw`, the exact bytes it arrived as (fixed header
included), so a proxy forwards an unmodified packet without encoding it again; `raw` takes
no part in equality. After `dataclasses.replace` a packet still carries the old `raw`:
send `encode(packet, version)` instead.

Fields a version lacks keep their defaults: in 3.1.1 `properties` is always
`NO_PROPERTIES`, a PUBACK-family `reason_code` is 0, an UNSUBACK has no `reason_codes`,
and `Connack.reason_code` is the 3.1.1 return code (0-5).

Packets are frozen slotted dataclasses, except `Publish` and the PUBACK family: on the hot
path a frozen `__init__` (one `object.__setattr__` per field) costs about 1 µs more per
packet than a plain slotted one. Treat those as immutable too.

`Properties` is frozen but not slotted, with every field defaulting to "absent" (None or
()), so the decoder builds one from the properties actually present by filling its
`__dict__` (`build_properties`) instead of running a 27-field frozen `__init__`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import ClassVar


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


@dataclass(frozen=True, repr=False)
class Properties:
    """MQTT 5 properties (section 2.2.2). None (or an empty tuple) means absent.

    Byte-valued flags (payload_format_indicator, maximum_qos, retain_available, ...) keep
    their wire value (0 or 1). `subscription_identifiers` holds the one identifier of a
    SUBSCRIBE, or the ones a server attaches to a PUBLISH; `user_properties` keeps order
    and repeats, as the spec requires.
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def __bool__(self) -> bool:
        """True when any property is present."""
        return any(getattr(self, name) not in (None, ()) for name in PROPERTY_FIELDS)

    def __repr__(self) -> str:
        """Only the properties present: `Properties(topic_alias=3)`."""
        present = ((n, getattr(self, n)) for n in PROPERTY_FIELDS)
        return f"Properties({', '.join(f'{n}={v!r}' for n, v in present if v not in (None, ()))})"


PROPERTY_FIELDS = tuple(f.name for f in fields(Properties))
NO_PROPERTIES = Properties()

_new = object.__new__
_set = object.__setattr__


def build_properties(values: dict[str, object]) -> Properties:
    """A Properties holding `values` (field name -> value, already checked), built without
    the frozen `__init__`: absent fields fall back to the class defaults."""
    props: Properties = _new(Properties)
    _set(props, "__dict__", values)
    return props


@dataclass(frozen=True, slots=True)
class Will:
    """The Will Message of a CONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Connect:
    """`version` is the protocol level: 4 (3.1.1) or 5. `clean_start` is 3.1.1's
    CleanSession. A 3.1.1 password needs a username."""

    TYPE: ClassVar[int] = PacketType.CONNECT
    client_id: str = ""
    version: int = 5
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Connack:
    """`reason_code`: a CONNACK reason code (v5) or return code 0-5 (3.1.1)."""

    TYPE: ClassVar[int] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(slots=True)
class Publish:
    """`packet_id` is 0 for QoS 0. In v5 `topic` may be empty when the properties carry a
    topic alias. `payload` is a slice of `raw`."""

    TYPE: ClassVar[int] = PacketType.PUBLISH
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(slots=True)
class _Ack:
    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(slots=True)
class Puback(_Ack):
    TYPE: ClassVar[int] = PacketType.PUBACK


@dataclass(slots=True)
class Pubrec(_Ack):
    TYPE: ClassVar[int] = PacketType.PUBREC


@dataclass(slots=True)
class Pubrel(_Ack):
    TYPE: ClassVar[int] = PacketType.PUBREL


@dataclass(slots=True)
class Pubcomp(_Ack):
    TYPE: ClassVar[int] = PacketType.PUBCOMP


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (3.1.1: only `qos`)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    TYPE: ClassVar[int] = PacketType.SUBSCRIBE
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Suback:
    """One reason code (3.1.1: return code, 0x80 = failure) per topic filter subscribed."""

    TYPE: ClassVar[int] = PacketType.SUBACK
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    TYPE: ClassVar[int] = PacketType.UNSUBSCRIBE
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unsuback:
    """v5: one reason code per topic filter; 3.1.1: none."""

    TYPE: ClassVar[int] = PacketType.UNSUBACK
    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Pingreq:
    TYPE: ClassVar[int] = PacketType.PINGREQ
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Pingresp:
    TYPE: ClassVar[int] = PacketType.PINGRESP
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """3.1.1: client to server only, no content. v5: either way, with a reason code."""

    TYPE: ClassVar[int] = PacketType.DISCONNECT
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Auth:
    """v5 only: enhanced authentication exchange."""

    TYPE: ClassVar[int] = PacketType.AUTH
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES
    raw: bytes = field(default=b"", compare=False, repr=False)


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
