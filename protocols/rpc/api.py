"""The contract of the framed RPC codecs: what an RPC proxy sees of any protocol.

Like MOSN's xprotocol, the proxy (filters/network/rpc_proxy) works on a small surface
that every RPC codec provides, so msgpack-RPC, Thrift or Dubbo differ by one module:

- a per-connection `FrameDecoder` cuts the byte stream into `Frame`s: the kind of message,
  its request id, the method name to route on, and the message's exact bytes (forwarded
  untouched: the proxy never re-encodes a body);
- `with_request_id` gives the same message with another id, cheaply: a proxy multiplexes
  many callers over one upstream connection by giving each request an id of its own and
  restoring the caller's id on the response;
- `error_response` is what the proxy answers with itself (timeout, no route, overflow);
- `sniff` tells a protocol-sniffing listener whether a connection speaks this protocol.

Malformed input raises `RpcError` (the family's one error type) with a reason; a decoder
holds at most one incomplete message of at most `max_message_size` bytes.

Adding a codec: a module `protocols/rpc/<name>.py` with one object satisfying `RpcCodec`,
and one line in the `CODECS` table of `protocols/rpc/__init__.py`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from protocols.errors import ProtocolError


class FrameKind(enum.Enum):
    REQUEST = "request"
    """A call that expects a response with the same request id."""
    RESPONSE = "response"
    """The answer to a request (a result or an error: the proxy does not look)."""
    ONEWAY = "oneway"
    """A notification: no request id, no response."""


@dataclass(slots=True)
class Frame:
    """One message as the proxy sees it."""

    kind: FrameKind
    request_id: int | None
    """None for ONEWAY."""
    method: str
    """The service/method name to route on; '' for responses."""
    raw: bytes
    """The exact bytes of the whole message, as they arrived."""
    id_offset: int = 0
    """Where the request id's encoding starts in `raw` (for `with_request_id`)."""
    id_length: int = 0
    """How many bytes of `raw` encode the request id (0 for ONEWAY)."""


class RpcError(ProtocolError):
    """Input an RPC codec refuses; `reason` says why.

    `frames` holds the frames that the same `feed` call completed before the error, so a
    proxy can still serve them before it closes the connection. A decoder that raised
    raises the same error for every later `feed`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.frames: list[Frame] = []


class FrameDecoder(Protocol):
    """One connection's (one direction's) decoder."""

    def feed(self, data: bytes) -> list[Frame]:
        """The frames that `data` completes, in order; raises RpcError. EOF needs no call
        (`buffered` then tells whether the stream stopped inside a message)."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held (at most the decoder's max_message_size)."""
        ...


class RpcCodec(Protocol):
    """What every RPC codec provides; one stateless instance serves every connection."""

    name: str
    """The name config uses (the key in CODECS)."""
    max_request_id: int
    """Ids that `with_request_id` and `error_response` take are 0..max_request_id."""

    def decoder(self, max_message_size: int) -> FrameDecoder:
        """A decoder for one connection, refusing messages longer than max_message_size."""
        ...

    def with_request_id(self, frame: Frame, new_id: int) -> bytes:
        """`frame.raw` with `new_id` as its request id (REQUEST or RESPONSE frames);
        only the id's bytes change, the rest is copied as it is."""
        ...

    def response_failed(self, frame: Frame) -> bool:
        """Whether a RESPONSE frame carries an error rather than a result (for stats)."""
        ...

    def error_response(self, request_id: int, message: str) -> bytes:
        """An error response to `request_id` carrying `message`."""
        ...

    def sniff(self, prefix: bytes) -> bool | None:
        """Whether a stream starting with `prefix` speaks this protocol: True, False, or
        None when more bytes are needed to tell."""
        ...
