"""The MQTT codec by tables: bytes <-> packets for both versions (examples from the 3.1.1
and 5.0 specs, and streams captured from mosquitto_pub / mosquitto_sub talking to
mosquitto 2.0), malformed inputs with the reason code each is refused with, the same
streams fed one byte at a time, and what `encode` refuses.

Round trips of generated packets and fuzzing are in test_mqtt_fuzz.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from protocols.errors import ProtocolError
from protocols.mqtt import (
    NO_PROPERTIES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttError,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Role,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)
from protocols.mqtt.properties import read_utf8, read_varint, varint

MAX = 1 << 16


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def s(text: str) -> str:
    """A UTF-8 Encoded String as hex."""
    data = text.encode()
    return f"{len(data):04x}{data.hex()}"


def pk(first: int, body: str) -> bytes:
    """A packet: first byte, Remaining Length, body (hex)."""
    data = h(body)
    return bytes((first,)) + varint(len(data)) + data


def server(version: int | None = None, max_size: int = MAX) -> MqttDecoder:
    """Decodes what a client sends; with `version`, as if CONNECT had been decoded."""
    return MqttDecoder(max_size, "server", version)


def client(version: int, max_size: int = MAX) -> MqttDecoder:
    """Decodes what a server sends, after a successful CONNACK."""
    decoder = MqttDecoder(max_size, "client", version)
    decoder.feed(h("20020000") if version == 4 else h("2003000000"))
    return decoder


def receiver(role: Role, version: int | None, data: bytes, max_size: int = MAX) -> MqttDecoder:
    """The decoder `data` is meant for: before the handshake if it starts with CONNECT
    (server) or CONNACK (client), after it otherwise."""
    if role == "server":
        return server(None if data[:1] == b"\x10" else version, max_size)
    if version is None or data[:1] == b"\x20":
        return MqttDecoder(max_size, "client", version)
    return client(version, max_size)


def decode(data: bytes, role: Role, version: int | None) -> list[Packet]:
    return receiver(role, version, data).feed(data)


def round_trip(packet: Packet, role: Role, version: int) -> list[Packet]:
    return decode(encode(packet, version), role, version)


# -- spec examples ---------------------------------------------------------------------------

# (remaining length, its encoding): MQTT 3.1.1 Table 2.4 / MQTT 5.0 section 1.5.5
VARINTS = [
    (0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"),
    (2_097_151, "ffff7f"), (2_097_152, "80808001"), (268_435_455, "ffffff7f"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_variable_byte_integer(value: int, encoded: str) -> None:
    assert varint(value) == h(encoded)
    assert read_varint(h(encoded), 0, len(encoded) // 2) == (value, len(encoded) // 2)


def test_utf8_example_from_spec() -> None:
    """MQTT 1.5.4 example: "A" then U+2A6D4 (a 4-byte sequence)."""
    assert read_utf8(h("000541f0aa9b94"), 0, 7) == ("A\U0002a6d4", 7)


WILL311 = Will("w/t", b"bye", qos=1)
CONNECT_BODY = "00044d515454 04 ce 000a" + s("c1") + s("w/t") + s("bye") + s("u") + s("p")
# (bytes, role, version, packets): the spec's variable header examples wrapped into packets
SPEC_EXAMPLES: list[tuple[bytes, Role, int, list[Packet]]] = [
    # 3.1.1 Figure 3.6: "MQTT", level 4, flags 0xCE, keep alive 10
    (pk(0x10, CONNECT_BODY), "server", 4,
     [Connect("c1", 4, True, 10, "u", b"p", WILL311)]),
    # 5.0 Figure 3-6: the same with Session Expiry Interval 10 and empty Will Properties
    (pk(0x10, "00044d515454 05 ce 000a 05 110000000a" + s("c1") + "00" + s("w/t") + s("bye")
            + s("u") + s("p")), "server", 5,
     [Connect("c1", 5, True, 10, "u", b"p", WILL311, Properties(session_expiry_interval=10))]),
    # 3.1.1 Figure 3.11: PUBLISH topic "a/b", packet identifier 10
    (pk(0x32, s("a/b") + "000a" + "6869"), "server", 4, [Publish("a/b", b"hi", 1, packet_id=10)]),
    # 3.1.1 Figure 3.21: SUBSCRIBE "a/b" QoS 1, "c/d" QoS 2
    (pk(0x82, "000a" + s("a/b") + "01" + s("c/d") + "02"), "server", 4,
     [Subscribe(10, (Subscription("a/b", 1), Subscription("c/d", 2)))]),
    # 3.1.1 Figure 3.26: SUBACK 0, 2, failure
    (pk(0x90, "000a 00 02 80"), "client", 4, [Suback(10, (0, 2, 0x80))]),
    # 3.1.1 Figure 3.29: UNSUBSCRIBE "a/b", "c/d"
    (pk(0xA2, "000a" + s("a/b") + s("c/d")), "server", 4, [Unsubscribe(10, ("a/b", "c/d"))]),
    (h("c000"), "server", 4, [Pingreq()]),
    (h("d000"), "client", 5, [Pingresp()]),
    (h("e000"), "server", 4, [Disconnect()]),
    # 5.0: a reason code alone, then with properties; DISCONNECT 0x8E from a server
    (h("e0018e"), "client", 5, [Disconnect(0x8E)]),
    (pk(0xE0, "00 05 1100000e10"), "server", 5,
     [Disconnect(0, Properties(session_expiry_interval=3600))]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "role", "version", "packets"), SPEC_EXAMPLES)
def test_spec_examples(data: bytes, role: Role, version: int, packets: list[Packet]) -> None:
    got = decode(data, role, version)
    assert got == packets
    assert b"".join(p.raw for p in got) == data
    assert b"".join(encode(p, version) for p in packets) == data


# -- captured from mosquitto_pub / mosquitto_sub against mosquitto 2.0.11 --------------------
# (client -> server bytes, server -> client bytes) of whole connections, through a relay.

CAPTURES = {
    "sub v3.1.1 qos 2": (
        "101200044d5154540402001e0006737562333131 820a000100056361702f2302 40020001"
        " 50020002 70020002 e000",
        "20020000 9003000102 300c00056361702f6168656c6c6f 320e00056361702f620001776f726c64"
        " 340d00056361702f630002716f7332 62020002",
    ),
    "pub v3.1.1 qos 1 retain will user password": (
        "102e00044d51545404ee003c00077075623331316200086361702f77696c6c000362796500047573"
        "6572000470617373 330e00056361702f620001776f726c64 e000",
        "20020000 40020001",
    ),
    "pub v3.1.1 qos 2": (
        "101300044d5154540402003c000770756233313163 340d00056361702f630001716f7332 62020001 e000",
        "20020000 50020001 70020001",
    ),
    "unsubscribe v3.1.1": (
        "101400044d5154540402003c0008756e737562333131 820a000100056361702f7800"
        " a20b000200076361702f6f6c64 e000",
        "20020000 9003000100 b0020002",
    ),
    "sub v5 user properties": (
        "102200044d5154540502003c11260006636c69656e740003737562210003000473756235"
        " 8213000107260001730001310006636170352f2b02 40020001 50020002 70020002e000",
        "200900000622000a210014 900400010002 300f0006636170352f610068656c6c6f35"
        " 32300006636170352f6200011f2600036b6579000576616c756503000a746578742f706c61696e"
        "020000003c776f726c6435"
        " 34250006636170352f6300021408000a636170352f7265706c7909000430313032716f73322d35"
        " 62020002",
    ),
    "pub v5 qos 1 retain will properties": (
        "103300044d5154540516003c08110000001e2100140005707562356207260001770001780009636170"
        "352f77696c6c000462796535"
        " 33300006636170352f6200011f2600036b6579000576616c7565020000003c03000a746578742f70"
        "6c61696e776f726c6435 e000",
        "200900000622000a210014 40020001",
    ),
    "pub v5 qos 2 response topic": (
        "101500044d5154540502003c0321001400057075623563"
        " 34250006636170352f6300011408000a636170352f7265706c7909000430313032716f73322d35"
        " 62020001 e000",
        "200900000622000a210014 50020001 70020001",
    ),
    "unsubscribe v5 disconnect with will": (
        "101600044d5154540502003c032100140006756e73756235 820c0001000006636170352f7800"
        " a20d0002000008636170352f6f6c64 e00104",
        "200900000622000a210014 900400010000 b00400020011",
    ),
}
MOSQUITTO_CONNACK = Connack(properties=Properties(receive_maximum=20, topic_alias_maximum=10))


def streams(name: str) -> tuple[bytes, bytes]:
    up, down = CAPTURES[name]
    return h(up), h(down)


def decode_connection(name: str) -> tuple[int, list[Packet], list[Packet]]:
    up, down = streams(name)
    upstream = MqttDecoder(MAX, "server")
    sent = upstream.feed(up)
    assert upstream.version is not None
    received = MqttDecoder(MAX, "client", upstream.version).feed(down)
    return upstream.version, sent, received


@pytest.mark.parametrize("name", list(CAPTURES))
def test_captures_decode_to_their_exact_bytes(name: str) -> None:
    version, sent, received = decode_connection(name)
    up, down = streams(name)
    assert b"".join(p.raw for p in sent) == up
    assert b"".join(p.raw for p in received) == down
    for packet in sent:
        assert round_trip(packet, "server", version) == [packet]
    for packet in received:
        assert round_trip(packet, "client", version) == [packet]


def test_capture_sub_v311() -> None:
    version, sent, received = decode_connection("sub v3.1.1 qos 2")
    assert version == 4
    assert sent == [
        Connect("sub311", 4, True, 30),
        Subscribe(1, (Subscription("cap/#", 2),)),
        Puback(1), Pubrec(2), Pubcomp(2), Disconnect(),
    ]  # fmt: skip
    assert received == [
        Connack(), Suback(1, (2,)), Publish("cap/a", b"hello"),
        Publish("cap/b", b"world", 1, packet_id=1), Publish("cap/c", b"qos2", 2, packet_id=2),
        Pubrel(2),
    ]  # fmt: skip
    assert [encode(p, 4) for p in sent + received] == [p.raw for p in sent + received]


def test_capture_v311_will_and_credentials() -> None:
    _, sent, _ = decode_connection("pub v3.1.1 qos 1 retain will user password")
    will = Will("cap/will", b"bye", qos=1, retain=True)
    assert sent[0] == Connect("pub311b", 4, True, 60, "user", b"pass", will)
    assert sent[1] == Publish("cap/b", b"world", qos=1, retain=True, packet_id=1)


def test_capture_sub_v5() -> None:
    version, sent, received = decode_connection("sub v5 user properties")
    assert version == 5
    assert sent[0] == Connect(
        "sub5", 5, True, 60,
        properties=Properties(receive_maximum=3, user_properties=(("client", "sub"),)),
    )  # fmt: skip
    assert sent[1] == Subscribe(
        1, (Subscription("cap5/+", 2),), Properties(user_properties=(("s", "1"),))
    )
    assert received[0] == MOSQUITTO_CONNACK
    assert received[3] == Publish(
        "cap5/b", b"world5", 1, packet_id=1,
        properties=Properties(
            message_expiry_interval=60, content_type="text/plain",
            user_properties=(("key", "value"),),
        ),
    )  # fmt: skip
    assert isinstance(received[4], Publish)
    assert received[4].properties == Properties(
        response_topic="cap5/reply", correlation_data=b"0102"
    )


def test_capture_v5_will_properties() -> None:
    _, sent, _ = decode_connection("pub v5 qos 1 retain will properties")
    connect = sent[0]
    assert isinstance(connect, Connect)
    assert connect.properties == Properties(session_expiry_interval=30, receive_maximum=20)
    will_props = Properties(user_properties=(("w", "x"),))
    assert connect.will == Will("cap5/will", b"bye5", 2, False, will_props)


def test_capture_v5_unsubscribe() -> None:
    _, sent, received = decode_connection("unsubscribe v5 disconnect with will")
    assert sent[2:] == [Unsubscribe(2, ("cap5/old",)), Disconnect(0x04)]
    assert received[1:] == [Suback(1, (0,)), Unsuback(2, (0x11,))]


@pytest.mark.parametrize("name", list(CAPTURES))
def test_captures_one_byte_at_a_time(name: str) -> None:
    up, down = streams(name)
    whole = MqttDecoder(MAX, "server")
    expected = whole.feed(up)
    trickle = MqttDecoder(MAX, "server")
    got = [p for i in range(len(up)) for p in trickle.feed(up[i : i + 1])]
    assert got == expected
    assert [p.raw for p in got] == [p.raw for p in expected]
    trickle = MqttDecoder(MAX, "client", whole.version)
    got = [p for i in range(len(down)) for p in trickle.feed(down[i : i + 1])]
    assert got == MqttDecoder(MAX, "client", whole.version).feed(down)


# -- more valid packets ----------------------------------------------------------------------

VALID: list[tuple[str, bytes, Role, int, Packet]] = [
    ("v5 empty client id, clean start 0", pk(0x10, "00044d515454 05 00 0000 00 0000"),
     "server", 5, Connect("", 5, False, 0)),
    ("v5 password without username", pk(0x10, "00044d515454 05 40 0000 00" + s("c") + s("pw")),
     "server", 5, Connect("c", 5, False, 0, password=b"pw")),
    ("should-not code points and BOM are kept",
     pk(0x30, s("a/\x01\x7f\u0085\ufeff\uffff")), "server", 4,
     Publish("a/\x01\x7f\u0085\ufeff\uffff")),
    ("v5 topic alias with empty topic", pk(0x30, "0000 03 230001 7878"), "server", 5,
     Publish("", b"xx", properties=Properties(topic_alias=1))),
    ("v5 subscription identifiers from a server",
     pk(0x30, s("t") + "04 0b01 0b7f"), "client", 5,
     Publish("t", properties=Properties(subscription_identifiers=(1, 127)))),
    ("v5 PUBACK reason code, no properties", h("4003000110"), "client", 5, Puback(1, 0x10)),
    ("v5 PUBREL reason code and reason string", pk(0x62, "0001 92 04 1f0001" + "78"),
     "server", 5, Pubrel(1, 0x92, Properties(reason_string="x"))),
    ("v5 SUBSCRIBE options", pk(0x82, "0001 02 0b05" + s("a/+") + "2e" + s("$share/g/#") + "11"),
     "server", 5, Subscribe(1, (Subscription("a/+", 2, True, True, 2),
                                Subscription("$share/g/#", 1, False, False, 1)),
                            Properties(subscription_identifiers=(5,)))),
    ("v3.1.1 $share is an ordinary filter", pk(0x82, "0001" + s("$share/g") + "00"), "server", 4,
     Subscribe(1, (Subscription("$share/g"),))),
    ("v5 SUBACK failures", pk(0x90, "0001 00 00 8f 9e a2"), "client", 5,
     Suback(1, (0, 0x8F, 0x9E, 0xA2))),
    ("v5 DISCONNECT from server with reference", pk(0xE0, "9c 04 1c" + s("b")), "client", 5,
     Disconnect(0x9C, Properties(server_reference="b"))),
    ("v5 AUTH continue", pk(0xF0, "18 0c 15" + s("SCRAM") + "16" + s("x")), "server", 5,
     Auth(0x18, Properties(authentication_method="SCRAM", authentication_data=b"x"))),
    ("v5 AUTH success short form", h("f000"), "client", 5, Auth()),
    ("v5 CONNACK refusal with reason string",
     pk(0x20, "00 87 04 1f0001" + "6e"), "client", 5,
     Connack(False, 0x87, Properties(reason_string="n"))),
    ("v3.1.1 CONNACK refusal", h("20020005"), "client", 4, Connack(False, 5)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "role", "version", "packet"), VALID, ids=[c[0] for c in VALID]
)
def test_valid_packets(name: str, data: bytes, role: Role, version: int, packet: Packet) -> None:
    got = decode(data, role, version)
    assert got == [packet]
    assert got[0].raw == data
    assert round_trip(packet, role, version) == [packet]


# -- malformed input -------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    name: str
    data: bytes
    code: int
    role: Role = "server"
    version: int | None = None


C4 = "00044d515454 04"
C5 = "00044d515454 05"
ID = s("id")
BAD = [
    Bad("first packet not CONNECT", h("20020000"), 0x82),
    Bad("PUBLISH before CONNECT", h("3000"), 0x82),
    Bad("CONNECT reserved fixed header flags", pk(0x11, C4 + "02003c" + ID), 0x81),
    Bad("MQTT 3.1 (MQIsdp)", pk(0x10, "00064d5149736470 03 02 003c" + ID), 0x84),
    Bad("MQTT level 3", pk(0x10, "00044d515454 03 02 003c" + ID), 0x84),
    Bad("MQTT level 6", pk(0x10, "00044d515454 06 02 003c" + ID), 0x84),
    Bad("protocol name not MQTT", pk(0x10, s("HTTP") + "04 02 003c" + ID), 0x84),
    Bad("protocol name not a string", pk(0x10, "00"), 0x81),
    Bad("CONNECT reserved flag", pk(0x10, C4 + "03 003c" + ID), 0x81),
    Bad("will QoS 3", pk(0x10, C4 + "1e 003c" + ID + s("t") + s("m")), 0x81),
    Bad("will QoS without will flag", pk(0x10, C4 + "0a 003c" + ID), 0x81),
    Bad("will retain without will flag", pk(0x10, C4 + "22 003c" + ID), 0x81),
    Bad("3.1.1 password without user name", pk(0x10, C4 + "42 003c" + ID + s("p")), 0x81),
    Bad("3.1.1 empty client id without clean session", pk(0x10, C4 + "00 003c" + s("")), 0x85),
    Bad("client id truncated", pk(0x10, C4 + "02 003c 0005 6964"), 0x81),
    Bad("bytes after CONNECT payload", pk(0x10, C4 + "02 003c" + ID + "00"), 0x81),
    Bad("CONNECT variable header truncated", pk(0x10, C4 + "02"), 0x81),
    Bad("client id not UTF-8", pk(0x10, C4 + "02 003c 0002 69ff"), 0x81),
    Bad("client id with U+0000", pk(0x10, C4 + "02 003c 0002 6900"), 0x81),
    Bad("client id with a surrogate", pk(0x10, C4 + "02 003c 0003 eda080"), 0x81),
    Bad("client id overlong encoding", pk(0x10, C4 + "02 003c 0002 c080"), 0x81),
    Bad("will topic with wildcard", pk(0x10, C4 + "06 003c" + ID + s("a/#") + s("m")), 0x90),
    Bad("CONNECT property not allowed", pk(0x10, C5 + "02 003c 03 230001" + ID), 0x81),
    Bad("property identifier 0x80", pk(0x10, C5 + "02 003c 02 8001" + ID), 0x81),
    Bad("property identifier unknown", pk(0x10, C5 + "02 003c 02 7f00" + ID), 0x81),
    Bad("duplicate property", pk(0x10, C5 + "02 003c 0a 1100000001 1100000002" + ID), 0x82),
    Bad("receive maximum 0", pk(0x10, C5 + "02 003c 03 210000" + ID), 0x82),
    Bad("maximum packet size 0", pk(0x10, C5 + "02 003c 05 2700000000" + ID), 0x82),
    Bad("request problem information 2", pk(0x10, C5 + "02 003c 02 1702" + ID), 0x82),
    Bad("authentication data without method", pk(0x10, C5 + "02 003c 04 160001ff" + ID), 0x82),
    Bad("property length beyond packet", pk(0x10, C5 + "02 003c 09 110000" + ID), 0x81),
    Bad("property value truncated", pk(0x10, C5 + "02 003c 02 2100"), 0x81),
    Bad(
        "will property not allowed",
        pk(0x10, C5 + "06 003c 00" + ID + "03 230001" + s("t") + s("m")),
        0x81,
    ),
    Bad(
        "will payload format 2",
        pk(0x10, C5 + "06 003c 00" + ID + "02 0102" + s("t") + s("m")),
        0x82,
    ),
    Bad("second CONNECT", pk(0x10, C4 + "02 003c" + ID) * 2, 0x82),
    Bad("packet type 0", h("0000"), 0x81, version=4),
    Bad("AUTH in 3.1.1", h("f000"), 0x81, version=4),
    Bad("CONNACK sent to a server", h("20020000"), 0x82, version=4),
    Bad("SUBACK sent to a server", h("9003000100"), 0x82, version=5),
    Bad("PINGRESP sent to a server", h("d000"), 0x82, version=5),
    Bad("PUBLISH QoS 3", pk(0x36, s("t") + "0001"), 0x81, version=4),
    Bad("PUBLISH DUP with QoS 0", pk(0x38, s("t")), 0x81, version=4),
    Bad("PUBLISH packet identifier 0", pk(0x32, s("t") + "0000"), 0x82, version=4),
    Bad("PUBLISH topic with +", pk(0x30, s("a/+")), 0x90, version=4),
    Bad("PUBLISH topic with #", pk(0x30, s("#") + "00"), 0x90, version=5),
    Bad("PUBLISH topic with U+0000", pk(0x30, "0001 00"), 0x81, version=4),
    Bad("PUBLISH topic not UTF-8", pk(0x30, "0001 ff"), 0x81, version=4),
    Bad("PUBLISH topic truncated", pk(0x30, "0005 61"), 0x81, version=4),
    Bad("PUBLISH without topic", h("3000"), 0x81, version=4),
    Bad("PUBLISH packet id truncated", pk(0x32, s("t") + "00"), 0x81, version=4),
    Bad("v3.1.1 empty topic", pk(0x30, "0000"), 0x90, version=4),
    Bad("v5 empty topic without alias", pk(0x30, "0000 00"), 0x82, version=5),
    Bad("v5 PUBLISH without property length", pk(0x30, s("t")), 0x81, version=5),
    Bad("topic alias 0", pk(0x30, s("t") + "03 230000"), 0x94, version=5),
    Bad("subscription identifier from a client", pk(0x30, s("t") + "02 0b01"), 0x82, version=5),
    Bad("subscription identifier 0", pk(0x30, s("t") + "02 0b00"), 0x82, "client", 5),
    Bad("subscription identifier not shortest", pk(0x30, s("t") + "03 0b8100"), 0x81, "client", 5),
    Bad("response topic with wildcard", pk(0x30, s("t") + "04 08" + s("+")), 0x82, version=5),
    Bad("payload format indicator 2", pk(0x30, s("t") + "02 0102"), 0x82, version=5),
    Bad("PUBLISH property not allowed", pk(0x30, s("t") + "02 1700"), 0x81, version=5),
    Bad("duplicate topic alias", pk(0x30, s("t") + "06 230001 230002"), 0x82, version=5),
    Bad("PUBREL flags 0", h("60020001"), 0x81, version=4),
    Bad("PUBACK flags 2", h("42020001"), 0x81, version=4),
    Bad("3.1.1 PUBACK with a reason code", h("4003000100"), 0x81, version=4),
    Bad("PUBACK packet identifier 0", h("40020000"), 0x82, version=5),
    Bad("PUBACK truncated", h("400100"), 0x81, version=5),
    Bad("PUBACK invalid reason code", h("4003000101"), 0x82, version=5),
    Bad("PUBREL reason code of PUBACK", h("6203000110"), 0x82, version=5),
    Bad("PUBACK bytes after properties", h("400500010000ff"), 0x81, version=5),
    Bad("SUBSCRIBE flags 0", pk(0x80, "0001" + s("t") + "00"), 0x81, version=4),
    Bad("SUBSCRIBE without filters", pk(0x82, "0001"), 0x82, version=4),
    Bad("v5 SUBSCRIBE without filters", pk(0x82, "0001 00"), 0x82, version=5),
    Bad("SUBSCRIBE packet identifier 0", pk(0x82, "0000" + s("t") + "00"), 0x82, version=4),
    Bad("SUBSCRIBE reserved option bits v3.1.1", pk(0x82, "0001" + s("t") + "04"), 0x81, version=4),
    Bad("SUBSCRIBE reserved option bits v5", pk(0x82, "0001 00" + s("t") + "40"), 0x81, version=5),
    Bad("SUBSCRIBE QoS 3", pk(0x82, "0001" + s("t") + "03"), 0x81, version=4),
    Bad("SUBSCRIBE retain handling 3", pk(0x82, "0001 00" + s("t") + "30"), 0x82, version=5),
    Bad("SUBSCRIBE filter without options", pk(0x82, "0001" + s("t")), 0x81, version=4),
    Bad("SUBSCRIBE # not last", pk(0x82, "0001" + s("a/#/b") + "00"), 0x8F, version=4),
    Bad("SUBSCRIBE + inside a level", pk(0x82, "0001" + s("a+") + "00"), 0x8F, version=4),
    Bad("SUBSCRIBE empty filter", pk(0x82, "0001" + s("") + "00"), 0x8F, version=4),
    Bad(
        "shared subscription without filter",
        pk(0x82, "0001 00" + s("$share/g") + "00"),
        0x8F,
        version=5,
    ),
    Bad(
        "shared subscription empty name",
        pk(0x82, "0001 00" + s("$share//a") + "00"),
        0x8F,
        version=5,
    ),
    Bad(
        "shared subscription name with +",
        pk(0x82, "0001 00" + s("$share/g+/a") + "00"),
        0x8F,
        version=5,
    ),
    Bad(
        "no local on a shared subscription",
        pk(0x82, "0001 00" + s("$share/g/a") + "04"),
        0x82,
        version=5,
    ),
    Bad(
        "two subscription identifiers",
        pk(0x82, "0001 04 0b01 0b02" + s("t") + "00"),
        0x82,
        version=5,
    ),
    Bad("SUBSCRIBE with topic alias", pk(0x82, "0001 03 230001" + s("t") + "00"), 0x81, version=5),
    Bad("UNSUBSCRIBE without filters", pk(0xA2, "0001"), 0x82, version=4),
    Bad("UNSUBSCRIBE invalid filter", pk(0xA2, "0001 00" + s("a/#/")), 0x8F, version=5),
    Bad("UNSUBSCRIBE flags 0", pk(0xA0, "0001" + s("t")), 0x81, version=4),
    Bad("PINGREQ with a body", h("c00100"), 0x81, version=4),
    Bad("3.1.1 DISCONNECT with a body", h("e00100"), 0x81, version=4),
    Bad("DISCONNECT flags", h("e100"), 0x81, version=5),
    Bad("DISCONNECT invalid reason code", h("e00105"), 0x82, version=5),
    Bad("DISCONNECT property not allowed", h("e00400022300"), 0x81, version=5),
    Bad(
        "DISCONNECT session expiry after 0 in CONNECT",
        pk(0x10, C5 + "02 003c 00" + ID) + pk(0xE0, "00 05 1100000001"),
        0x82,
    ),
    Bad("AUTH continue without method", h("f002 18 00"), 0x82, version=5),
    Bad("AUTH invalid reason code", h("f00101"), 0x82, version=5),
    Bad("remaining length of 5 bytes", h("30ffffffff01"), 0x81, version=4),
    Bad("remaining length not shortest", h("c08000"), 0x81, version=4),
    Bad("packet too large", h("30ffff03"), 0x95, version=4),
    # client role: bytes from a server
    Bad("client without version", h("20020000"), 0x82, "client"),
    Bad("CONNACK reserved flags", h("20020200"), 0x81, "client", 4),
    Bad("3.1.1 CONNACK return code 6", h("20020006"), 0x82, "client", 4),
    Bad("session present with a refusal", h("20020105"), 0x82, "client", 4),
    Bad("3.1.1 CONNACK with 3 bytes", h("2003000000"), 0x81, "client", 4),
    Bad("v5 CONNACK without properties", h("20020000"), 0x81, "client", 5),
    Bad("v5 CONNACK invalid reason code", h("2003000400"), 0x82, "client", 5),
    Bad("v5 CONNACK maximum QoS 2", h("2005 00 00 02 2402"), 0x82, "client", 5),
    Bad("second CONNACK", h("20020000 20020000"), 0x82, "client", 4),
    Bad("3.1.1 SUBACK return code 3", h("9003000103"), 0x82, "client", 4),
    Bad("SUBACK without codes", h("90020001"), 0x82, "client", 4),
    Bad("v5 SUBACK code of PUBACK", h("900400010010"), 0x82, "client", 5),
    Bad("3.1.1 UNSUBACK with codes", h("b003000100"), 0x81, "client", 4),
    Bad("v5 UNSUBACK without codes", h("b003000100"), 0x82, "client", 5),
    Bad("3.1.1 DISCONNECT from a server", h("e000"), 0x82, "client", 4),
    Bad(
        "v5 DISCONNECT from a server with session expiry",
        pk(0xE0, "00 05 1100000000"),
        0x82,
        "client",
        5,
    ),
    Bad("SUBSCRIBE sent to a client", pk(0x82, "0001" + s("t") + "00"), 0x82, "client", 4),
    Bad("PINGREQ sent to a client", h("c000"), 0x82, "client", 5),
    Bad("CONNECT sent to a client", pk(0x10, C4 + "02 003c" + ID), 0x82, "client", 4),
]


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_malformed(case: Bad) -> None:
    with pytest.raises(MqttError) as whole:
        receiver(case.role, case.version, case.data, 1000).feed(case.data)
    assert whole.value.reason_code == case.code, whole.value.reason
    decoder = receiver(case.role, case.version, case.data, 1000)
    with pytest.raises(MqttError) as trickle:
        for i in range(len(case.data)):
            decoder.feed(case.data[i : i + 1])
    assert trickle.value.reason == whole.value.reason
    assert trickle.value.reason_code == case.code


# -- decoder behaviour -----------------------------------------------------------------------

CONNECT4 = pk(0x10, C4 + "02 003c" + ID)
CONNECT5 = pk(0x10, C5 + "02 003c 00" + ID)


def test_version_learned_from_connect() -> None:
    """After a 3.1.1 CONNECT a PUBACK is only a packet identifier; after a v5 one it may
    carry a reason code."""
    v4 = server()
    assert v4.feed(CONNECT4) == [Connect("id", 4)]
    assert v4.version == 4
    with pytest.raises(MqttError):
        v4.feed(h("4003000110"))
    v5 = server()
    assert v5.feed(CONNECT5 + h("4003000110")) == [Connect("id", 5), Puback(1, 0x10)]
    assert v5.version == 5


def test_version_known_when_connect_is_refused() -> None:
    """A proxy answers a refused CONNECT in the client's version."""
    decoder = server()
    with pytest.raises(MqttError) as error:
        decoder.feed(pk(0x10, C5 + "02 003c 03 210000" + ID))
    assert decoder.version == 5
    assert error.value.reason_code == 0x82
    decoder = server()
    with pytest.raises(MqttError) as error:
        decoder.feed(pk(0x10, C4 + "00 003c" + s("")))
    assert decoder.version == 4
    assert error.value.v311_connack_code == 2
    with pytest.raises(MqttError) as error:
        server().feed(pk(0x10, "00064d5149736470 03 02 003c" + ID))
    assert error.value.v311_connack_code == 1


