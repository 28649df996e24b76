"""HTTP/2 codec (sans-IO): frames <-> our request/response vocabulary, on mecha's own frame
layer (h2_frames), HPACK (hpack) and stream state (h2_streams).

One `H2Codec` per connection, either side. Bytes in through `feed`, events out; calls
in through `send_*`, bytes out through `data_to_send`. The rules it keeps:

- Inbound flow control is the caller's: DATA is not acknowledged until the caller calls
  `acknowledge(stream_id, len(data))` for bytes it has passed on, so a slow consumer on
  the far side of the proxy throttles this peer, which can never have more in flight
  than our windows. `acknowledge` takes *payload* bytes: padding, data the caller never
  sees, and what a reset stream still owed are given back by the codec itself. The
  WINDOW_UPDATEs go out with `data_to_send`, one per stream and connection at most, once
  half a window is owed (or the window is shut).
- Outbound flow control is the codec's: `send_data` sends what the windows and frame
  size allow and queues the rest per stream (only what the caller gave; `pending` says
  how much). WINDOW_UPDATE and SETTINGS arriving in `feed` release the queues;
  END_STREAM and trailers follow the last queued byte.
- Errors: a connection error raises `HttpError` once GOAWAY is queued (flush, then
  close); any bytes whatsoever give events or `HttpError`. A frame header declaring more
  than our SETTINGS_MAX_FRAME_SIZE is refused before its payload is buffered. A malformed
  message resets only its stream (RFC 9113 §8.1.1) and surfaces as `StreamReset`. Sending
  on a stream that was reset or has finished is ignored (the caller hears `StreamReset`);
  other misuse raises `HttpError(500)`, a new stream on a dying connection `HttpError(503)`.
- Bounds: streams past our SETTINGS_MAX_CONCURRENT_STREAMS are refused (REFUSED_STREAM),
  a header block is at most `max_header_list_size` bytes over at most 64 CONTINUATIONs,
  and floods of SETTINGS, PING, PRIORITY, WINDOW_UPDATE, empty DATA and RST_STREAM end in
  GOAWAY(ENHANCE_YOUR_CALM) (`h2_streams.Budgets`).
- GOAWAY with NO_ERROR is graceful both ways (§6.8): streams up to its last stream id
  complete; ours above it end in `StreamReset(REFUSED_STREAM)` (safe to retry) right
  after `ConnectionTerminated`. After our own, newer peer streams are refused silently.
- No server push; PRIORITY is read, counted and ignored. A stream's END_STREAM sets
  `end_stream` on its last event from the same `feed` call, or becomes
  `Data(b"", end_stream=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.http import h2_frames as fr
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
from protocols.http.h2_frames import ErrorCode, H2ConnectionError
from protocols.http.h2_headers import (
    CheckedBlocks,
    HeaderList,
    Malformed,
    outbound_request,
    regular,
    trailer_block,
)
from protocols.http.h2_streams import (
    CLOSED_BY_END,
    CLOSED_BY_PEER,
    CLOSED_BY_US,
    CLOSED_MEMORY,
    Batch,
    Budgets,
    Outbox,
    Stream,
)
from protocols.http.headers import Headers
from protocols.http.hpack import Decoder, Encoder, HeaderListTooLarge, HpackError

CANCEL = ErrorCode.CANCEL
NO_ERROR = ErrorCode.NO_ERROR
PROTOCOL_ERROR = ErrorCode.PROTOCOL_ERROR
REFUSED_STREAM = ErrorCode.REFUSED_STREAM
STREAM_CLOSED = ErrorCode.STREAM_CLOSED
FLOW = ErrorCode.FLOW_CONTROL_ERROR
FRAME_SIZE = ErrorCode.FRAME_SIZE_ERROR
DEFAULT_WINDOW = fr.DEFAULT_WINDOW
MAX_WINDOW = fr.MAX_WINDOW
HTTP2 = b"HTTP/2"
MAX_CONTINUATIONS = 64
_HEAD_FRAMES = (fr.HEADERS, fr.CONTINUATION)
_RANGES = (
    ("max_concurrent_streams", 0, MAX_WINDOW),
    ("initial_window_size", 0, MAX_WINDOW),
    ("connection_window_size", DEFAULT_WINDOW, MAX_WINDOW),
    ("max_frame_size", 16384, (1 << 24) - 1),
    ("max_header_list_size", 1, MAX_WINDOW),
)


@dataclass(frozen=True, slots=True)
class H2Settings:
    max_concurrent_streams: int = 100
    initial_window_size: int = 1 << 20  # per stream, what we advertise
    connection_window_size: int = 16 << 20  # we raise the connection window to this at start
    max_frame_size: int = 16384
    max_header_list_size: int = 64 * 1024

    def __post_init__(self) -> None:
        for name, low, high in _RANGES:
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"H2Settings.{name} must be in [{low}, {high}]")


class _Block:
    """A header block still waiting for its CONTINUATION frames."""

    __slots__ = ("count", "flags", "parts", "sid", "size")

    def __init__(self, sid: int, flags: int, first: bytes) -> None:
        self.sid = sid
        self.flags = flags
        self.parts = [first]
        self.size = len(first)
        self.count = 0


class H2Codec:
    """One HTTP/2 connection, either side. See the module docstring for the rules."""

    # fmt: off
    __slots__ = (
        "_block", "_budgets", "_checked", "_client", "_closed", "_closed_streams",
        "_conn_processed", "_decoder", "_encoder", "_failed", "_goaway_sent", "_highest_peer",
        "_local_last",
        "_next_sid", "_out", "_outbox", "_owed", "_peer_initial", "_peer_last", "_peer_max_frame",
        "_peer_max_streams", "_reader", "_recv_window", "_send_window", "_settings",
        "_settings_seen", "_stop_after", "_streams", "_unacked",
    )
    # fmt: on

    def __init__(self, client_side: bool, settings: H2Settings = H2Settings()) -> None:
        self._client = client_side
        self._settings = settings
        self._reader = fr.FrameReader(not client_side, settings.max_frame_size)
        self._encoder = Encoder()
        self._decoder = Decoder(settings.max_header_list_size)
        self._checked = CheckedBlocks()
        self._out: list[bytes] = []
        self._streams: dict[int, Stream] = {}
        self._closed_streams: dict[int, int] = {}
        self._outbox: dict[int, Outbox] = {}
        self._unacked: dict[int, int] = {}
        """Payload bytes handed to the caller per stream and not yet acknowledged."""
        self._stop_after: set[int] = set()
        self._owed: set[int] = set()
        """Streams with bytes given back and not yet returned by a WINDOW_UPDATE."""
        """Streams to reset with NO_ERROR once their queued response has left."""
        self._budgets = Budgets()
        self._block: _Block | None = None
        self._send_window = DEFAULT_WINDOW
        self._recv_window = DEFAULT_WINDOW
        self._conn_processed = 0
        self._peer_initial = DEFAULT_WINDOW
        self._peer_max_frame = fr.MIN_FRAME_SIZE
        self._peer_max_streams = MAX_WINDOW
        self._settings_seen = False
        self._next_sid = 1 if client_side else 2
        self._highest_peer = 0
        self._local_last: int | None = None
        """The last-stream-id of our own graceful GOAWAY."""
        self._peer_last: int | None = None
        """The lowest last-stream-id of a graceful GOAWAY from the peer, if any."""
        self._closed = False
        """A GOAWAY with an error went out or came in: nothing more on any stream."""
        self._goaway_sent = False
        """Ours with an error went out: there is no second one."""
        self._failed = False

    # -- connection -----------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the preface (client) and SETTINGS, then open the connection window."""
        s = self._settings
        values = {
            fr.MAX_CONCURRENT_STREAMS: s.max_concurrent_streams,
            fr.INITIAL_WINDOW_SIZE: s.initial_window_size,
            fr.MAX_FRAME_SIZE: s.max_frame_size,
            fr.MAX_HEADER_LIST_SIZE: s.max_header_list_size,
        }
        if self._client:
            self._out.append(fr.PREFACE)
            values = {fr.ENABLE_PUSH: 0, **values}
        self._out.append(fr.settings_frame(values))
        extra = s.connection_window_size - DEFAULT_WINDOW
        if extra > 0:
            self._recv_window += extra
            self._out.append(fr.window_update(0, extra))

    def data_to_send(self) -> bytes:
        self._budgets.control = 0  # what was answered is on its way
        if self._conn_processed or self._owed:
            self._window_updates()
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def goaway(self, error_code: int = 0, last_stream_id: int | None = None) -> None:
        """NO_ERROR: stop new streams, let the others finish. Otherwise: the end."""
        last = self._highest_peer if last_stream_id is None else last_stream_id
        if self._goaway_sent:
            return  # a GOAWAY with an error already went out
        if error_code:
            self._closed = self._goaway_sent = True
            self._out.append(fr.goaway(last, error_code))
            return
        if self._closed:
            return  # the peer's GOAWAY with an error ended it
        if self._local_last is not None:
            last = min(last, self._local_last)  # never raise it (RFC 9113 §6.8)
        self._local_last = last
        self._out.append(fr.goaway(last, NO_ERROR))

    def next_stream_id(self) -> int:
        """The id for the next request; call right before `send_headers` (client side)."""
        if self._going_away():
            raise HttpError("the HTTP/2 connection is going away", 503)
        if self._next_sid > MAX_WINDOW:
            raise HttpError("HTTP/2 stream ids are exhausted", 503)
        return self._next_sid

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def max_outbound_streams(self) -> int:
        """The peer's SETTINGS_MAX_CONCURRENT_STREAMS (2^31 - 1 while it sets none)."""
        return self._peer_max_streams

    @property
    def flood(self) -> str | None:
        """Which flood bound ended the connection, if one did."""
        return self._budgets.tripped

    # -- receiving ------------------------------------------------------------------------

    @property
    def receiving_head(self) -> bool:
        """A header block has begun and not ended (HEADERS without END_HEADERS, or such a
        frame partly received): until it ends, the peer can send this connection nothing else."""
        return self._block is not None or self._reader.partial_kind in _HEAD_FRAMES

    def feed(self, data: bytes) -> list[Event]:
        """Events for `data`; b"" (EOF) gives []. Raises HttpError on a connection error."""
        if not data:
            return []
        if self._failed:
            raise HttpError("the HTTP/2 connection has already failed")
        if self._conn_processed:  # what was acknowledged since: granted before new frames
            self._window_updates()
        batch = Batch()
        try:
            for kind, flags, sid, payload in self._reader.feed(data):
                self._frame(kind, flags, sid, payload, batch)
            if self._reader.error is not None:
                raise self._reader.error
        except H2ConnectionError as exc:
            self._fail(exc.code)
            raise
        if self._outbox:  # a WINDOW_UPDATE or SETTINGS may have opened a window
            self._flush_all()
        return batch.events

    def _fail(self, code: int) -> None:
        self._failed = True
        self._closed = True
        if not self._goaway_sent:
            self._goaway_sent = True
            self._out.append(fr.goaway(self._highest_peer, code))

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if self._block is not None:
            if kind != fr.CONTINUATION or sid != self._block.sid:
                raise H2ConnectionError("a header block interrupted")
            self._continuation(flags, payload, batch)
        elif not self._settings_seen and kind != fr.SETTINGS:
            raise H2ConnectionError("the first frame is not SETTINGS")
        elif kind == fr.DATA:
            self._on_data(flags, sid, payload, batch)
        elif kind == fr.HEADERS:
            self._on_headers(flags, sid, payload, batch)
        elif kind == fr.CONTINUATION:
            raise H2ConnectionError("CONTINUATION without HEADERS")
        elif kind in _CONTROL:
            _CONTROL[kind](self, flags, sid, payload, batch)
        # Unknown frame types are ignored (§4.1).

    def _on_data(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if sid == 0:
            raise H2ConnectionError("DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise H2ConnectionError("DATA past the connection window", FLOW)
        data, _pad = fr.unpad(flags, payload)
        stream = self._streams.get(sid)
        if stream is None or not stream.remote_open:
            self._conn_processed += size
            if stream is None:
                self._check_not_idle(sid, "DATA")
            self._late_frame(sid, stream, batch)
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise H2ConnectionError("DATA past a stream window", FLOW)
        if self._client and not stream.final:
            raise H2ConnectionError("DATA before the response head")
        end = flags & fr.END_STREAM
        if not data and not end:
            self._budgets.empty_data_frame()
        if stream.remaining is not None:
            stream.remaining -= len(data)
            if stream.remaining < 0 or (end and stream.remaining):
                self._conn_processed += size
                self._refuse(sid, batch, PROTOCOL_ERROR, PROTOCOL_ERROR)
                return
        unseen = size - len(data)
        if sid in batch.dropped:
            unseen = size
        elif data:
            self._unacked[sid] = self._unacked.get(sid, 0) + len(data)
            batch.emit(Data(data, sid))
        if unseen:
            self._give_back(sid, unseen)
        if end:
            self._remote_end(sid, stream, batch)

    def _on_headers(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if sid == 0:
            raise H2ConnectionError("HEADERS on stream 0")
        block, _pad = fr.unpad(flags, payload)
        if flags & fr.PRIORITY_FLAG:
            if len(block) < 5:
                raise H2ConnectionError("HEADERS too short for its priority", FRAME_SIZE)
            if int.from_bytes(block[:4], "big") & MAX_WINDOW == sid:
                raise H2ConnectionError("a stream depending on itself")
            block = block[5:]
        if flags & fr.END_HEADERS:
            self._on_block(sid, flags, block, batch)
        else:
            self._block = _Block(sid, flags, block)
            self._check_block(self._block)

    def _continuation(self, flags: int, payload: bytes, batch: Batch) -> None:
        pending = self._block
        assert pending is not None
        pending.parts.append(payload)
        pending.size += len(payload)
        pending.count += 1
        self._check_block(pending)
        if flags & fr.END_HEADERS:
            self._block = None
            self._on_block(pending.sid, pending.flags, b"".join(pending.parts), batch)

    def _check_block(self, pending: _Block) -> None:
        # A block longer than the header list bound cannot decode within it (an encoded
        # field is always shorter than its size in the list): refuse it before it grows.
        if pending.size > self._decoder.max_header_list_size or pending.count > MAX_CONTINUATIONS:
            raise H2ConnectionError("CONTINUATION flood", ErrorCode.ENHANCE_YOUR_CALM)

    def _decode(self, block: bytes) -> HeaderList:
        try:
            return self._decoder.decode(block)
        except HeaderListTooLarge as exc:
            raise H2ConnectionError(str(exc), ErrorCode.ENHANCE_YOUR_CALM) from exc
        except HpackError as exc:
            raise H2ConnectionError(str(exc), ErrorCode.COMPRESSION_ERROR) from exc

    def _on_block(self, sid: int, flags: int, block: bytes, batch: Batch) -> None:
        fields = self._decode(block)  # always: the HPACK context must follow every block
        end = bool(flags & fr.END_STREAM)
        stream = self._streams.get(sid)
        if stream is None:
            if self._client or sid % 2 == 0:
                self._unknown_stream(sid, batch)
            elif sid <= self._highest_peer:
                self._late_frame(sid, None, batch)
            else:
                self._new_request(sid, fields, end, batch)
            return
        if not stream.remote_open:
            self._late_frame(sid, stream, batch)
        elif self._client and not stream.final:
            self._on_response(sid, stream, fields, end, batch)
        else:
            self._on_trailers(sid, stream, fields, end, batch)

    def _unknown_stream(self, sid: int, batch: Batch) -> None:
        if sid % 2 != (1 if self._client else 0) or sid >= self._next_sid:
            raise H2ConnectionError(f"HEADERS on stream {sid}, which we did not open")
        self._late_frame(sid, None, batch)

    def _new_request(self, sid: int, fields: HeaderList, end: bool, batch: Batch) -> None:
        self._highest_peer = sid
        if self._local_last is not None and sid > self._local_last:
            self._reset_unopened(sid, REFUSED_STREAM)  # after our GOAWAY: silently
            return
        if len(self._streams) >= self._settings.max_concurrent_streams:
            self._reset_unopened(sid, REFUSED_STREAM)
            return
        stream = self._streams[sid] = Stream(self._peer_initial, self._settings.initial_window_size)
        self._budgets.streams += 1
        try:
            pseudo, headers, stream.remaining = self._checked.request(fields)
        except Malformed:
            self._refuse(sid, batch, PROTOCOL_ERROR, PROTOCOL_ERROR)
            return
        authority = pseudo.get(b":authority") or headers.get(b"host") or b""
        method = pseudo[b":method"]
        batch.emit(
            RequestHeaders(
                method=method,
                path=pseudo.get(b":path") or authority,
                authority=authority,
                headers=headers,
                scheme=pseudo.get(b":scheme", b"http"),
                version=HTTP2,
                stream_id=sid,
                upgrade=pseudo.get(b":protocol"),
                expect_continue=(headers.get(b"expect") or b"").lower() == b"100-continue",
                content_length=stream.remaining,
            )
        )
        if end:
            self._remote_end(sid, stream, batch)

    def _on_response(
        self, sid: int, stream: Stream, fields: HeaderList, end: bool, batch: Batch
    ) -> None:
        try:
            status, headers, length = self._checked.response(fields)
            if status[0] == 0x31 and end:
                raise Malformed("an informational response ending the stream")
        except Malformed:
            self._refuse(sid, batch, PROTOCOL_ERROR, PROTOCOL_ERROR)
            return
        head = ResponseHeaders(int(status), headers, b"", HTTP2, sid, content_length=length)
        if head.informational:
            batch.events.append(head)  # never the one to carry END_STREAM
            return
        stream.final = True
        no_body = stream.head_method or status in (b"204", b"304")
        stream.remaining = 0 if no_body else length
        batch.emit(head)
        if end:
            self._remote_end(sid, stream, batch)

    def _on_trailers(
        self, sid: int, stream: Stream, fields: HeaderList, end: bool, batch: Batch
    ) -> None:
        if not end:
            raise H2ConnectionError("trailers without END_STREAM")
        try:
            trailers = trailer_block(fields)
            if stream.remaining:
                raise Malformed("trailers before the declared body length")
        except Malformed:
            self._refuse(sid, batch, PROTOCOL_ERROR, PROTOCOL_ERROR)
            return
        if sid not in batch.dropped:
            batch.emit(Trailers(trailers, sid))
        self._remote_end(sid, stream, batch)

    def _remote_end(self, sid: int, stream: Stream, batch: Batch) -> None:
        stream.remote_open = False
        if not stream.local_open:
            self._close(sid, CLOSED_BY_END)
        if sid in batch.dropped:
            return
        last = batch.last.get(sid)
        if last is None:
            batch.emit(Data(b"", sid, end_stream=True))
        else:
            last.end_stream = True

    def _late_frame(self, sid: int, stream: Stream | None, batch: Batch) -> None:
        """DATA or HEADERS on a stream the peer may no longer send on (see h2_streams)."""
        if stream is not None:  # half-closed (remote)
            raise H2ConnectionError(f"a frame on stream {sid} after its end", STREAM_CLOSED)
        how = self._closed_streams.get(sid, CLOSED_BY_US)
        if how == CLOSED_BY_END:
            raise H2ConnectionError(f"a frame on closed stream {sid}", STREAM_CLOSED)
        if how == CLOSED_BY_PEER:
            self._out.append(fr.rst_stream(sid, STREAM_CLOSED))

    # -- control frames -------------------------------------------------------------------

    def _on_rst(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if len(payload) != 4:
            raise H2ConnectionError("RST_STREAM of a wrong length", FRAME_SIZE)
        self._check_not_idle(sid, "RST_STREAM")
        stream = self._streams.get(sid)
        if stream is None:
            return
        if stream.local_open and sid % 2 != (1 if self._client else 0):
            self._budgets.premature_reset()
        self._close(sid, CLOSED_BY_PEER)
        self._forget(sid)
        if sid not in batch.dropped:
            batch.dropped.add(sid)
            batch.events.append(StreamReset(sid, int.from_bytes(payload, "big")))

    def _check_not_idle(self, sid: int, what: str) -> None:
        if sid == 0:
            raise H2ConnectionError(f"{what} on stream 0")
        ours = sid % 2 == (1 if self._client else 0)
        if (ours and sid >= self._next_sid) or (not ours and sid > self._highest_peer):
            raise H2ConnectionError(f"{what} on idle stream {sid}")

    def _on_settings(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if sid:
            raise H2ConnectionError("SETTINGS on a stream")
        if flags & fr.ACK:
            if payload:
                raise H2ConnectionError("SETTINGS ack with a payload")  # as h2 answers it
            return
        self._settings_seen = True
        self._budgets.control_frame()
        for key, value in fr.parse_settings(payload):
            self._setting(key, value)
        self._out.append(fr.frame(fr.SETTINGS, fr.ACK, 0))

    def _setting(self, key: int, value: int) -> None:
        if key == fr.HEADER_TABLE_SIZE:
            self._encoder.header_table_size = min(value, 4096)
        elif key == fr.ENABLE_PUSH and value > 1:
            raise H2ConnectionError("SETTINGS_ENABLE_PUSH above 1")
        elif key == fr.MAX_CONCURRENT_STREAMS:
            self._peer_max_streams = value
        elif key == fr.INITIAL_WINDOW_SIZE:
            if value > MAX_WINDOW:
                raise H2ConnectionError("initial window too large", FLOW)
            delta, self._peer_initial = value - self._peer_initial, value
            for stream in self._streams.values():
                stream.send_window += delta
                if stream.send_window > MAX_WINDOW:
                    raise H2ConnectionError("a window overflowed", FLOW)
        elif key == fr.MAX_FRAME_SIZE:
            if not fr.MIN_FRAME_SIZE <= value <= fr.MAX_FRAME_SIZE_LIMIT:
                raise H2ConnectionError("SETTINGS_MAX_FRAME_SIZE out of range")
            self._peer_max_frame = value

    def _on_ping(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if sid:
            raise H2ConnectionError("PING on a stream")
        if len(payload) != 8:
            raise H2ConnectionError("PING of a wrong length", FRAME_SIZE)
        if not flags & fr.ACK:
            self._budgets.control_frame()
            self._out.append(fr.frame(fr.PING, fr.ACK, 0, payload))

    def _on_priority(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if sid == 0:
            raise H2ConnectionError("PRIORITY on stream 0")
        if len(payload) != 5:
            raise H2ConnectionError("PRIORITY of a wrong length", FRAME_SIZE)
        if int.from_bytes(payload[:4], "big") & MAX_WINDOW == sid:
            raise H2ConnectionError("a stream depending on itself")
        self._budgets.priority_frame()

    def _on_goaway(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if sid:
            raise H2ConnectionError("GOAWAY on a stream")
        if len(payload) < 8:
            raise H2ConnectionError("GOAWAY too short", FRAME_SIZE)
        last = int.from_bytes(payload[:4], "big") & MAX_WINDOW
        code = int.from_bytes(payload[4:8], "big")
        if code == NO_ERROR:
            if self._peer_last is not None:
                last = min(last, self._peer_last)
            self._peer_last = last
        batch.events.append(ConnectionTerminated(code, last))
        if code != NO_ERROR:
            self._closed = True  # nothing more goes out on any stream
        parity = 1 if self._client else 0
        for other in list(self._streams):
            if other > last and other % 2 == parity:
                self._refuse(other, batch, CANCEL, REFUSED_STREAM)  # retry-safe

    def _on_window_update(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if len(payload) != 4:
            raise H2ConnectionError("WINDOW_UPDATE of a wrong length", FRAME_SIZE)
        increment = int.from_bytes(payload, "big") & MAX_WINDOW
        self._budgets.window_update()
        if sid == 0:
            if increment == 0:
                raise H2ConnectionError("a WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise H2ConnectionError("the connection window overflowed", FLOW)
            return
        self._check_not_idle(sid, "WINDOW_UPDATE")
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.send_window += increment
        if increment == 0 or stream.send_window > MAX_WINDOW:
            code = PROTOCOL_ERROR if increment == 0 else FLOW
            self._refuse(sid, batch, code, code)

    def _on_push_promise(self, flags: int, sid: int, payload: bytes, batch: Batch) -> None:
        if len(fr.unpad(flags, payload)[0]) < 4:
            raise H2ConnectionError("PUSH_PROMISE too short", FRAME_SIZE)
        raise H2ConnectionError("PUSH_PROMISE, which we disabled")

    # -- acknowledging --------------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The caller passed on `size` payload bytes (`len(Data.data)`): reopen the windows.

        Padding went back on arrival; more than was received, or anything after the stream
        was reset, is ignored.
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

    def _give_back(self, sid: int, size: int) -> None:
        self._conn_processed += size
        stream = self._streams.get(sid)
        if stream is not None and stream.remote_open:
            stream.processed += size
            self._owed.add(sid)

    def _window_updates(self) -> None:
        """WINDOW_UPDATEs for what was given back, once half a window is owed (h2's rule)."""
        if self._closed:
            return
        out = self._out
        streams = self._streams
        for sid in list(self._owed):
            stream = streams.get(sid)
            if stream is None or not stream.remote_open:
                self._owed.discard(sid)  # nothing more will come on it
            elif _worth(stream.processed, stream.recv_window, self._settings.initial_window_size):
                out.append(fr.window_update(sid, stream.processed))
                stream.recv_window += stream.processed
                stream.processed = 0
                self._owed.discard(sid)
        processed = self._conn_processed
        if processed and _worth(
            processed, self._recv_window, self._settings.connection_window_size
        ):
            out.append(fr.window_update(0, processed))
            self._recv_window += processed
            self._conn_processed = 0

    # -- sending --------------------------------------------------------------------------

    def send_headers(self, head: RequestHeaders | ResponseHeaders, end_stream: bool) -> None:
        sid = head.stream_id
        if isinstance(head, RequestHeaders):
            block = outbound_request(head.method, head.scheme, head.authority, head.path,
                                     head.headers)  # fmt: skip
            stream = self._open_local(sid)
            if stream is None:
                return
            stream.head_method = head.method == b"HEAD"
        else:
            block = [(b":status", b"%d" % head.status), *regular(head.headers, False)]
            stream = self._sendable(sid)
            if stream is None:
                return
        self._write_headers(sid, stream, block, end_stream)

    def _open_local(self, sid: int) -> Stream | None:
        if self._client and sid not in self._streams:
            if self._going_away():
                raise HttpError("the HTTP/2 connection is going away", 503)
            if len(self._streams) >= self._peer_max_streams:
                raise HttpError("HTTP/2 peer stream limit reached", 503)
            if sid < self._next_sid or sid % 2 == 0:
                raise HttpError(f"HTTP/2 stream {sid} cannot be opened now", 500)
            self._next_sid = sid + 2
            stream = self._streams[sid] = Stream(self._peer_initial,
                                                 self._settings.initial_window_size)  # fmt: skip
            self._budgets.streams += 1
            return stream
        return self._sendable(sid)

    def _sendable(self, sid: int) -> Stream | None:
        """The stream, if we may still send on it; None (drop the output) if it is over."""
        stream = self._streams.get(sid)
        if stream is not None and stream.local_open and not self._closed:
            return stream
        if stream is not None or self._closed or sid in self._closed_streams or self._failed:
            self._forget(sid)
            return None
        raise HttpError(f"cannot send on HTTP/2 stream {sid}: it is not open", 500)

    def _write_headers(self, sid: int, stream: Stream, block: HeaderList, end: bool) -> None:
        encoded = self._encoder.encode(block)
        self._out.append(fr.header_frames(sid, encoded, end, self._peer_max_frame))
        if end:
            self._local_end(sid, stream)

    def _local_end(self, sid: int, stream: Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            self._close(sid, CLOSED_BY_END)
        if self._stop_after and sid in self._stop_after:
            self._stop_after.discard(sid)
            self.reset(sid, NO_ERROR)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Send now what the windows allow; queue the rest (see `pending`)."""
        box = self._outbox.get(stream_id)
        if box is None:
            stream = self._sendable(stream_id)
            if stream is None:
                return
            size = len(data)
            if size <= self._peer_max_frame and size <= min(stream.send_window, self._send_window):
                self._write_data(stream_id, stream, data, end_stream)
                return
            box = self._outbox[stream_id] = Outbox()
        elif box.end:
            raise HttpError(f"stream {stream_id} has already ended", 500)
        box.push(data, end_stream)
        self._flush(stream_id, box)

    def _write_data(self, sid: int, stream: Stream, data: bytes, end: bool) -> None:
        self._out.append(fr.frame(fr.DATA, fr.END_STREAM if end else 0, sid, data))
        size = len(data)
        stream.send_window -= size
        self._send_window -= size
        self._budgets.data_frames += 1
        if end:
            self._local_end(sid, stream)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """Trailers end the stream; they wait behind queued DATA."""
        block = regular(trailers, False)
        box = self._outbox.get(stream_id)
        if box is not None:
            if box.end:
                raise HttpError(f"stream {stream_id} has already ended", 500)
            box.end = True
            box.trailers = block
            return
        stream = self._sendable(stream_id)
        if stream is not None:
            self._write_headers(stream_id, stream, block, True)

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Abandon a stream (RST_STREAM); its queued output is dropped."""
        if stream_id in self._streams:
            if not self._closed:
                self._out.append(fr.rst_stream(stream_id, error_code))
            self._close(stream_id, CLOSED_BY_US)
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

    def _flush(self, sid: int, box: Outbox) -> None:
        """Send what the windows allow from one queue; end the stream once it is empty."""
        stream = self._streams.get(sid)
        if stream is None or not stream.local_open or self._closed:
            self._forget(sid)
            return
        while box.chunks:
            room = min(stream.send_window, self._send_window, self._peer_max_frame)
            if room <= 0:
                return
            piece = box.take(room)
            last = not box.chunks and box.end and box.trailers is None
            if last:
                del self._outbox[sid]
            self._write_data(sid, stream, piece, last)
            if last:
                return
        del self._outbox[sid]
        if box.trailers is not None:
            self._write_headers(sid, stream, box.trailers, True)
        elif box.end:
            self._write_data(sid, stream, b"", True)

    def _flush_all(self) -> None:
        """After a window opened: each waiting stream in turn, then rotate it to the back."""
        for sid in list(self._outbox):
            if self._send_window <= 0:
                return
            self._flush(sid, self._outbox[sid])
            if sid in self._outbox:
                self._outbox[sid] = self._outbox.pop(sid)

    # -- stream bookkeeping ---------------------------------------------------------------

    def _refuse(self, sid: int, batch: Batch, wire: int, surface: int | None) -> None:
        """Reset a stream the codec gave up on (`wire` code); swallow its batch events."""
        self.reset(sid, wire)
        batch.dropped.add(sid)
        batch.last.pop(sid, None)
        if surface is not None:
            batch.events.append(StreamReset(sid, surface))

    def _reset_unopened(self, sid: int, code: int) -> None:
        self._out.append(fr.rst_stream(sid, code))
        self._remember(sid, CLOSED_BY_US)

    def _close(self, sid: int, how: int) -> None:
        if self._streams.pop(sid, None) is not None:
            self._remember(sid, how)

    def _remember(self, sid: int, how: int) -> None:
        closed = self._closed_streams
        closed[sid] = how
        if len(closed) > CLOSED_MEMORY:
            del closed[next(iter(closed))]

    def _forget(self, sid: int) -> None:
        """The stream is over: drop its queue, give back the window the caller still owes."""
        self._outbox.pop(sid, None)
        self._stop_after.discard(sid)
        owed = self._unacked.pop(sid, 0)
        if owed:
            self._give_back(sid, owed)

    def _going_away(self) -> bool:
        return self._peer_last is not None or self._closed or self._failed


def _worth(processed: int, window: int, size: int) -> bool:
    """Whether `processed` bytes are worth a WINDOW_UPDATE for a window of `size`."""
    return processed >= size // 2 or (window <= 0 and processed > min(1024, size // 4))


_CONTROL = {
    fr.PRIORITY: H2Codec._on_priority,
    fr.RST_STREAM: H2Codec._on_rst,
    fr.SETTINGS: H2Codec._on_settings,
    fr.PUSH_PROMISE: H2Codec._on_push_promise,
    fr.PING: H2Codec._on_ping,
    fr.GOAWAY: H2Codec._on_goaway,
    fr.WINDOW_UPDATE: H2Codec._on_window_update,
}
