"""gRPC framing and status fuzz: any bytes, split anywhere, give the same messages and the
same error as when fed whole - GrpcError / StatusError and nothing else - and the decoder
never holds more than one prefix and one message of at most its limit.

A few hundred examples each by default; `MECHA_FUZZ=deep` runs thousands.
"""

from __future__ import annotations

import itertools
import os

from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.grpc.framing import (
    PREFIX_SIZE,
    GrpcError,
    MessageDecoder,
    encode_message,
    format_timeout,
    parse_timeout,
)
from protocols.grpc.status import (
    ErrorInfo,
    Status,
    StatusCode,
    StatusError,
    decode_status,
    encode_status,
    percent_decode,
    percent_encode,
)

settings.register_profile(
    "grpc-fast", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("grpc-deep", max_examples=5000, deadline=None)
PROFILE = settings.get_profile(
    "grpc-deep" if os.environ.get("MECHA_FUZZ") == "deep" else "grpc-fast"
)
LIMIT = 64


def run(chunks: list[bytes]) -> tuple[list[bytes], str | None]:
    decoder = MessageDecoder(LIMIT)
    out: list[bytes] = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
            assert decoder.buffered <= PREFIX_SIZE + LIMIT + len(chunk)
        decoder.end()
    except GrpcError as error:
        assert isinstance(error.code, StatusCode)
        return out + error.messages, f"{error.code}:{error.reason}"
    return out, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


messages = st.lists(st.binary(max_size=80), max_size=6)


@PROFILE
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_split_anywhere(data: bytes, cuts: list[int]) -> None:
    whole = run([data])
    assert run(split(data, cuts)) == whole


@PROFILE
@given(messages, st.lists(st.integers(0, 600), max_size=8), st.binary(max_size=6))
def test_valid_streams_and_garbage_after(
    payloads: list[bytes], cuts: list[int], tail: bytes
) -> None:
    stream = b"".join(encode_message(p) for p in payloads)
    out, error = run(split(stream, cuts))
    expected = list(payloads)
    first_big = next((i for i, p in enumerate(payloads) if len(p) > LIMIT), None)
    if first_big is None:
        assert (out, error) == (expected, None)
    else:
        assert out == expected[:first_big] and error is not None and "RESOURCE_EXHAUSTED" in error
    assert run(split(stream + tail, cuts)) == run([stream + tail])


@PROFILE
@given(st.binary(max_size=12))
def test_timeouts_parse_or_refuse(value: bytes) -> None:
    try:
        seconds = parse_timeout(value)
    except GrpcError as error:
        assert error.code is StatusCode.INTERNAL
    else:
        assert seconds >= 0


@PROFILE
@given(st.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_formatted_timeouts_parse_back(seconds: float) -> None:
    assert parse_timeout(format_timeout(seconds)) >= seconds * (1 - 1e-9)


@PROFILE
@given(st.text(max_size=200))
def test_grpc_message_round_trip(text: str) -> None:
    encoded = percent_encode(text)
    assert all(0x20 <= byte <= 0x7E for byte in encoded)
    if len(text.encode()) <= 1024:
        assert percent_decode(encoded) == text.encode("utf-8", "replace").decode()


@PROFILE
@given(st.binary(max_size=200))
def test_status_details_decode_or_refuse(data: bytes) -> None:
    try:
        decoded = decode_status(data)
    except StatusError:
        return
    assert isinstance(decoded.code, StatusCode)


text = st.text(max_size=30)


@PROFILE
@given(st.sampled_from(list(StatusCode)), text, text, text, st.dictionaries(text, text, max_size=4))
def test_status_matches_protobuf(code: StatusCode, message: str, reason: str, domain: str,
                                 metadata: dict[str, str]) -> None:  # fmt: skip
    status = Status(code, message, ErrorInfo(reason, domain, metadata))
    parsed = status_pb2.Status.FromString(encode_status(status))
    assert (parsed.code, parsed.message) == (code, message)
    info = error_details_pb2.ErrorInfo()
    assert parsed.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (reason, domain, metadata)
    assert decode_status(parsed.SerializeToString()) == status