def test_too_large_refused_before_the_body() -> None:
    decoder = server(4, max_size=100)
    assert decoder.feed(h("30")) == []
    with pytest.raises(MqttError) as error:
        decoder.feed(h("64"))  # Remaining Length 100 -> 102 bytes in all
    assert error.value.reason_code == 0x95
    exact = server(4, max_size=100)
    assert exact.feed(pk(0x30, s("t") + "00" * 95)) == [Publish("t", bytes(95))]


def test_fifth_length_byte_refused_early() -> None:
    decoder = server(4)
    assert decoder.feed(h("30ffffff")) == []
    assert decoder.buffered == 4
    with pytest.raises(MqttError):
        decoder.feed(h("ff"))


def test_buffer_holds_one_incomplete_packet() -> None:
    decoder = server(4, max_size=1000)
    publish = pk(0x30, s("t") + "00" * 900)
    for i in range(len(publish) - 1):
        assert decoder.feed(publish[i : i + 1]) == []
        assert decoder.buffered == i + 1
    assert decoder.feed(publish[-1:] + publish[:10]) == [Publish("t", bytes(900))]
    assert decoder.buffered == 10


def test_error_keeps_packets_decoded_before_it_and_sticks() -> None:
    decoder = server(4)
    with pytest.raises(MqttError) as error:
        decoder.feed(h("c000 c000 3000"))
    assert error.value.packets == [Pingreq(), Pingreq()]
    with pytest.raises(MqttError, match="failed earlier"):
        decoder.feed(h("c000"))


