"""Generated packets and fuzzing for the MQTT codec.

Round trips: Hypothesis builds valid packets of every type, for both versions and both
directions; `encode` then the decoder of the receiving side gives the same packet back, with
`raw` equal to the encoded bytes, whole or split anywhere.

Fuzzing, with one invariant: any input (arbitrary bytes, fragments, mutated captures and
generated streams), split anywhere, gives the same packets (and raw bytes) and the same
error as the whole input fed at once - MqttError and nothing else - while what the decoder
holds stays under max_packet_size; every packet decoded encodes back to bytes that decode to
the same packets.

The default run is fast (a few hundred examples per test); set MQTT_FUZZ_EXAMPLES=20000 for
a deep run.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from protocols.mqtt import reason_codes as rc
from protocols.mqtt.packets import PacketType as P
from protocols.mqtt.properties import (
    BINARY,
    BYTE,
    FOUR_BYTE,
    SPECS,
    STRING_PAIR,
    TWO_BYTE,
    UTF8,
    WILL,
)
from tests.unit.test_mqtt_codec import CAPTURES, SPEC_EXAMPLES, decode, streams

EXAMPLES = int(os.environ.get("MQTT_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
GENERATED = settings(FUZZ, max_examples=max(EXAMPLES // 4, 1))
"""For tests that generate whole conversations, which costs more per example."""
SMALL = 300
"""max_packet_size for fuzzing: small enough that mutations hit the size limit."""

# -- valid packets ---------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
LEVEL = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#/"), max_size=5)
TOPICS = st.lists(LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)
QOS = st.integers(0, 2)
PACKET_ID = st.integers(1, 0xFFFF)
_POSITIVE = {"receive_maximum", "topic_alias", "maximum_packet_size"}


def _value(name: str, type_: int, kind: int) -> st.SearchStrategy[object]:
    low = 1 if name in _POSITIVE else 0
    if name == "subscription_identifiers":
        ids = st.integers(1, 268_435_455)
        return st.lists(ids, min_size=1, max_size=3 if kind == P.PUBLISH else 1).map(tuple)
    if name == "response_topic":
        return TOPICS
    if type_ == BYTE:
        return st.integers(0, 1)
    if type_ in (TWO_BYTE, FOUR_BYTE):
        return st.integers(low, (1 << (16 if type_ == TWO_BYTE else 32)) - 1)
    if type_ == UTF8:
        return TEXT
    if type_ == BINARY:
        return st.binary(max_size=8)
    assert type_ == STRING_PAIR
    return st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=3).map(tuple)


_ALLOWED = {
    kind: sorted(name for name, _, where in SPECS.values() if kind in where) for kind in (WILL, *P)
}
_TYPES = {name: type_ for name, type_, _ in SPECS.values()}


@st.composite
def properties(draw: st.DrawFn, kind: int, exclude: frozenset[str] = frozenset()) -> Properties:
    names = [n for n in _ALLOWED[kind] if n not in exclude]
    chosen = draw(st.lists(st.sampled_from(names), max_size=3, unique=True)) if names else []
    values = {name: draw(_value(name, _TYPES[name], kind)) for name in chosen}
    if "authentication_data" in values and "authentication_method" not in values:
        values["authentication_method"] = "m"
    return Properties(**values)  # type: ignore[arg-type]


def props(
    version: int, kind: int, exclude: frozenset[str] = frozenset()
) -> st.SearchStrategy[Properties]:
    return properties(kind, exclude) if version == 5 else st.just(NO_PROPERTIES)


@st.composite
def topic_filters(draw: st.DrawFn, shared: bool) -> str:
    levels = draw(st.lists(st.one_of(LEVEL, st.just("+")), min_size=1, max_size=4))
    topic_filter = "/".join(levels + (["#"] if draw(st.booleans()) else [])) or "+"
    if topic_filter.startswith("$share/"):  # a level drawn as "$share": not meant as shared
        topic_filter = "+/" + topic_filter
    if shared and draw(st.integers(0, 4)) == 0:
        return f"$share/{draw(LEVEL.filter(bool))}/{topic_filter}"
    return topic_filter


@st.composite
def connects(draw: st.DrawFn, version: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will_props = draw(props(version, WILL))
        will_payload = draw(st.binary(max_size=8))
        will = Will(draw(TOPICS), will_payload, draw(QOS), draw(st.booleans()), will_props)
    username = draw(st.none() | TEXT)
    password = draw(st.none() | st.binary(max_size=8))
    client_id = draw(TEXT)
    clean = draw(st.booleans()) or (version == 4 and not client_id)
    if version == 4 and username is None:
        password = None
    keep_alive = draw(st.integers(0, 0xFFFF))
    properties = draw(props(version, P.CONNECT))
    return Connect(client_id, version, clean, keep_alive, username, password, will, properties)


@st.composite
def connacks(draw: st.DrawFn, version: int) -> Connack:
    codes = rc.CONNACK if version == 5 else rc.V311_CONNACK
    code = draw(st.sampled_from(sorted(codes)))
    present = draw(st.booleans()) and not code
    return Connack(present, code, draw(props(version, P.CONNACK)))


@st.composite
def publishes(draw: st.DrawFn, version: int, sender: Role) -> Publish:
    exclude = frozenset(("subscription_identifiers",) if sender == "client" else ())
    properties = draw(props(version, P.PUBLISH, exclude))
    topic = draw(TOPICS)
    if properties.topic_alias is not None and draw(st.booleans()):
        topic = ""
    qos = draw(QOS)
    packet_id = draw(PACKET_ID) if qos else 0
    dup = bool(qos) and draw(st.booleans())
    payload = draw(st.binary(max_size=40))
    return Publish(topic, payload, qos, draw(st.booleans()), dup, packet_id, properties)


@st.composite
def acks(draw: st.DrawFn, version: int) -> Packet:
    kinds: list[type[Puback | Pubrec | Pubrel | Pubcomp]] = [Puback, Pubrec, Pubrel, Pubcomp]
    cls = draw(st.sampled_from(kinds))
    codes = rc.PUBACK if cls in (Puback, Pubrec) else rc.PUBREL
    code = draw(st.sampled_from(sorted(codes))) if version == 5 else 0
    return cls(draw(PACKET_ID), code, draw(props(version, cls.TYPE)))


@st.composite
def subscriptions(draw: st.DrawFn, version: int) -> Subscription:
    topic_filter = draw(topic_filters(version == 5))
    if version == 4:
        return Subscription(topic_filter, draw(QOS))
    no_local = draw(st.booleans()) and not topic_filter.startswith("$share/")
    return Subscription(topic_filter, draw(QOS), no_local, draw(st.booleans()), draw(QOS))


def client_packets(version: int) -> st.SearchStrategy[Packet]:
    """Anything a client sends after CONNECT."""
    subs = st.lists(subscriptions(version), min_size=1, max_size=3).map(tuple)
    filters = st.lists(topic_filters(version == 5), min_size=1, max_size=3).map(tuple)
    options = [
        publishes(version, "client"),
        acks(version),
        st.builds(Subscribe, PACKET_ID, subs, props(version, P.SUBSCRIBE)),
        st.builds(Unsubscribe, PACKET_ID, filters, props(version, P.UNSUBSCRIBE)),
        st.just(Pingreq()),
        disconnects(version),
    ]
    if version == 5:
        options.append(auths())
    return st.one_of(options)


def server_packets(version: int) -> st.SearchStrategy[Packet]:
    """Anything a server sends after CONNACK."""
    suback = rc.SUBACK if version == 5 else rc.V311_SUBACK
    granted = st.lists(st.sampled_from(sorted(suback)), min_size=1, max_size=4).map(tuple)
    unsuback = st.lists(st.sampled_from(sorted(rc.UNSUBACK)), min_size=1, max_size=3)
    unsubacked = unsuback.map(tuple) if version == 5 else st.just(())
    options = [
        publishes(version, "server"),
        acks(version),
        st.builds(Suback, PACKET_ID, granted, props(version, P.SUBACK)),
        st.builds(Unsuback, PACKET_ID, unsubacked, props(version, P.UNSUBACK)),
        st.just(Pingresp()),
    ]
    if version == 5:
        options += [disconnects(version, frozenset(("session_expiry_interval",))), auths()]
    return st.one_of(options)


def disconnects(
    version: int, exclude: frozenset[str] = frozenset()
) -> st.SearchStrategy[Disconnect]:
    if version == 4:
        return st.just(Disconnect())
    codes = st.sampled_from(sorted(rc.DISCONNECT))
    return st.builds(Disconnect, codes, properties(P.DISCONNECT, exclude))


@st.composite
def auths(draw: st.DrawFn) -> Auth:
    code = draw(st.sampled_from(sorted(rc.AUTH)))
    properties = draw(props(5, P.AUTH))
    if code and properties.authentication_method is None:
        properties = Properties(authentication_method="m", reason_string=properties.reason_string)
    return Auth(code, properties)


def conversation(version: int, data: st.DataObject, size: int) -> tuple[list[Packet], list[Packet]]:
    """CONNECT + what a client sends, CONNACK + what a server sends."""
    connect = data.draw(connects(version))
    up: list[Packet] = [connect, *data.draw(st.lists(client_packets(version), max_size=size))]
    if not connect.properties.session_expiry_interval:  # then DISCONNECT may not set one
        up = [_no_expiry(p) if isinstance(p, Disconnect) else p for p in up]
    down = [
        data.draw(connacks(version)),
        *data.draw(st.lists(server_packets(version), max_size=size)),
    ]
    return up, down


def _no_expiry(packet: Disconnect) -> Disconnect:
    return replace(packet, properties=replace(packet.properties, session_expiry_interval=None))


def split(data: bytes, draw: st.DataObject) -> list[bytes]:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=10), label="cuts"))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


# -- round trips -----------------------------------------------------------------------------


@FUZZ
@given(st.sampled_from([4, 5]), st.data())
def test_round_trip_every_packet(version: int, data: st.DataObject) -> None:
    """One packet: encode, decode on the receiving side -> the same packet, raw = bytes."""
    sender = data.draw(st.sampled_from(["client", "server"]))
    if sender == "client":
        packet = data.draw(st.one_of(connects(version), client_packets(version)))
    else:
        packet = data.draw(st.one_of(connacks(version), server_packets(version)))
    wire = encode(packet, version)
    got = decode(wire, "server" if sender == "client" else "client", version)
    assert got == [packet]
    assert got[0].raw == wire


@GENERATED
@given(st.sampled_from([4, 5]), st.data())
def test_round_trip_connections(version: int, data: st.DataObject) -> None:
    """Whole conversations, split anywhere: CONNECT + client packets, CONNACK + server ones."""
    up, down = conversation(version, data, 6)
    for packets, decoder in (
        (up, MqttDecoder(1 << 16, "server")),
        (down, MqttDecoder(1 << 16, "client", version)),
    ):
        wire = b"".join(encode(p, version) for p in packets)
        got = [p for chunk in split(wire, data) for p in decoder.feed(chunk)]
        assert got == packets
        assert b"".join(p.raw for p in got) == wire


# -- fuzzing ---------------------------------------------------------------------------------

Result = tuple[list[tuple[Packet, bytes]], tuple[int, str] | None]
# (role, version set up front): the decoders fuzzed
SETUPS: list[tuple[Role, int | None]] = [
    ("server", None), ("server", 4), ("server", 5), ("client", 4), ("client", 5),
]  # fmt: skip


def run(chunks: list[bytes], role: Role, version: int | None, limit: int = SMALL) -> Result:
    decoder = MqttDecoder(limit, role, version)
    packets: list[Packet] = []
    for chunk in chunks:
        try:
            got = decoder.feed(chunk)
        except MqttError as error:
            assert type(error.reason_code) is not bool and 0x80 <= error.reason_code <= 0xA2
            packets += error.packets
            return [(p, p.raw) for p in packets], (error.reason_code, error.reason)
        assert type(got) is list
        packets += got
        assert decoder.buffered <= max(limit - 1, 4)
    return [(p, p.raw) for p in packets], None


def check(data: bytes, role: Role, version: int | None, draw: st.DataObject) -> None:
    whole = run([data], role, version)
    assert run(split(data, draw), role, version) == whole
    assert run([data[i : i + 1] for i in range(len(data))], role, version) == whole
    packets = [p for p, _ in whole[0]]
    assert data.startswith(b"".join(raw for _, raw in whole[0]))
    if packets:  # what was decoded encodes back to bytes that decode the same
        first = packets[0]
        level = first.version if isinstance(first, Connect) else version or 5
        again = b"".join(encode(p, level) for p in packets)
        assert [p for p, _ in run([again], role, version, 1 << 16)[0]] == packets


FRAGMENTS = [
    b"\x10", b"\x20", b"\x30", b"\x32", b"\x34", b"\x3b", b"\x40", b"\x62", b"\x82", b"\x90",
    b"\xa2", b"\xb0", b"\xc0\x00", b"\xd0\x00", b"\xe0\x00", b"\xf0\x00", b"\x00", b"\x01",
    b"\x02", b"\x7f", b"\x80", b"\xff", b"\xff\xff\xff\x7f",
    b"\x00\x04MQTT\x04", b"\x00\x04MQTT\x05",
    b"\x00\x01a", b"\x00\x03a/b", b"\x00\x01+", b"\x00\x01#", b"\x26\x00\x01k\x00\x01v",
    b"\x0b\x01", b"\x23\x00\x01", b"\x11\x00\x00\x00\x01", b"\x15\x00\x01m", b"\xc0\x80",
]  # fmt: skip
UP_SEEDS = [streams(name)[0] for name in CAPTURES] + [
    d for d, role, _, _ in SPEC_EXAMPLES if role == "server" and d[0] == 0x10
]
DOWN_SEEDS = [streams(name)[1] for name in CAPTURES]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed (or two glued), then byte-level edits: flips, inserts, deletions, cuts."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=2))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "bit", "insert", "delete", "repeat", "cut"]))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "bit" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
        else:
            del data[at:]
    return bytes(data)


ANY_BYTES = st.one_of(
    st.binary(max_size=400), st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)
)


@FUZZ
@given(st.sampled_from(SETUPS), ANY_BYTES, st.data())
def test_any_bytes(setup: tuple[Role, int | None], data: bytes, draw: st.DataObject) -> None:
    check(data, *setup, draw)


@FUZZ
@given(mutated(UP_SEEDS), st.data())
def test_mutated_client_streams(data: bytes, draw: st.DataObject) -> None:
    check(data, "server", None, draw)


@FUZZ
@given(st.sampled_from([4, 5]), st.data())
def test_mutated_server_streams(version: int, draw: st.DataObject) -> None:
    seeds = [s for s in DOWN_SEEDS if (s[1] == 2) == (version == 4)]
    check(draw.draw(mutated(seeds)), "client", version, draw)


@GENERATED
@given(st.sampled_from([4, 5]), st.data())
def test_mutated_generated_streams(version: int, draw: st.DataObject) -> None:
    """Mutations of generated conversations reach deeper into properties and options."""
    up, down = conversation(version, draw, 4)
    sides: list[tuple[list[Packet], Role, int | None]] = [
        (up, "server", None),
        (down, "client", version),
    ]
    for packets, role, level in sides:
        wire = b"".join(encode(p, version) for p in packets)
        check(draw.draw(mutated([wire])), role, level, draw)


def test_seeds_decode_cleanly() -> None:
    """The seeds themselves are valid, so mutations start from deep inside the codec."""
    for seed in UP_SEEDS:
        assert run([seed], "server", None, 1 << 16)[1] is None
    for seed in DOWN_SEEDS:
        assert run([seed], "client", 4 if seed[1] == 2 else 5, 1 << 16)[1] is None
