"""HTTP/2 codec (sans-IO): frames <-> our request/response vocabulary, on mecha's own frame
layer (h2_frames), HPACK (hpack) and stream state (h2_streams). This module reads; the
connection's state and what writes to it are in h2_send (`H2Base`).

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
    HeaderList,
    Malformed,
    trailer_block,
)
from protocols.http.h2_send import H2Base, H2Settings, PendingBlock
from protocols.http.h2_streams import (
    CLOSED_BY_END,
    CLOSED_BY_PEER,
    CLOSED_BY_US,
    Batch,
    Stream,
)
from protocols.http.hpack import HeaderListTooLarge, HpackError

__all__ = ["REFUSED_STREAM", "H2Codec", "H2Settings"]

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


class H2Codec(H2Base):
    """One HTTP/2 connection, either side. See the module docstring for the rules."""

    __slots__ = ()

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
            self._block = PendingBlock(sid, flags, block)
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

    def _check_block(self, pending: PendingBlock) -> None:
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


_CONTROL = {
    fr.PRIORITY: H2Codec._on_priority,
    fr.RST_STREAM: H2Codec._on_rst,
    fr.SETTINGS: H2Codec._on_settings,
    fr.PUSH_PROMISE: H2Codec._on_push_promise,
    fr.PING: H2Codec._on_ping,
    fr.GOAWAY: H2Codec._on_goaway,
    fr.WINDOW_UPDATE: H2Codec._on_window_update,
}
