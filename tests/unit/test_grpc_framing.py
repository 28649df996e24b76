"""gRPC framing, timeouts and statuses (protocols/grpc): known cases, checked against the
protobuf runtime's own google.rpc.Status for the hand-written details encoding."""

from __future__ import annotations

import base64

import pytest
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from protocols.grpc.framing import (
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

# -- messages ----------------------------------------------------------------------------------


def test_messages_split_anywhere() -> None:
    stream = encode_message(b"first") + encode_message(b"") + encode_message(b"x" * 300)
    for cut in range(len(stream) + 1):
        decoder = MessageDecoder()
        messages = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        decoder.end()
        assert messages == [b"first", b"", b"x" * 300]


def test_byte_at_a_time() -> None:
    decoder = MessageDecoder()
    out: list[bytes] = []
    for byte in encode_message(b"hello") * 2:
        out += decoder.feed(bytes([byte]))
    assert out == [b"hello", b"hello"]


def test_over_the_limit_is_refused_from_the_prefix() -> None:
    decoder = MessageDecoder(max_message_size=10)
    assert decoder.feed(encode_message(b"0123456789")) == [b"0123456789"]
    with pytest.raises(GrpcError) as caught:
        decoder.feed(encode_message(b"x" * 11)[:5])  # the prefix alone is enough
    assert caught.value.code is StatusCode.RESOURCE_EXHAUSTED
    assert "11 vs. 10" in caught.value.reason


def test_compressed_and_bad_flags() -> None:
    with pytest.raises(GrpcError) as compressed:
        MessageDecoder().feed(b"\x01\x00\x00\x00\x01x")
    assert compressed.value.code is StatusCode.UNIMPLEMENTED
    with pytest.raises(GrpcError) as flag:
        MessageDecoder().feed(b"\x07\x00\x00\x00\x00")
    assert flag.value.code is StatusCode.INTERNAL


def test_truncated_stream() -> None:
    decoder = MessageDecoder()
    decoder.feed(encode_message(b"abc")[:-1])
    with pytest.raises(GrpcError) as caught:
        decoder.end()
    assert caught.value.code is StatusCode.INTERNAL
    partial_prefix = MessageDecoder()
    partial_prefix.feed(b"\x00\x00")
    with pytest.raises(GrpcError):
        partial_prefix.end()


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"1S", 1.0), (b"250m", 0.25), (b"2M", 120.0), (b"1H", 3600.0), (b"99999999n", 0.099999999),
     (b"5u", 5e-6)],
)  # fmt: skip
def test_parse_timeout(value: bytes, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1s", b"-1S", b"123456789S", b"1.5S", b" 1S"])
def test_malformed_timeout(value: bytes) -> None:
    with pytest.raises(GrpcError) as caught:
        parse_timeout(value)
    assert caught.value.code is StatusCode.INTERNAL


@pytest.mark.parametrize("seconds", [0.0, 1e-9, 0.001, 0.5, 1.0, 30.0, 59.9, 3600.0, 1e9])
def test_format_timeout_round_trips_without_shortening(seconds: float) -> None:
    value = format_timeout(seconds)
    assert len(value) <= 9
    assert parse_timeout(value) >= seconds * (1 - 1e-9)


# -- statuses ----------------------------------------------------------------------------------


def test_percent_encoding() -> None:
    assert percent_encode("plain text") == b"plain text"
    assert percent_encode("100% é\n") == b"100%25 %C3%A9%0A"
    assert percent_decode(b"100%25 %C3%A9%0A") == "100% é\n"
    assert percent_decode(b"bad %zz escape %4") == "bad %zz escape %4"


def test_trailers_of_ok_and_errors() -> None:
    assert Status(StatusCode.OK).trailers() == [(b"grpc-status", b"0")]
    plain = dict(Status(StatusCode.NOT_FOUND, "no such thing").trailers())
    assert plain == {b"grpc-status": b"5", b"grpc-message": b"no such thing"}
    info = ErrorInfo("DAPR_STATE_NOT_FOUND", "dapr.io", {"appID": "a"})
    rich = dict(Status(StatusCode.INVALID_ARGUMENT, "store x", info).trailers())
    raw = rich[b"grpc-status-details-bin"]
    assert not raw.endswith(b"=")  # binary metadata goes unpadded
    details = base64.b64decode(raw + b"=" * (-len(raw) % 4))
    parsed = status_pb2.Status.FromString(details)
    assert (parsed.code, parsed.message) == (3, "store x")
    error_info = error_details_pb2.ErrorInfo()
    assert parsed.details[0].Unpack(error_info)
    assert (error_info.reason, error_info.domain) == ("DAPR_STATE_NOT_FOUND", "dapr.io")
    assert dict(error_info.metadata) == {"appID": "a"}


def test_decode_what_protobuf_encodes() -> None:
    info = error_details_pb2.ErrorInfo(reason="R", domain="d", metadata={"k": "v", "x": "ü"})
    status = status_pb2.Status(code=10, message="aborted ✓")
    status.details.add().Pack(info)
    decoded = decode_status(status.SerializeToString())
    assert decoded == Status(
        StatusCode.ABORTED, "aborted ✓", ErrorInfo("R", "d", {"k": "v", "x": "ü"})
    )
    again = status_pb2.Status.FromString(encode_status(decoded))
    unpacked = error_details_pb2.ErrorInfo()
    assert again.details[0].Unpack(unpacked)
    assert (again.code, again.message, unpacked) == (status.code, status.message, info)


@pytest.mark.parametrize("data", [b"\x08", b"\x12\x05ab", b"\x0b", b"\x00", b"\x12\x01\xff"])
def test_decode_refuses_malformed_status(data: bytes) -> None:
    with pytest.raises(StatusError):
        decode_status(data)