def test_publish_payload_is_a_slice_of_raw() -> None:
    data = pk(0x32, s("a/b") + "0007" + "68656c6c6f")
    (packet,) = server(4).feed(data + data)[:1]
    assert isinstance(packet, Publish)
    assert packet.raw == data and packet.payload == b"hello"


def test_client_learns_connack_then_refuses_a_second() -> None:
    decoder = MqttDecoder(MAX, "client")
    decoder.version = 5
    assert decoder.feed(h("f000 2003010000")) == [Auth(), Connack(True)]
    with pytest.raises(MqttError, match="second CONNACK"):
        decoder.feed(h("2003000000"))


def test_eof_needs_no_call() -> None:
    """EOF (b"") is no event: a partial packet just stays, to be dropped with the decoder."""
    decoder = server(4)
    assert decoder.feed(b"") == []
    assert decoder.feed(h("3005")) == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 2
    assert decoder.feed(h("0001 61 6263")) == [Publish("a", b"bc")]


def test_error_type() -> None:
    error = MqttError("bad", 0x82)
    assert isinstance(error, ProtocolError)
    assert (error.reason, error.reason_code, error.packets) == ("bad", 0x82, [])
    assert error.v311_connack_code is None
    assert MqttError("x").reason_code == 0x81
    assert MqttError("x", 0x86).v311_connack_code == 4


def test_decoder_arguments() -> None:
    with pytest.raises(ValueError):
        MqttDecoder(1)
    with pytest.raises(ValueError):
        MqttDecoder(MAX, "proxy")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MqttDecoder(MAX, "client", 3)


# -- encode ----------------------------------------------------------------------------------

ENCODE_ERRORS: list[tuple[Packet, int]] = [
    (Connect("c", 4), 5),
    (Connect("c", 4, password=b"p"), 4),
    (Connect("c", 4, properties=Properties(receive_maximum=1)), 4),
    (Connect("c", 5, properties=Properties(topic_alias=1)), 5),
    (Connack(reason_code=0x87), 4),
    (Connack(reason_code=0x04), 5),
    (Publish("t", qos=3), 4),
    (Publish("t", qos=1), 4),
    (Publish("t", dup=True), 4),
    (Publish("t", properties=Properties(topic_alias=1)), 4),
    (Puback(1, 0x10), 4),
    (Puback(0), 5),
    (Pubrel(1, 0x10), 5),
    (Subscribe(1, ()), 4),
    (Subscribe(1, (Subscription("t", no_local=True),)), 4),
    (Subscribe(1, (Subscription("t", retain_handling=3),)), 5),
    (Suback(1, ()), 5),
    (Suback(1, (0x8F,)), 4),
    (Unsubscribe(1, ()), 5),
    (Unsuback(1, (0,)), 4),
    (Unsuback(1, ()), 5),
    (Disconnect(0x8E), 4),
    (Disconnect(0x01), 5),
    (Auth(), 4),
    (Publish("x" * 70_000), 5),
    (Publish("a\x00b"), 5),
    (Pingreq(), 3),
    (Connect("", 4, clean_start=False), 4),
    (Connect("c", 5, will=Will("a/+")), 5),
    (Connack(True, 0x80), 5),
    (Publish("a/#"), 5),
    (Publish(""), 4),
    (Publish(""), 5),
    (Subscribe(1, (Subscription("a/#/b"),)), 4),
    (Subscribe(1, (Subscription("$share/g"),)), 5),
    (Subscribe(1, (Subscription("$share/g/a", no_local=True),)), 5),
    (Unsubscribe(1, ("a+",)), 4),
    (Publish("t", properties=Properties(topic_alias=0)), 5),
    (Publish("t", properties=Properties(payload_format_indicator=2)), 5),
    (Publish("t", properties=Properties(response_topic="a/#")), 5),
    (Subscribe(1, (Subscription("t"),), Properties(subscription_identifiers=(1, 2))), 5),
    (Subscribe(1, (Subscription("t"),), Properties(subscription_identifiers=(0,))), 5),
    (Connack(properties=Properties(receive_maximum=0)), 5),
    (Auth(0x18), 5),
    (Connect("c", 5, properties=Properties(authentication_data=b"x")), 5),
]


