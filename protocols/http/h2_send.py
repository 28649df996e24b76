"""The state of one HTTP/2 connection and everything that writes to it: the connection's
API (`initiate`, `data_to_send`, `goaway`, stream ids), `send_*` with the per-stream queues
that wait for flow-control window, the acknowledgements that reopen the peer's windows,
and the bookkeeping of open and closed streams. `H2Codec` (h2.py) adds what reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.http import h2_frames as fr
from protocols.http.errors import HttpError
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.h2_frames import ErrorCode
from protocols.http.h2_headers import CheckedBlocks, HeaderList, outbound_request, regular
from protocols.http.h2_streams import (
    CLOSED_BY_END,
    CLOSED_BY_US,
    CLOSED_MEMORY,
    Budgets,
    Outbox,
    Stream,
)
from protocols.http.headers import Headers
from protocols.http.hpack import Decoder, Encoder

CANCEL = ErrorCode.CANCEL
NO_ERROR = ErrorCode.NO_ERROR
DEFAULT_WINDOW = fr.DEFAULT_WINDOW
MAX_WINDOW = fr.MAX_WINDOW
_RANGES = (
    ("max_concurrent_streams", 0, MAX_WINDOW),
    ("initial_window_size", 0, MAX_WINDOW),
    ("connection_window_size", DEFAULT_WINDOW, MAX_WINDOW),
    ("max_frame_size", 16384, (1 << 24) - 1),
    ("max_header_list_size", 1, MAX_WINDOW),
)


class PendingBlock:
    """A header block still waiting for its CONTINUATION frames."""

    __slots__ = ("count", "flags", "parts", "sid", "size")

    def __init__(self, sid: int, flags: int, first: bytes) -> None:
        self.sid = sid
        self.flags = flags
        self.parts = [first]
        self.size = len(first)
        self.count = 0


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


DEFAULT_SETTINGS = H2Settings()


class H2Base:
    """One HTTP/2 connection's state, and its sending half (see h2.py for the rules)."""

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

    def __init__(self, client_side: bool, settings: H2Settings = DEFAULT_SETTINGS) -> None:
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
        self._block: PendingBlock | None = None
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
