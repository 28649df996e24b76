"""The HTTP/2 codec as it was on the `h2` package: the reference the differential test
(test_h2_differential.py) holds protocols/http/h2.py to. h2 (and its hpack) do the frames,
the state machine and HPACK; narrow overrides add what RFC 9113 asks and h2 lacks.
"""

from __future__ import annotations

import re
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from typing import cast

import h2.events as h2e
import h2.exceptions as h2x
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hpack import HPACKError
from hpack.struct import Header
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from protocols.http.errors import HttpError
from protocols.http.events import (
    ConnectionTerminated,
    Data,
    Event,
    RequestHeaders,
    ResponseHeaders,
    StreamReset,
    Trailers,
)
from protocols.http.h1_parse import content_length
from protocols.http.h2 import H2Settings
from protocols.http.headers import Headers

HeaderList = list[tuple[bytes, bytes]]
_Endable = RequestHeaders | ResponseHeaders | Data | Trailers

CANCEL = ErrorCodes.CANCEL
NO_ERROR = ErrorCodes.NO_ERROR
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM
DEFAULT_WINDOW = 65535
MAX_WINDOW = (1 << 31) - 1
HTTP2 = b"HTTP/2"
_DEFAULT = H2Settings()

# Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is kept as `trailers`.
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
# What h2 wraps when an HPACK block cannot be decoded: the compression context is lost,
# so such a failure can never be confined to one stream.
_HPACK_FAILURES = (HPACKError, IndexError, TypeError, UnicodeDecodeError)


class _Connection(H2Connection):
    """h2's connection plus the RFC 9113 behaviour h2 lacks, in narrow overrides.

    - A header block that decodes but fails validation, or a body contradicting its
      content-length, is a stream error (§8.1.1): reset with PROTOCOL_ERROR, and an h2
      `StreamReset` replaces its events. HPACK and state-machine failures stay fatal.
    - A GOAWAY with NO_ERROR, received or sent (`graceful_goaway`), does not close the
      connection (§6.8; h2 issue #1181 would refuse every later frame).
    """

    goaway_last_stream_id: int | None = None
    """The lowest last-stream-id of a graceful GOAWAY from the peer, if any."""

    def _receive_frame(self, frame: Frame) -> list[h2e.Event]:
        """h2's, less the `repr(frame)` it formats for a no-op trace log (~5 µs a frame)."""
        events: list[h2e.Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2x.StreamClosedError as exc:
            # Closed by RST_STREAM: a stream error, answered with RST_STREAM.
            if not self._stream_is_closed_by_reset(exc.stream_id):
                raise
            self._send_reset(exc.stream_id, exc.error_code)
            return cast(list[h2e.Event], exc._events)
        except h2x.StreamIDTooLowError as exc:
            # A stream that was closed or cleaned up: a stream error only if by RST_STREAM.
            if self._stream_is_closed_by_reset(exc.stream_id):
                self._send_reset(exc.stream_id, ErrorCodes.STREAM_CLOSED)
                return []
            if self._stream_is_closed_by_end(exc.stream_id):
                raise h2x.StreamClosedError(exc.stream_id) from exc
            raise
        self._prepare_for_sending(frames)
        return events

    def _send_reset(self, stream_id: int, error_code: int) -> None:
        frame = RstStreamFrame(stream_id)
        frame.error_code = error_code
        self._prepare_for_sending([frame])

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[h2e.Event]]:
        try:
            return super()._receive_headers_frame(frame)
        except h2x.ProtocolError as exc:
            if not self._is_stream_error(exc, frame.stream_id):
                raise
            return [], self._reset_malformed(frame.stream_id)

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[h2e.Event]]:
        try:
            return super()._receive_data_frame(frame)
        except h2x.InvalidBodyLengthError as exc:
            if not self._is_stream_error(exc, frame.stream_id):
                raise
            events = self._reset_malformed(frame.stream_id)
            # Nobody will see these bytes: give their connection window back now.
            self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            return [], events

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[h2e.Event]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        last = frame.last_stream_id
        if self.goaway_last_stream_id is not None:
            last = min(last, self.goaway_last_stream_id)
        self.goaway_last_stream_id = last
        event = h2e.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = last
        event.additional_data = frame.additional_data or None
        return [], [event]

    def graceful_goaway(self, last_stream_id: int) -> None:
        self._prepare_for_sending([GoAwayFrame(0, last_stream_id=last_stream_id)])

    def _is_stream_error(self, exc: h2x.ProtocolError, stream_id: int) -> bool:
        stream = self.streams.get(stream_id)
        return (
            type(exc) in (h2x.ProtocolError, h2x.InvalidBodyLengthError)
            and not isinstance(exc.__cause__, _HPACK_FAILURES)
            # A state-machine violation leaves the stream CLOSED: a connection error.
            and stream is not None
            and not stream.closed
        )

    def _reset_malformed(self, stream_id: int) -> list[h2e.Event]:
        self.reset_stream(stream_id, PROTOCOL_ERROR)
        return [h2e.StreamReset(stream_id=stream_id, error_code=PROTOCOL_ERROR, remote_reset=False)]


