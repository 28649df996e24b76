"""The request/response vocabulary shared by the HTTP/1.1 and HTTP/2 codecs.

A message is a head (`RequestHeaders` / `ResponseHeaders`), zero or more `Data`, and
optionally `Trailers`; the last event of a message has `end_stream` set (Trailers
always end it). HTTP/1 uses stream id 1 for every message on a connection; HTTP/2 uses
the real stream id. Filters never need to know which version produced an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.http.headers import Headers


@dataclass(slots=True)
class RequestHeaders:
    method: bytes
    path: bytes
    """The request target in origin form (`/a/b?c`), or authority form for CONNECT."""
    authority: bytes
    """Host / :authority (empty when the client sent none)."""
    headers: Headers
    """Regular headers (no pseudo-headers); for HTTP/1 this includes `host`."""
    scheme: bytes = b"http"
    version: bytes = b"HTTP/1.1"
    """b"HTTP/1.0", b"HTTP/1.1" or b"HTTP/2"."""
    stream_id: int = 1
    end_stream: bool = False
    """No body follows."""
    keep_alive: bool = True
    """HTTP/1: the client allows another request on this connection after this one."""
    upgrade: bytes | None = None
    """HTTP/1 `Upgrade` protocol (e.g. b"websocket"); the body becomes a raw tunnel."""
    expect_continue: bool = False
    content_length: int | None = None


@dataclass(slots=True)
class ResponseHeaders:
    status: int
    headers: Headers
    reason: bytes = b""
    version: bytes = b"HTTP/1.1"
    stream_id: int = 1
    end_stream: bool = False
    keep_alive: bool = True
    """HTTP/1: the server allows another request on this connection."""
    content_length: int | None = None

    @property
    def informational(self) -> bool:
        return 100 <= self.status < 200


@dataclass(slots=True)
class Data:
    data: bytes
    stream_id: int = 1
    end_stream: bool = False


@dataclass(slots=True)
class Trailers:
    headers: Headers
    stream_id: int = 1
    end_stream: bool = field(default=True, init=False)


@dataclass(slots=True)
class StreamReset:
    """The peer abandoned one stream (HTTP/2 RST_STREAM); other streams go on."""

    stream_id: int
    error_code: int = 0


@dataclass(slots=True)
class ConnectionTerminated:
    """HTTP/2 GOAWAY: no new streams; streams above last_stream_id were not processed."""

    error_code: int = 0
    last_stream_id: int = 0


Event = RequestHeaders | ResponseHeaders | Data | Trailers | StreamReset | ConnectionTerminated
