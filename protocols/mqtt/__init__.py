"""Sans-IO MQTT codec, versions 3.1.1 (protocol level 4) and 5.0 (level 5).

packets.py       the control packets (one vocabulary for both versions) and Properties;
                 every decoded packet keeps `raw`, its exact bytes, for forwarding
decode.py        MqttDecoder(max_packet_size, role): bytes -> packets, with the checks a
                 broker makes on input; learns the version from CONNECT (server role)
encode.py        encode(packet, version) -> bytes
properties.py    MQTT 5 property identifiers, types, where each is allowed; wire types
reason_codes.py  MQTT 5 reason codes per packet; 3.1.1 CONNACK return codes
topics.py        topic name / filter validation, `matches`, TopicMatcher (a trie),
                 `overlap` / `covers` (two filters compared by the topics they match)
errors.py        MqttError: malformed input, with the MQTT 5 reason code to answer with

Where the codec chooses (the spec leaves room, or it is stricter than the text):
- Variable Byte Integers must be in their shortest form, in 3.1.1 too (0x81).
- A protocol name other than "MQTT" (3.1's "MQIsdp" included) or a level other than 4 and
  5 is refused with 0x84 (3.1.1 return code 1); the spec also allows just closing.
- One invalid topic filter refuses the whole SUBSCRIBE/UNSUBSCRIBE (0x8F); a v5 broker may
  instead answer that filter alone with SUBACK 0x8F.
- Rules that need session state are the caller's: topic alias mapping and Topic Alias
  Maximum, Receive Maximum, packet identifiers in use, Maximum QoS, the number of SUBACK
  codes, UTF-8 payloads when Payload Format Indicator is 1 (a MAY). The decoder does track
  which packets each side may send, CONNECT/CONNACK once, and a DISCONNECT's Session
  Expiry Interval against the CONNECT's.
- DISCONNECT reason codes are checked against the DISCONNECT set, not per sender.
- AUTH needs an Authentication Method with reason codes 0x18 and 0x19 only (0x00 has a
  short form without properties).
- The spec's "SHOULD NOT" code points (controls, non-characters) are accepted in strings.
"""

from protocols.mqtt.decode import MqttDecoder, Role
from protocols.mqtt.encode import encode
from protocols.mqtt.errors import MqttError
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
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from protocols.mqtt.reason_codes import ConnackReturnCode, ReasonCode
from protocols.mqtt.topics import (
    TopicMatcher,
    covers,
    is_topic_filter,
    is_topic_name,
    matches,
    overlap,
    split_shared,
)

__all__ = [
    "NO_PROPERTIES",
    "Auth",
    "Connack",
    "ConnackReturnCode",
    "Connect",
    "Disconnect",
    "MqttDecoder",
    "MqttError",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "ReasonCode",
    "Role",
    "Suback",
    "Subscribe",
    "Subscription",
    "TopicMatcher",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "covers",
    "encode",
    "is_topic_filter",
    "is_topic_name",
    "matches",
    "overlap",
    "split_shared",
]