class _Outbox:
    """DATA waiting for flow-control window on one stream, then how the stream ends."""

    __slots__ = ("chunks", "end", "size", "trailers")

    def __init__(self) -> None:
        self.chunks: deque[memoryview] = deque()
        self.size = 0
        self.end = False
        self.trailers: HeaderList | None = None

    def push(self, data: bytes, end_stream: bool) -> None:
        if data:
            self.chunks.append(memoryview(data))
            self.size += len(data)
        self.end = end_stream

    def take(self, room: int) -> bytes | memoryview:
        """Up to `room` bytes from the front, joining small chunks into one frame."""
        parts: list[memoryview] = []
        taken = 0
        chunks = self.chunks
        while chunks and taken < room:
            head = chunks[0]
            want = room - taken
            if len(head) <= want:
                chunks.popleft()
            else:
                chunks[0] = head[want:]
                head = head[:want]
            parts.append(head)
            taken += len(head)
        self.size -= taken
        return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass(slots=True)
class _Batch:
    """The events of one `feed` call, and each stream's last event (to end it)."""

    events: list[Event] = field(default_factory=list)
    last: dict[int, _Endable] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    """Streams whose remaining events in this batch are swallowed (refused, malformed)."""

    def emit(self, event: _Endable) -> None:
        self.events.append(event)
        self.last[event.stream_id] = event


