"""Fuzzing the msgpack-RPC decoder with one invariant: any input, split anywhere, gives the
same frames as the whole input fed at once and then RpcError or nothing - no other
exception - while what the decoder holds stays within max_message_size. Plus a
differential check against msgpack's own reading of the same stream, and round trips of
generated messages through the decoder and msgid rewriting.

The default run is fast (100-200 examples per test); set
RPC_FUZZ_EXAMPLES=20000 for a deep run.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgpack.exceptions import OutOfData

from protocols.rpc import Frame, FrameKind, RpcError
from protocols.rpc.msgpack_rpc import MAX_ID, MSGPACK_RPC
from tests.unit.test_rpc_msgpack import BAD, DECLARED, MESSAGES

EXAMPLES = int(os.environ.get("RPC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
"""Generated messages cost more to draw and find less: half as many."""
MAX = 256
SIZE_REASONS = (
    f"message larger than max_message_size ({MAX} bytes)",
    f"message declares more than max_message_size ({MAX} bytes)",
)
KINDS = (FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ONEWAY)


def decode(chunks: list[bytes], max_size: int = MAX) -> tuple[list[Frame], str | None]:
    """Feed chunks in order, checking the bounds after each: frames, and the error reason."""
    decoder = MSGPACK_RPC.decoder(max_size)
    frames: list[Frame] = []
    for chunk in chunks:
        try:
            frames += decoder.feed(chunk)
        except RpcError as error:
            return frames + error.frames, error.reason
        assert decoder.buffered <= max_size
        assert len(decoder._tail) == decoder.buffered
    return frames, None


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def pack(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj))


# -- inputs ----------------------------------------------------------------------------------

IDS = st.one_of(st.integers(0, MAX_ID), st.sampled_from([0, 127, 128, 255, 256, 65535, 65536]))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.binary(max_size=24),
    st.binary(min_size=200, max_size=300),  # across the limit
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner, max_size=3),
    ),
    max_leaves=8,
)
NAMES = st.one_of(st.text(max_size=20), st.text(max_size=20).map(str.encode))
"""Method names as str, or as bin (Neovim's clients)."""
MESSAGE = st.one_of(
    st.tuples(st.just(0), IDS, NAMES, st.lists(VALUES, max_size=3)),
    st.tuples(st.just(1), IDS, VALUES, VALUES),
    st.tuples(st.just(2), NAMES, st.lists(VALUES, max_size=3)),
).map(list)

FRAGMENTS = [
    b"\x90", b"\x91", b"\x93", b"\x94", b"\x95", b"\x00", b"\x01", b"\x02", b"\x03", b"\xff",
    b"\xa1m", b"\xa0", b"\xc0", b"\xc1", b"\xc2", b"\xc3", b"\xc4\x05", b"\xc5\x01\x00",
    b"\xc6\x00\x00\x10\x00", b"\xcc\x80", b"\xcd\x01\x00", b"\xce\x00\x01\x00\x00",
    b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00", b"\xd0\xff", b"\xd4\x01\x02", b"\xd6\xff",
    b"\xd9\x03", b"\xdb\x00\x00\x01\x00", b"\xdc\x00\x04", b"\xdd\x00\x00\x00\x03",
    b"\xde\x00\x01", b"\x81", b"\x8f", b"\xc7\x01\xff", b"\xca", b"\xcb", b"\x94\x00\x01\xa1m\x90",
    b"\x93\x02\xa1m\x90", b"\x94\x01\x01\xc0\xc0", b"\xc4\x01m", b"\x93\x02\xc4\x01m\x90",
]  # fmt: skip
SEEDS = [data for data, _ in MESSAGES if len(data) < 600] + [d for d, _ in BAD if len(d) < 600]
SEEDS += [data for data, _ in DECLARED]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Valid messages (generated and from the tables) glued together, then byte-level
    edits: flips, inserts, deletions, repeats, cuts."""
    parts = draw(
        st.lists(st.one_of(st.sampled_from(SEEDS), MESSAGE.map(pack)), min_size=1, max_size=5)
    )
    data = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "cut"]))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
        else:
            del data[at:]
    return bytes(data)


INPUTS = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join),
    mutated(),
)
CUTS = st.lists(st.integers(0, 10_000), max_size=12)


# -- properties ------------------------------------------------------------------------------


@FUZZ
@given(INPUTS, CUTS)
def test_any_input_split_anywhere(data: bytes, points: list[int]) -> None:
    whole, whole_reason = decode([data])
    split, split_reason = decode(cut(data, points))
    assert [f.raw for f in split] == [f.raw for f in whole]
    assert (split_reason is None) == (whole_reason is None)
    assert b"".join(f.raw for f in whole) == data[: sum(len(f.raw) for f in whole)]


def expected(obj: Any) -> tuple[FrameKind, int | None, str] | None:
    """What the decoder must make of one object msgpack read; None: it must refuse it."""
    if type(obj) is not list or len(obj) not in (3, 4) or type(obj[0]) is not int:
        return None
    kind = obj[0]
    if kind not in (0, 1, 2) or len(obj) != (3 if kind == 2 else 4):
        return None
    msgid = None if kind == 2 else obj[1]
    if kind != 2 and (type(msgid) is not int or not 0 <= msgid <= MAX_ID):
        return None
    if kind == 1:
        return FrameKind.RESPONSE, msgid, ""
    method, params = obj[-2:]
    if type(method) not in (str, bytes) or type(params) is not list:
        return None
    try:  # a str name msgpack let through with invalid UTF-8 holds surrogates
        name = method.decode() if type(method) is bytes else method.encode().decode()
    except UnicodeError:
        return None
    return KINDS[kind], msgid, name


def reference(stream: bytes) -> tuple[list[tuple[Any, bytes]], str]:
    """msgpack's own reading of the stream: its objects with their bytes, and how it ended
    ("end", "incomplete", "malformed", or "unbuildable": a value msgpack cannot make, such
    as an unhashable map key, that the decoder never builds)."""
    unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    unpacker.feed(stream)
    objects: list[tuple[Any, bytes]] = []
    start = 0
    while True:
        try:
            obj = unpacker.unpack()
        except OutOfData:
            return objects, "end" if start == len(stream) else "incomplete"
        except (msgpack.FormatError, msgpack.StackError):
            return objects, "malformed"
        except (ValueError, TypeError):
            return objects, "unbuildable"
        stop = unpacker.tell()
        objects.append((obj, stream[start:stop]))
        start = stop


@FUZZ
@given(st.one_of(mutated(), st.lists(MESSAGE.map(pack), max_size=6).map(b"".join)), CUTS)
def test_differential_against_msgpack(stream: bytes, points: list[int]) -> None:
    frames, reason = decode(cut(stream, points))
    objects, ending = reference(stream)
    for index, (obj, raw) in enumerate(objects):
        want = expected(obj)
        if want is None or len(raw) > MAX:
            assert len(frames) == index and reason is not None
            return
        assert index < len(frames), (obj, reason)
        frame = frames[index]
        assert (frame.kind, frame.request_id, frame.method, frame.raw) == (*want, raw)
    if ending == "unbuildable":
        return
    assert len(frames) == len(objects)
    if ending == "end":
        assert reason is None
    elif ending == "incomplete":
        assert reason is None or reason in SIZE_REASONS
    else:  # unless the broken message was already too large
        assert reason is not None
        assert reason.startswith("malformed msgpack") or reason in SIZE_REASONS


@ROUND_TRIP
@given(st.lists(MESSAGE, min_size=1, max_size=6), CUTS)
def test_round_trip(messages: list[list[Any]], points: list[int]) -> None:
    stream = b"".join(pack(m) for m in messages)
    frames, reason = decode(cut(stream, points), max_size=1 << 16)
    assert reason is None and len(frames) == len(messages)
    for message, frame in zip(messages, frames, strict=True):
        assert msgpack.unpackb(frame.raw, strict_map_key=False) == message
        kind = message[0]
        assert frame.kind is KINDS[kind]
        assert frame.request_id == (None if kind == 2 else message[1])
        name = {0: message[2], 1: "", 2: message[1]}[kind]
        assert frame.method == (name.decode() if isinstance(name, bytes) else name)


@ROUND_TRIP
@given(MESSAGE.filter(lambda m: m[0] != 2), IDS)
def test_rewrite_round_trip(message: list[Any], new_id: int) -> None:
    frame = MSGPACK_RPC.decoder(1 << 16).feed(pack(message))[0]
    rewritten = MSGPACK_RPC.with_request_id(frame, new_id)
    assert msgpack.unpackb(rewritten, strict_map_key=False) == [message[0], new_id, *message[2:]]
    again = MSGPACK_RPC.decoder(1 << 16).feed(rewritten)[0]
    assert (again.kind, again.request_id, again.method) == (frame.kind, new_id, frame.method)
    assert MSGPACK_RPC.with_request_id(again, message[1]) == frame.raw