@pytest.mark.parametrize(("packet", "version"), ENCODE_ERRORS)
def test_encode_refuses(packet: Packet, version: int) -> None:
    with pytest.raises(ValueError):
        encode(packet, version)


def test_encode_allows_what_decode_allows() -> None:
    assert decode(encode(Publish("", properties=Properties(topic_alias=1)), 5), "server", 5)
    assert decode(encode(Subscribe(1, (Subscription("$share/g"),)), 4), "server", 4)


def test_encode_short_forms() -> None:
    assert encode(Puback(1), 5) == h("40020001")
    assert encode(Puback(1, 0x10), 5) == h("4003000110")
    assert encode(Pubrel(1), 4) == h("62020001")
    assert encode(Disconnect(), 5) == h("e000")
    assert encode(Disconnect(0x8E), 5) == h("e0018e")
    assert encode(Auth(), 5) == h("f000")
    assert encode(Connack(False, 0x84), 5) == h("2003008400")
    assert encode(Connack(False, 1), 4) == h("20020001")
    assert encode(Suback(1, (0x80,)), 4) == h("9003000180")
    assert encode(Pingreq(), 4) == h("c000") and encode(Pingresp(), 5) == h("d000")
    assert Properties() == NO_PROPERTIES and not NO_PROPERTIES
    assert repr(Properties(topic_alias=3)) == "Properties(topic_alias=3)"


def test_encode_long_remaining_length() -> None:
    packet = Publish("t", bytes(200_000))
    data = encode(packet, 4)
    assert data[:4] == h("30c39a0c")
    assert server(4, max_size=1 << 20).feed(data) == [packet]
