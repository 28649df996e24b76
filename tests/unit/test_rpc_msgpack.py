"""The msgpack-RPC codec: tables of messages <-> frames (canonical encodings from msgpack
itself and the other valid ones written by hand), the same input split every way,
malformed messages with their reasons, the size limits, msgid rewriting checked by
msgpack's own decoder, error responses, sniffing and the registry."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from protocols.rpc import CODECS, Frame, FrameKind, RpcCodec, RpcError, lookup
from protocols.rpc.msgpack_rpc import (
    MAX_ID,
    MSGPACK_RPC,
    RENEW_ABOVE,
    WALK_BUDGET,
    MsgpackRpc,
    MsgpackRpcDecoder,
    encode_uint32,
)

CODEC: RpcCodec = MSGPACK_RPC  # the codec satisfies the family contract (mypy checks)
MAX = 4096
REQ, RESP, ONEWAY = FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ONEWAY

Seen = tuple[FrameKind, int | None, str]


def pack(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj))


def seen(frames: list[Frame]) -> list[Seen]:
    return [(f.kind, f.request_id, f.method) for f in frames]


def run(chunks: list[bytes], max_size: int = MAX) -> tuple[list[Frame], str | None]:
    """Feed chunks in order: every frame completed, and the error reason if one came."""
    decoder = CODEC.decoder(max_size)
    frames: list[Frame] = []
    for chunk in chunks:
        try:
            frames += decoder.feed(chunk)
        except RpcError as error:
            return frames + error.frames, error.reason
        assert decoder.buffered <= max_size
    return frames, None


def splits(data: bytes) -> list[list[bytes]]:
    """Whole, one byte at a time, a few chunk sizes, and cut in two at a few offsets."""
    ways = [[data[i : i + size] for i in range(0, len(data), size)] for size in (1, 2, 3, 7)]
    return (
        ways
        + [[data]]
        + [[data[:cut], data[cut:]] for cut in range(1, len(data), max(1, len(data) // 9))]
    )


# -- good input ------------------------------------------------------------------------------

BIG = b"\xab" * 70_000
MESSAGES: list[tuple[bytes, Seen]] = [
    (pack([0, 1, "echo", ["hello"]]), (REQ, 1, "echo")),
    (pack([0, 0, "", []]), (REQ, 0, "")),
    (pack([0, 127, "m", [1, 2.5, None, True, b"\x00"]]), (REQ, 127, "m")),
    (pack([0, 128, "svc.Method", [{"k": [1, {"n": None}]}]]), (REQ, 128, "svc.Method")),
    (pack([0, 65535, "m" * 31, []]), (REQ, 65535, "m" * 31)),  # fixstr at its longest
    (pack([0, 65536, "m" * 32, []]), (REQ, 65536, "m" * 32)),  # str8
    (pack([0, MAX_ID, "é" * 200, []]), (REQ, MAX_ID, "é" * 200)),  # str16
    (pack([0, 9, "big", [BIG[:3000]]]), (REQ, 9, "big")),
    (pack([0, 10, "ext", [msgpack.ExtType(5, b"xyz"), msgpack.Timestamp(1, 2)]]), (REQ, 10, "ext")),
    (pack([0, 11, "many", list(range(20))]), (REQ, 11, "many")),  # array16 params
    (pack([1, 1, None, "hello"]), (RESP, 1, "")),
    (pack([1, 300, "no such method", None]), (RESP, 300, "")),
    (pack([1, 70000, {"code": 5, "message": "x"}, None]), (RESP, 70000, "")),
    (pack([1, 2, None, [1, [2, [3]]]]), (RESP, 2, "")),
    (pack([2, "tick", []]), (ONEWAY, None, "tick")),
    (pack([2, "log", ["line", 3]]), (ONEWAY, None, "log")),
    # valid encodings msgpack's packer does not choose
    (b"\xdc\x00\x04\x00\x05\xa1m\x90", (REQ, 5, "m")),  # array16 envelope
    (b"\xdd\x00\x00\x00\x03\x02\xa1m\x90", (ONEWAY, None, "m")),  # array32 envelope
    (b"\x94\xcc\x00\x05\xa1m\x90", (REQ, 5, "m")),  # type as uint8
    (b"\x94\xd0\x01\x05\xc0\xc0", (RESP, 5, "")),  # type as int8
    (b"\x94\x00\xcd\x00\x05\xa1m\x90", (REQ, 5, "m")),  # small msgid in uint16
    (b"\x94\x00\xcf\x00\x00\x00\x00\xff\xff\xff\xff\xa1m\x90", (REQ, MAX_ID, "m")),  # uint64
    (b"\x94\x00\xd2\x00\x00\x00\x07\xa1m\x90", (REQ, 7, "m")),  # int32, not negative
    (b"\x94\x00\x01\xd9\x01m\x90", (REQ, 1, "m")),  # str8 method
    (b"\x94\x00\x01\xdb\x00\x00\x00\x01m\xdd\x00\x00\x00\x00", (REQ, 1, "m")),  # str32, array32
    # method names as bin, as Neovim's clients send them (pynvim: bin8)
    (pack([0, 1, b"nvim_get_api_info", []]), (REQ, 1, "nvim_get_api_info")),
    (pack([2, b"nvim_set_client_info", ["py"]]), (ONEWAY, None, "nvim_set_client_info")),
    (pack([0, 2, "é".encode() * 200, []]), (REQ, 2, "é" * 200)),  # bin16
    (b"\x94\x00\x03\xc6\x00\x00\x00\x01m\x90", (REQ, 3, "m")),  # bin32
    (pack([0, 4, b"", []]), (REQ, 4, "")),
]


@pytest.mark.parametrize(("data", "expected"), MESSAGES)
def test_messages(data: bytes, expected: Seen) -> None:
    for chunks in splits(data):
        frames, error = run(chunks)
        assert (seen(frames), error) == ([expected], None)
        assert frames[0].raw == data


def test_many_messages_in_one_feed_and_split_every_way() -> None:
    stream = b"".join(data for data, _ in MESSAGES)
    expected = [frame for _, frame in MESSAGES]
    for chunks in splits(stream):
        frames, error = run(chunks)
        assert error is None
        assert seen(frames) == expected
        assert b"".join(f.raw for f in frames) == stream


def test_raw_is_the_input_itself_when_it_is_one_message() -> None:
    data = pack([0, 1, "echo", ["hello"]])
    assert MSGPACK_RPC.decoder(MAX).feed(data)[0].raw is data


def test_decoder_carries_on_over_many_feeds() -> None:
    decoder = MSGPACK_RPC.decoder(MAX)
    message = pack([0, 42, "echo", ["x" * 100]])
    for n in range(300):
        frames = decoder.feed(message[: n % 50]) + decoder.feed(message[n % 50 :] + message)
        assert [f.raw for f in frames] == [message, message]
        assert decoder.buffered == 0


def test_reads_larger_than_the_limit_holding_many_small_messages() -> None:
    message = pack([0, 1, "m", [1]])  # 7 bytes
    stream = message * 1000
    for chunks in ([stream], [stream[:3], stream[3:]]):
        frames, error = run(chunks, max_size=16)
        assert error is None and len(frames) == 1000


def test_unpacker_is_renewed_after_a_large_message() -> None:
    decoder = MSGPACK_RPC.decoder(1 << 20)
    big = pack([0, 1, "big", [BIG]])
    assert len(big) > RENEW_ABOVE
    unpacker = decoder._unpacker
    assert [f.raw for f in decoder.feed(big[:100])] == []
    assert [f.raw for f in decoder.feed(big[100:] + big[:5])] == [big]
    assert decoder._unpacker is unpacker  # not between messages yet
    assert [f.raw for f in decoder.feed(big[5:])] == [big]
    assert decoder._unpacker is not unpacker
    small = pack([2, "after", []])
    assert seen(decoder.feed(small * 2)) == [(ONEWAY, None, "after")] * 2


def test_eof_inside_a_message_shows_in_buffered() -> None:
    decoder = MSGPACK_RPC.decoder(MAX)
    message = pack([0, 1, "echo", []])
    assert decoder.feed(message[:-1]) == [] and decoder.buffered == len(message) - 1
    assert decoder.feed(b"") == [] and decoder.buffered == len(message) - 1
    assert len(decoder.feed(message[-1:])) == 1 and decoder.buffered == 0


# -- malformed input -------------------------------------------------------------------------

GOOD = pack([2, "ok", []])
BAD: list[tuple[bytes, str]] = [
    (b"G", "message is not an array (first byte 0x47)"),
    (b"GET / HTTP/1.1\r\n", "message is not an array (first byte 0x47)"),
    (pack({"type": 0}), "message is not an array (first byte 0x81)"),
    (pack("text"), "message is not an array (first byte 0xa4)"),
    (b"\x90", "message is an array of 0 elements, not 3 or 4"),
    (pack([0, 1, "m", [], 5]), "message is an array of 5 elements, not 3 or 4"),
    (pack([0, 1]), "message is an array of 2 elements, not 3 or 4"),
    (pack([3, 1, "m", []]), "unknown message type 3"),
    (pack([-1, 1, "m", []]), "unknown message type -1"),
    (pack([1000, 1, "m", []]), "unknown message type 1000"),
    (pack(["0", 1, "m", []]), "message type is not an integer"),
    (pack([False, 1, "m", []]), "message type is not an integer"),
    (pack([0.0, 1, "m", []]), "message type is not an integer"),
    (pack([0, 1, "m"]), "request is an array of 3 elements, not 4"),
    (pack([1, 1, None]), "response is an array of 3 elements, not 4"),
    (pack([2, "m", [], 1]), "notification is an array of 4 elements, not 3"),
    (pack([0, -1, "m", []]), "msgid -1 is not a uint32"),
    (pack([1, 1 << 32, None, None]), "msgid 4294967296 is not a uint32"),
    (pack([0, "1", "m", []]), "msgid is not an integer"),
    (pack([0, True, "m", []]), "msgid is not an integer"),
    (pack([0, None, "m", []]), "msgid is not an integer"),
    (pack([0, 1.0, "m", []]), "msgid is not an integer"),
    (pack([0, 1, 1.5, []]), "method is not a string"),
    (pack([0, 1, None, []]), "method is not a string"),
    (pack([0, 1, 7, []]), "method is not a string"),
    (pack([2, None, []]), "method is not a string"),
    (b"\x94\x00\x01\xa2\xc3\x28\x90", "method is not valid UTF-8"),
    (b"\x93\x02\xa1\xff\x90", "method is not valid UTF-8"),
    (b"\x94\x00\x01\xc4\x02\xc3\x28\x90", "method is not valid UTF-8"),  # as bin8
    (pack([0, 1, b"m", {}]), "params is not an array"),
    (pack([0, 1, "m", {"a": 1}]), "params is not an array"),
    (pack([0, 1, "m", "a"]), "params is not an array"),
    (pack([2, "m", None]), "params is not an array"),
    (b"\x94\x00\x01\xa1m\x91\xc1", "malformed msgpack: reserved byte 0xc1"),
    (b"\xc1", "malformed msgpack: reserved byte 0xc1"),
    (b"\x94\x00\x01\xa1m" + b"\x91" * 1100 + b"\x00", "malformed msgpack: nested too deep"),
]


@pytest.mark.parametrize(("data", "reason"), BAD)
def test_malformed(data: bytes, reason: str) -> None:
    for chunks in splits(GOOD + data + GOOD):
        frames, error = run(chunks)
        assert (seen(frames), error) == ([(ONEWAY, None, "ok")], reason)


def test_error_is_sticky_and_carries_the_frames_before_it() -> None:
    decoder = MSGPACK_RPC.decoder(MAX)
    with pytest.raises(RpcError) as caught:
        decoder.feed(GOOD + GOOD + b"\x90" + GOOD)
    assert caught.value.reason == "message is an array of 0 elements, not 3 or 4"
    assert [f.raw for f in caught.value.frames] == [GOOD, GOOD]
    with pytest.raises(RpcError) as again:
        decoder.feed(GOOD)
    assert again.value is caught.value
    assert decoder.buffered == 0


def test_bad_limit() -> None:
    with pytest.raises(ValueError, match="max_message_size must be positive"):
        MsgpackRpcDecoder(0)


# -- size limits -----------------------------------------------------------------------------

TOO_LARGE = "message larger than max_message_size (64 bytes)"
DECLARES = "message declares more than max_message_size (64 bytes)"


def sized(total: int) -> bytes:
    """A request of exactly `total` bytes (bin8 param)."""
    data = pack([0, 1, "m", [b"x" * (total - 8)]])
    assert len(data) == total
    return data


def test_message_at_the_limit_passes_one_byte_more_is_refused() -> None:
    for chunks in splits(sized(64)):
        assert seen(run(chunks, 64)[0]) == [(REQ, 1, "m")]
    assert run([sized(65)], 64) == ([], TOO_LARGE)  # 64 bytes fed, the message not done
    for chunks in splits(sized(65)):  # or the bin8 header gives it away first
        assert run(chunks, 64) in (([], TOO_LARGE), ([], DECLARES))


def test_oversized_message_is_refused_when_the_limit_fills() -> None:
    """Where no header walked declares too much, the refusal comes at max_message_size."""
    data = b"\x94\x00\x01\xa1m" + b"\x91" * 200  # nesting past the walk budget
    decoder = MSGPACK_RPC.decoder(128)
    for i in range(127):
        assert decoder.feed(data[i : i + 1]) == []
    assert decoder.buffered == 127
    with pytest.raises(RpcError, match=r"larger than max_message_size \(128 bytes\)"):
        decoder.feed(data[127:128])


HEAD = b"\x94\x00\x01\xa1m\x91"  # [0, 1, "m", [<one param that follows>
DECLARED: list[tuple[bytes, str]] = [
    (HEAD + b"\xc6\x40\x00\x00\x00", "bin32 of 1 GiB"),
    (HEAD + b"\xc5\x00\x3a", "bin16 of 58: 6 + 3 + 58 > 64"),
    (HEAD + b"\xdb\x00\x01\x00\x00", "str32"),
    (HEAD + b"\xc9\x00\x00\x01\x00\x05", "ext32"),
    (HEAD + b"\xdd\xff\xff\xff\xff", "array32 of 4G elements"),
    (HEAD + b"\xde\x00\x20", "map16 of 32 entries: 64 elements"),
    (HEAD + b"\xdc\x00\x3a", "array16 of 58 one-byte elements at least"),
    (b"\x94\x00\x01\xdb\x10\x00\x00\x00", "method str32"),
    (b"\xdd\x7f\xff\xff\xff", "the envelope itself"),
    (HEAD + b"\x92\x91\x91\xc6\x00\x00\x01\x00", "nested bin32"),
]


@pytest.mark.parametrize(("data", "why"), DECLARED)
def test_declared_sizes_refused_at_their_header(data: bytes, why: str) -> None:
    for chunks in splits(data):
        assert run(chunks, 64) == ([], DECLARES), why
    decoder = MSGPACK_RPC.decoder(64)
    with pytest.raises(RpcError, match="declares more"):
        decoder.feed(data)


def test_declared_size_just_fitting_waits() -> None:
    assert run([HEAD + b"\xc4\x38"], 64) == ([], None)  # 6 + 2 + 56 = 64: may still come
    assert run([HEAD + b"\xc4\x39"], 64) == ([], DECLARES)  # 65


def test_past_the_walk_budget_only_the_limit_holds() -> None:
    """A bin32 declared after WALK_BUDGET headers is refused when the limit fills."""
    params = b"\xdc\x00\x64" + b"\x00" * WALK_BUDGET  # array16 of 100, then 64 fixints
    data = b"\x94\x00\x01\xa1m" + params + b"\xc6\x40\x00\x00\x00"
    limit = len(data) + 100
    assert run([data], limit) == ([], None)
    reason = f"message larger than max_message_size ({limit} bytes)"
    assert run([data, b"\x00" * 100], limit) == ([], reason)


def test_buffering_stays_within_the_limit() -> None:
    decoder = MSGPACK_RPC.decoder(1000)
    data = pack([0, 1, "m", [b"x" * 900]])
    for i in range(len(data) - 1):
        decoder.feed(data[i : i + 1])
        assert decoder.buffered == i + 1 <= 1000
        assert len(decoder._tail) == decoder.buffered


# -- msgid rewriting -------------------------------------------------------------------------

IDS = [0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24, MAX_ID]  # 1, 2, 3 and 5-byte uints
SIZES = {0: 1, 1: 1, 127: 1, 128: 2, 255: 2, 256: 3, 65535: 3, 65536: 5, 1 << 24: 5, MAX_ID: 5}


@pytest.mark.parametrize("new_id", IDS)
def test_encode_uint32(new_id: int) -> None:
    assert encode_uint32(new_id) == pack(new_id)
    assert len(encode_uint32(new_id)) == SIZES[new_id]


REWRITTEN: list[list[Any]] = [
    [0, 0, "echo", ["hello", 1, None]],
    [0, 0, "m", [BIG[:300]]],  # past the small-message path
    [1, 0, None, {"a": [1, 2]}],
    [1, 0, "failed", None],
]


@pytest.mark.parametrize("message", REWRITTEN)
@pytest.mark.parametrize("old_id", IDS)
def test_with_request_id(message: list[Any], old_id: int) -> None:
    original = [message[0], old_id, *message[2:]]
    frame = MSGPACK_RPC.decoder(MAX).feed(pack(original))[0]
    for new_id in IDS:
        rewritten = MSGPACK_RPC.with_request_id(frame, new_id)
        assert msgpack.unpackb(rewritten) == [message[0], new_id, *message[2:]]
        again = MSGPACK_RPC.decoder(MAX).feed(rewritten)[0]
        assert (again.kind, again.request_id, again.method) == (
            frame.kind,
            new_id,
            frame.method,
        )
        assert len(rewritten) - len(frame.raw) == SIZES[new_id] - SIZES[old_id]
        assert (
            rewritten[again.id_offset + again.id_length :]
            == frame.raw[frame.id_offset + frame.id_length :]
        )


@pytest.mark.parametrize(
    "data",
    [
        b"\xdc\x00\x04\x00\x05\xa1m\x90",
        b"\x94\xcc\x00\x05\xa1m\x90",
        b"\x94\x00\xcf\x00\x00\x00\x00\xff\xff\xff\xff\xa1m\x90",
        b"\x94\x00\xd2\x00\x00\x00\x07\xa1m\x90",
        b"\x94\xd0\x01\xcd\x00\x05\xc0\xc0",
    ],
)
def test_with_request_id_of_other_encodings(data: bytes) -> None:
    frame = MSGPACK_RPC.decoder(MAX).feed(data)[0]
    expected = msgpack.unpackb(data)
    for new_id in IDS:
        expected[1] = new_id
        assert msgpack.unpackb(MSGPACK_RPC.with_request_id(frame, new_id)) == expected


def test_with_request_id_refuses() -> None:
    request = MSGPACK_RPC.decoder(MAX).feed(pack([0, 1, "m", []]))[0]
    notification = MSGPACK_RPC.decoder(MAX).feed(pack([2, "m", []]))[0]
    with pytest.raises(ValueError, match="no msgid"):
        MSGPACK_RPC.with_request_id(notification, 1)
    for bad in (-1, MAX_ID + 1):
        with pytest.raises(ValueError, match="not a uint32"):
            MSGPACK_RPC.with_request_id(request, bad)


# -- error responses, sniffing, registry ------------------------------------------------------


@pytest.mark.parametrize("request_id", IDS)
def test_error_response(request_id: int) -> None:
    data = MSGPACK_RPC.error_response(request_id, "upstream timeout")
    assert msgpack.unpackb(data) == [1, request_id, "upstream timeout", None]
    assert seen(MSGPACK_RPC.decoder(MAX).feed(data)) == [(RESP, request_id, "")]
    with pytest.raises(ValueError, match="not a uint32"):
        MSGPACK_RPC.error_response(MAX_ID + 1, "x")


SNIFF: list[tuple[bytes, bool | None]] = [
    (b"", None),
    (b"\x94", None),
    (b"\x93", None),
    (b"\x94\x00", True),
    (b"\x94\x01", True),
    (b"\x93\x02", True),
    (pack([0, 1, "echo", []]), True),
    (pack([1, 1, None, 1]), True),
    (pack([2, "tick", []]), True),
    (b"\x94\x02", False),
    (b"\x93\x00", False),
    (b"\x93\x01", False),
    (b"\x94\x03", False),
    (b"\x94\xcc", False),
    (b"\x95\x00", False),
    (b"\x92", False),
    (b"GET / HTTP/1.1\r\n", False),
    (b"PRI * HTTP/2.0\r\n", False),
    (b"*1\r\n$4\r\nPING\r\n", False),
    (b"\x16\x03\x01", False),  # TLS
    (b"\x10\x0c\x00\x04MQTT", False),
    (b"\x00\x00\x00\x10\x80\x01", False),  # framed Thrift
    (b"\xda\xbb\xc2", False),  # Dubbo
]


@pytest.mark.parametrize(("prefix", "expected"), SNIFF)
def test_sniff(prefix: bytes, expected: bool | None) -> None:
    assert MSGPACK_RPC.sniff(prefix) is expected


def test_registry() -> None:
    assert lookup("msgpack_rpc") is MSGPACK_RPC
    assert CODECS == {"msgpack_rpc": MSGPACK_RPC}
    assert isinstance(MSGPACK_RPC, MsgpackRpc) and MSGPACK_RPC.max_request_id == MAX_ID
    with pytest.raises(LookupError, match=r"unknown RPC codec 'thrift' \(known: msgpack_rpc\)"):
        lookup("thrift")