class H2Codec:
    """One HTTP/2 connection, either side. See the module docstring for the rules."""

    __slots__ = ("_client", "_conn", "_failed", "_local_last", "_outbox", "_settings",
                 "_stop_after", "_unacked")  # fmt: skip

    def __init__(self, client_side: bool, settings: H2Settings = _DEFAULT) -> None:
        # h2 validates and normalises what arrives. What we send is built by _regular and
        # _request_block, which already do what h2's outbound checks would (lowercase
        # names, valid pseudo-headers, no connection-specific fields, blanks stripped,
        # credentials kept out of HPACK tables): h2 repeating it costs ~7% per stream.
        config = H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = _Connection(config)
        conn.local_settings = Settings(
            client=client_side,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
            },
        )
        conn.max_inbound_frame_size = settings.max_frame_size
        conn.decoder.max_header_list_size = settings.max_header_list_size
        self._conn = conn
        self._client = client_side
        self._settings = settings
        self._outbox: dict[int, _Outbox] = {}
        self._unacked: dict[int, int] = {}
        """Payload bytes handed to the caller per stream and not yet acknowledged."""
        self._local_last: int | None = None
        """The last-stream-id of our own graceful GOAWAY."""
        self._stop_after: set[int] = set()
        """Streams to reset with NO_ERROR once their queued response has left."""
        self._failed = False

    # -- connection -----------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the preface (client) and SETTINGS, then open the connection window."""
        self._conn.initiate_connection()
        extra = self._settings.connection_window_size - DEFAULT_WINDOW
        if extra > 0:
            self._conn.increment_flow_control_window(extra)

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def goaway(self, error_code: int = 0, last_stream_id: int | None = None) -> None:
        """NO_ERROR: stop new streams, let the others finish. Otherwise: the end."""
        last = self._conn.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        if error_code:
            with suppress(h2x.H2Error):  # already closed: a GOAWAY went out before
                self._conn.close_connection(error_code, last_stream_id=last)
            return
        if self._closed():
            return  # a GOAWAY with an error already went out
        if self._local_last is not None:
            last = min(last, self._local_last)  # never raise it (RFC 9113 §6.8)
        self._local_last = last
        self._conn.graceful_goaway(last)

    def next_stream_id(self) -> int:
        """The id for the next request; call right before `send_headers` (client side)."""
        if self._going_away():
            raise HttpError("the HTTP/2 connection is going away", 503)
        try:
            return self._conn.get_next_available_stream_id()
        except h2x.NoAvailableStreamIDError as exc:
            raise HttpError("HTTP/2 stream ids are exhausted", 503) from exc

    @property
    def open_streams(self) -> int:
        return self._conn.open_outbound_streams + self._conn.open_inbound_streams

    @property
    def max_outbound_streams(self) -> int:
        """The peer's SETTINGS_MAX_CONCURRENT_STREAMS (2^31 - 1 while it sets none)."""
        return min(self._conn.remote_settings.max_concurrent_streams, MAX_WINDOW)

    # -- receiving ------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Events for `data`; b"" (EOF) gives []. Raises HttpError on a connection error."""
        if not data:
            return []
        if self._failed:
            raise HttpError("the HTTP/2 connection has already failed")
        try:
            received = self._conn.receive_data(data)
        except h2x.ProtocolError as exc:  # h2 has queued GOAWAY
            self._failed = True
            raise HttpError(f"HTTP/2 protocol error: {_brief(exc)}") from exc
        except Exception as exc:  # the contract: any bytes give events or HttpError
            self._failed = True
            self.goaway(PROTOCOL_ERROR)
            raise HttpError(f"invalid HTTP/2 input: {_brief(exc)}") from exc
        return self._translate(received)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The caller passed on `size` payload bytes (`len(Data.data)`): reopen the windows.

        h2 batches the WINDOW_UPDATEs (half a window). Padding went back on arrival; more
        than was received, or anything after the stream was reset, is ignored.
        """
        owed = self._unacked.get(stream_id, 0)
        size = min(size, owed)
        if size <= 0:
            return
        if size == owed:
            del self._unacked[stream_id]
        else:
            self._unacked[stream_id] = owed - size
        self._give_back(stream_id, size)

    # -- sending --------------------------------------------------------------------------

    def send_headers(self, head: RequestHeaders | ResponseHeaders, end_stream: bool) -> None:
        sid = head.stream_id
        if isinstance(head, RequestHeaders):
            block = self._request_block(head)
        else:
            block = [(b":status", b"%d" % head.status), *_regular(head.headers, False)]
        if self._client and sid not in self._conn.streams and self._going_away():
            raise HttpError("the HTTP/2 connection is going away", 503)
        try:
            self._conn.send_headers(sid, block, end_stream=end_stream)
        except h2x.TooManyStreamsError as exc:
            raise HttpError(f"HTTP/2 peer stream limit: {exc}", 503) from exc
        except h2x.H2Error as exc:
            self._send_failed(exc, sid)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Send now what the windows allow; queue the rest (see `pending`)."""
        try:
            self._send_data(stream_id, data, end_stream)
        except h2x.H2Error as exc:
            self._send_failed(exc, stream_id)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """Trailers end the stream; they wait behind queued DATA."""
        block = _regular(trailers, False)
        box = self._outbox.get(stream_id)
        if box is not None:
            if box.end:
                raise HttpError(f"stream {stream_id} has already ended", 500)
            box.end = True
            box.trailers = block
            return
        try:
            self._conn.send_headers(stream_id, block, end_stream=True)
        except h2x.H2Error as exc:
            self._send_failed(exc, stream_id)

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Abandon a stream (RST_STREAM); its queued output is dropped."""
        with suppress(h2x.H2Error):  # already closed, or never opened: nothing on the wire
            self._conn.reset_stream(stream_id, error_code)
        self._forget(stream_id)

    def stop_receiving(self, stream_id: int) -> None:
        """Our side of the stream has ended (a complete response) but the peer's has not: ask
        it to stop sending with RST_STREAM NO_ERROR (RFC 9113 §8.1), once what is queued for
        the stream has left. Without it some clients (curl) wait for the stream to close."""
        if stream_id in self._outbox:
            self._stop_after.add(stream_id)
        else:
            self.reset(stream_id, NO_ERROR)

    def pending(self, stream_id: int) -> int:
        """Bytes given to `send_data` on this stream that still wait for window."""
        box = self._outbox.get(stream_id)
        return 0 if box is None else box.size

    # -- sending, internals ---------------------------------------------------------------

    def _request_block(self, head: RequestHeaders) -> HeaderList:
        authority = head.authority or head.headers.get(b"host") or b""
        if head.method == b"CONNECT":
            pseudo = [(b":method", b"CONNECT"), (b":authority", authority or head.path)]
        else:
            if not authority:
                raise HttpError("an HTTP/2 request needs an authority (Host)", 400)
            pseudo = [
                (b":method", head.method),
                (b":scheme", head.scheme or b"http"),
                (b":authority", authority),
                (b":path", head.path or b"/"),
            ]
        return pseudo + _regular(head.headers, True)

    def _send_data(self, sid: int, data: bytes, end_stream: bool) -> None:
        box = self._outbox.get(sid)
        if box is None:
            conn = self._conn
            size = len(data)
            if size <= conn.max_outbound_frame_size and (
                size == 0 or size <= conn.local_flow_control_window(sid)
            ):
                conn.send_data(sid, data, end_stream=end_stream)
                return
            box = self._outbox[sid] = _Outbox()
        elif box.end:
            raise HttpError(f"stream {sid} has already ended", 500)
        box.push(data, end_stream)
        self._flush(sid, box)

    def _flush(self, sid: int, box: _Outbox) -> None:
        """Send what the windows allow from one queue; end the stream once it is empty."""
        conn = self._conn
        while box.chunks:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if room <= 0:
                return
            piece = box.take(room)
            last = not box.chunks and box.end and box.trailers is None
            conn.send_data(sid, piece, end_stream=last)
            if last:
                del self._outbox[sid]
                self._ended(sid)
                return
        del self._outbox[sid]
        if box.trailers is not None:
            conn.send_headers(sid, box.trailers, end_stream=True)
        elif box.end:
            conn.end_stream(sid)
        else:
            return
        self._ended(sid)

    def _ended(self, sid: int) -> None:
        if self._stop_after and sid in self._stop_after:
            self._stop_after.discard(sid)
            self.reset(sid, NO_ERROR)

    def _flush_all(self) -> None:
        """After a window opened: each waiting stream in turn, then rotate it to the back."""
        for sid in list(self._outbox):
            if self._conn.outbound_flow_control_window <= 0:
                return
            box = self._outbox[sid]
            try:
                self._flush(sid, box)
            except h2x.H2Error:
                self._forget(sid)  # the stream is gone; its StreamReset tells the caller
            if sid in self._outbox:
                self._outbox[sid] = self._outbox.pop(sid)

    def _send_failed(self, exc: h2x.H2Error, sid: int) -> None:
        if isinstance(exc, h2x.StreamClosedError) or self._closed():
            self._forget(sid)  # reset by the peer or finished: nothing to send it on
            return
        raise HttpError(f"cannot send on HTTP/2 stream {sid}: {_brief(exc)}", 500) from exc

    # -- translation ----------------------------------------------------------------------

    def _translate(self, received: list[h2e.Event]) -> list[Event]:
        batch = _Batch()
        for event in received:
            if isinstance(event, h2e.DataReceived):
                self._on_data(event, batch)
            elif isinstance(event, h2e.StreamEnded):
                self._on_end(event.stream_id, batch)
            elif isinstance(event, h2e.RequestReceived):
                self._on_request(event, batch)
            elif isinstance(event, (h2e.ResponseReceived, h2e.InformationalResponseReceived)):
                self._on_response(event.stream_id, event.headers, batch)
            elif isinstance(event, h2e.TrailersReceived):
                if event.stream_id not in batch.dropped:
                    batch.emit(Trailers(_split(event.headers)[1], event.stream_id))
            elif isinstance(event, h2e.StreamReset):
                self._on_reset(event, batch)
            elif isinstance(event, h2e.ConnectionTerminated):
                self._on_goaway(event, batch)
            # Window and settings updates, pings, priority, ALTSVC, unknown: h2 did the work.
        if self._outbox:  # a WINDOW_UPDATE or SETTINGS may have opened a window
            self._flush_all()
        return batch.events

    def _on_request(self, event: h2e.RequestReceived, batch: _Batch) -> None:
        sid = event.stream_id
        if self._local_last is not None and sid > self._local_last:
            self._refuse(sid, batch, REFUSED_STREAM, None)
            return
        pseudo, headers = _split(event.headers)
        try:
            length = _content_length(headers)
        except HttpError:
            self._refuse(sid, batch, PROTOCOL_ERROR, PROTOCOL_ERROR)
            return
        authority = pseudo.get(b":authority") or headers.get(b"host") or b""
        batch.emit(
            RequestHeaders(
                method=pseudo.get(b":method", b""),
                path=pseudo.get(b":path") or authority,
                authority=authority,
                headers=headers,
                scheme=pseudo.get(b":scheme", b"http"),
                version=HTTP2,
                stream_id=sid,
                upgrade=pseudo.get(b":protocol"),
                expect_continue=(headers.get(b"expect") or b"").lower() == b"100-continue",
                content_length=length,
            )
        )

    def _on_response(self, sid: int, raw: list[Header], batch: _Batch) -> None:
        if sid in batch.dropped:
            return
        pseudo, headers = _split(raw)
        status = pseudo.get(b":status", b"")
        try:
            if len(status) != 3 or not status.isdigit() or status[0] == 0x30:
                raise HttpError(f"malformed :status {status[:8]!r}")
            length = _content_length(headers)
        except HttpError:
            self._refuse(sid, batch, PROTOCOL_ERROR, PROTOCOL_ERROR)
            return
        head = ResponseHeaders(int(status), headers, b"", HTTP2, sid, content_length=length)
        if head.informational:
            batch.events.append(head)  # never the one to carry END_STREAM
        else:
            batch.emit(head)

    def _on_data(self, event: h2e.DataReceived, batch: _Batch) -> None:
        sid = event.stream_id
        data = event.data
        unseen = event.flow_controlled_length - len(data)  # padding
        if sid in batch.dropped:
            unseen = event.flow_controlled_length
        elif data:
            self._unacked[sid] = self._unacked.get(sid, 0) + len(data)
            batch.emit(Data(data, sid))
        if unseen:
            self._give_back(sid, unseen)

    def _on_end(self, sid: int, batch: _Batch) -> None:
        if sid in batch.dropped:
            return
        last = batch.last.get(sid)
        if last is None:
            batch.emit(Data(b"", sid, end_stream=True))
        else:
            last.end_stream = True

    def _on_reset(self, event: h2e.StreamReset, batch: _Batch) -> None:
        sid = event.stream_id
        self._forget(sid)
        if sid not in batch.dropped:
            batch.dropped.add(sid)
            batch.events.append(StreamReset(sid, int(event.error_code)))

    def _on_goaway(self, event: h2e.ConnectionTerminated, batch: _Batch) -> None:
        last = event.last_stream_id or 0
        batch.events.append(ConnectionTerminated(int(event.error_code or 0), last))
        parity = 1 if self._client else 0
        for sid, stream in list(self._conn.streams.items()):
            if sid > last and sid % 2 == parity and not stream.closed:
                self._refuse(sid, batch, CANCEL, REFUSED_STREAM)  # retry-safe

    # -- stream bookkeeping ---------------------------------------------------------------

    def _refuse(self, sid: int, batch: _Batch, wire: int, surface: int | None) -> None:
        """Reset a stream the codec gave up on (`wire` code); swallow its batch events."""
        self.reset(sid, wire)
        batch.dropped.add(sid)
        batch.last.pop(sid, None)
        if surface is not None:
            batch.events.append(StreamReset(sid, surface))

    def _forget(self, sid: int) -> None:
        """The stream is over: drop its queue, give back the window the caller still owes."""
        self._outbox.pop(sid, None)
        self._stop_after.discard(sid)
        owed = self._unacked.pop(sid, 0)
        if owed:
            self._give_back(sid, owed)

    def _give_back(self, sid: int, size: int) -> None:
        with suppress(h2x.H2Error):  # the connection is closing: windows no longer matter
            self._conn.acknowledge_received_data(size, sid)

    def _going_away(self) -> bool:
        return self._conn.goaway_last_stream_id is not None or self._closed()

    def _closed(self) -> bool:
        return self._failed or self._conn.state_machine.state is ConnectionState.CLOSED


# -- header blocks -----------------------------------------------------------------------


def _split(raw: list[Header]) -> tuple[dict[bytes, bytes], Headers]:
    """Pseudo-headers by name, and the regular headers (h2 validated both)."""
    pseudo: dict[bytes, bytes] = {}
    regular: HeaderList = []
    for name, value in raw:
        if name[:1] == b":":
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, Headers(regular)


def _content_length(headers: Headers) -> int | None:
    """The declared body length, by HTTP/1.1's rules, so that what is forwarded on either
    version is a length mecha can send: HttpError for differing values, a value that is no
    number (h2 checks only the first), or one too long for any body (20 digits) — a
    malformed message, its stream's error (RFC 9113 §8.1.1)."""
    values = headers.get_all(b"content-length")
    return content_length(values) if values else None


def _regular(headers: Headers, request: bool) -> HeaderList:
    """Headers fit for an HTTP/2 block: no connection-specific fields, no pseudo-headers.

    `host` is dropped from requests (it went into :authority). Fields named by
    `connection` go too, as hop-by-hop. A name or value HTTP/2 cannot carry raises
    HttpError before h2 sees it, so the HPACK context is never touched by a bad block.
    Values lose surrounding blanks (RFC 9113 §8.2.1); credentials are never indexed.
    """
    named: set[bytes] = set()
    for value in headers.get_all(b"connection"):
        named.update(token.strip().lower() for token in value.split(b","))
    block: HeaderList = []
    for name, value in headers:
        name = name.lower()
        if name in _HOP_BY_HOP or name in named or name[:1] == b":":
            continue
        if name == b"te":
            if b"trailers" in (token.strip().lower() for token in value.split(b",")):
                block.append((b"te", b"trailers"))
            continue
        if name == b"host" and request:
            continue
        if _FIELD_NAME.fullmatch(name) is None or _BAD_VALUE.search(value) is not None:
            raise HttpError(f"header {name!r} cannot be sent over HTTP/2", 500)
        block.append((name, value.strip()))  # the encoder keeps credentials out of tables
    return block


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
