"""gRPC status codes, the `grpc-status` / `grpc-message` trailers and rich error details.

`grpc-status-details-bin` carries a serialised `google.rpc.Status` (code, message, details),
whose details are `google.protobuf.Any`s such as `google.rpc.ErrorInfo` (reason, domain,
metadata), as Dapr sends them. Those three messages are small and fixed, so they are written
and read here by hand: this module needs no protobuf runtime. Dapr's tables between gRPC and
HTTP statuses live here too.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocols.errors import ProtocolError

ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
MAX_MESSAGE_BYTES = 1024
"""grpc-message is cut to this many bytes of UTF-8 (before percent-encoding)."""


class StatusCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


HTTP_STATUS: dict[int, int] = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 408,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.UNAUTHENTICATED: 401,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
}
"""gRPC status -> HTTP status, as Dapr's HTTPStatusFromCode maps them."""
FROM_HTTP_STATUS = {
    408: StatusCode.CANCELLED,
    500: StatusCode.UNKNOWN,
    400: StatusCode.INTERNAL,
    504: StatusCode.DEADLINE_EXCEEDED,
    404: StatusCode.NOT_FOUND,
    409: StatusCode.ALREADY_EXISTS,
    403: StatusCode.PERMISSION_DENIED,
    401: StatusCode.UNAUTHENTICATED,
    429: StatusCode.RESOURCE_EXHAUSTED,
    501: StatusCode.UNIMPLEMENTED,
    503: StatusCode.UNAVAILABLE,
}
"""HTTP status -> gRPC status, as Dapr's CodeFromHTTPStatus maps them (not the inverse of
HTTP_STATUS: Dapr maps 400 to INTERNAL)."""


def http_status(code: int) -> int:
    """The HTTP status Dapr answers for a gRPC status code (500 for codes it does not know)."""
    return HTTP_STATUS.get(code, 500)


def code_from_http_status(status: int) -> StatusCode:
    """The gRPC status for a non-2xx HTTP status (UNKNOWN for the rest)."""
    return FROM_HTTP_STATUS.get(status, StatusCode.UNKNOWN)


class StatusError(ProtocolError):
    """A status detail that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    reason: str
    domain: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    code: StatusCode
    message: str = ""
    error_info: ErrorInfo | None = None

    def trailers(self) -> list[tuple[bytes, bytes]]:
        """The trailer fields that end a call with this status."""
        fields = [(b"grpc-status", b"%d" % self.code)]
        if self.message:
            fields.append((b"grpc-message", percent_encode(self.message)))
        if self.error_info is not None:
            details = encode_status(self)
            fields.append((b"grpc-status-details-bin", base64.b64encode(details).rstrip(b"=")))
        return fields


# -- grpc-message --------------------------------------------------------------------------------


def percent_encode(message: str) -> bytes:
    """grpc-message: UTF-8, with bytes outside printable ASCII and `%` percent-encoded."""
    out = bytearray()
    for byte in message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]:
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def percent_decode(value: bytes) -> str:
    """The inverse of percent_encode; malformed escapes are kept as they are (as the spec asks)."""
    out = bytearray()
    index = 0
    while index < len(value):
        byte = value[index]
        if byte == 0x25 and _is_hex(value[index + 1 : index + 3]):
            out.append(int(value[index + 1 : index + 3], 16))
            index += 3
            continue
        out.append(byte)
        index += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


# -- google.rpc.Status, by hand -----------------------------------------------------------------


def encode_status(status: Status) -> bytes:
    """`google.rpc.Status{code, message, details: [Any(ErrorInfo)]}` in protobuf's wire form."""
    out = bytearray()
    if status.code:
        out += _key(1, 0) + _varint(int(status.code))
    if status.message:
        out += _length_delimited(2, status.message.encode())
    if status.error_info is not None:
        info = status.error_info
        body = _length_delimited(1, info.reason.encode()) + _length_delimited(
            2, info.domain.encode()
        )
        for name, value in sorted(info.metadata.items()):
            entry = _length_delimited(1, name.encode()) + _length_delimited(2, value.encode())
            body += _length_delimited(3, entry)
        any_ = _length_delimited(1, ERROR_INFO_TYPE.encode()) + _length_delimited(2, body)
        out += _length_delimited(3, any_)
    return bytes(out)


def decode_status(data: bytes) -> Status:
    """The code, message and first ErrorInfo of a serialised google.rpc.Status."""
    fields = _fields(data)
    code = fields.get(1, [0])[-1]
    message = fields.get(2, [b""])[-1]
    if not isinstance(code, int) or not isinstance(message, bytes):
        raise StatusError("google.rpc.Status has fields of the wrong wire type")
    info = None
    for detail in fields.get(3, []):
        if not isinstance(detail, bytes):
            raise StatusError("a google.rpc.Status detail is not a message")
        any_ = _fields(detail)
        if _text(any_, 1) == ERROR_INFO_TYPE:
            value = any_.get(2, [b""])[-1]
            if not isinstance(value, bytes):
                raise StatusError("Any.value is not bytes")
            info = _error_info(value)
            break
    try:
        status_code = StatusCode(code)
    except ValueError:
        status_code = StatusCode.UNKNOWN
    return Status(status_code, _utf8(message), info)


def _error_info(data: bytes) -> ErrorInfo:
    fields = _fields(data)
    metadata: dict[str, str] = {}
    for entry in fields.get(3, []):
        if not isinstance(entry, bytes):
            raise StatusError("ErrorInfo.metadata entry is not a message")
        pair = _fields(entry)
        metadata[_text(pair, 1)] = _text(pair, 2)
    return ErrorInfo(_text(fields, 1), _text(fields, 2), metadata)


def _text(fields: dict[int, list[int | bytes]], number: int) -> str:
    value = fields.get(number, [b""])[-1]
    if not isinstance(value, bytes):
        raise StatusError(f"field {number} is not a string")
    return _utf8(value)


def _utf8(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise StatusError("a string field is not UTF-8") from None


def _fields(data: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> values, for the varint and length-delimited wire types only."""
    fields: dict[int, list[int | bytes]] = {}
    index = 0
    while index < len(data):
        key, index = _read_varint(data, index)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise StatusError("field number 0")
        value: int | bytes
        if wire == 0:
            value, index = _read_varint(data, index)
        elif wire == 2:
            size, index = _read_varint(data, index)
            if index + size > len(data):
                raise StatusError("a length-delimited field runs past the end")
            value, index = data[index : index + size], index + size
        elif wire == 5:
            value, index = int.from_bytes(_take(data, index, 4), "little"), index + 4
        elif wire == 1:
            value, index = int.from_bytes(_take(data, index, 8), "little"), index + 8
        else:
            raise StatusError(f"wire type {wire} is not supported here")
        fields.setdefault(number, []).append(value)
    return fields


def _take(data: bytes, index: int, size: int) -> bytes:
    if index + size > len(data):
        raise StatusError("a fixed-size field runs past the end")
    return data[index : index + size]


def _read_varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if index >= len(data) or shift > 63:
            raise StatusError("truncated or overlong varint")
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload
