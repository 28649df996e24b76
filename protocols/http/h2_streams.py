"""Per-stream state of the HTTP/2 codec: the stream itself, its queue of DATA waiting for
window, the events of one `feed` call, and the per-connection flood budgets.

Stream states (RFC 9113 §5.1) are two flags: `local_open` (we may still send) and
`remote_open` (the peer may still send). `open` is both, half-closed one of them, and a
stream with neither is closed and leaves `H2Codec._streams`; how it closed is kept a while
(`CLOSED_BY_*`) because that decides what a late frame on it means:

| closed by          | late DATA / HEADERS from the peer                        |
|--------------------|----------------------------------------------------------|
| our RST_STREAM     | ignored (its connection window given back), §5.4.2       |
| the peer's RST     | RST_STREAM STREAM_CLOSED, §5.1                           |
| END_STREAM         | connection error STREAM_CLOSED, §5.1                     |
| (forgotten, old)   | as our RST_STREAM                                        |
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from protocols.http.events import Data, Event, RequestHeaders, ResponseHeaders, Trailers
from protocols.http.h2_frames import ErrorCode, H2ConnectionError

_Endable = RequestHeaders | ResponseHeaders | Data | Trailers
HeaderList = list[tuple[bytes, bytes]]

CLOSED_BY_US, CLOSED_BY_PEER, CLOSED_BY_END = 0, 1, 2
CLOSED_MEMORY = 4096
"""Closed streams whose fate is remembered; older ones count as reset by us."""


class Stream:
    __slots__ = ("final", "head_method", "local_open", "processed", "recv_window",
                 "remaining", "remote_open", "send_window")  # fmt: skip

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.local_open = True
        self.remote_open = True
        self.send_window = send_window
        self.recv_window = recv_window
        """What the peer may still send before we open the window (it may not go below 0)."""
        self.processed = 0
        """Bytes the caller has acknowledged and no WINDOW_UPDATE has returned yet."""
        self.remaining: int | None = None
        """Body bytes the peer's content-length still owes, if it declared one."""
        self.final = False
        """A final (non-1xx) response head has arrived (client side)."""
        self.head_method = False


class Outbox:
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

    def take(self, room: int) -> bytes:
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
        return b"".join(parts)


@dataclass(slots=True)
class Batch:
    """The events of one `feed` call, and each stream's last event (to end it)."""

    events: list[Event] = field(default_factory=list)
    last: dict[int, _Endable] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    """Streams whose remaining events in this batch are swallowed (refused, malformed)."""

    def emit(self, event: _Endable) -> None:
        self.events.append(event)
        self.last[event.stream_id] = event


class Budgets:
    """Frames a peer may send that cost us work and give nothing back, as Envoy and nghttp2
    bound them; past a bound the connection ends with GOAWAY(ENHANCE_YOUR_CALM).

    - SETTINGS and PING each need an answer: at most CONTROL_PER_TURN of them between two
      `data_to_send` calls (one loop turn), so answers cannot pile up unread.
    - PRIORITY (ignored), WINDOW_UPDATE, and DATA that is empty and does not end a stream:
      a base allowance plus a share per stream opened and per DATA frame exchanged.
    - RST_STREAM from the peer on a stream still being answered (rapid reset,
      CVE-2023-44487): past RESET_FLOOR of them, no more than half of the peer's streams.
    """

    __slots__ = ("control", "data_frames", "empty_data", "premature_resets", "priority",
                 "streams", "tripped", "window_updates")  # fmt: skip

    CONTROL_PER_TURN = 1000
    BASE = 1000
    PER_STREAM = 100
    RESET_FLOOR = 100

    def __init__(self) -> None:
        self.control = 0
        self.streams = 0
        self.data_frames = 0
        self.priority = 0
        self.window_updates = 0
        self.empty_data = 0
        self.premature_resets = 0
        self.tripped: str | None = None
        """Which bound ended the connection, if one did."""

    def allowance(self) -> int:
        return self.BASE + self.PER_STREAM * self.streams + 10 * self.data_frames

    def control_frame(self) -> None:
        self.control += 1
        if self.control > self.CONTROL_PER_TURN:
            self.calm("SETTINGS/PING flood")

    def priority_frame(self) -> None:
        self.priority += 1
        if self.priority > self.allowance():
            self.calm("PRIORITY flood")

    def window_update(self) -> None:
        self.window_updates += 1
        if self.window_updates > self.allowance():
            self.calm("WINDOW_UPDATE flood")

    def empty_data_frame(self) -> None:
        self.empty_data += 1
        if self.empty_data > self.allowance():
            self.calm("empty DATA flood")

    def premature_reset(self) -> None:
        self.premature_resets += 1
        count = self.premature_resets
        if count > self.RESET_FLOOR and count * 2 > self.streams:
            self.calm("rapid reset")

    def calm(self, reason: str) -> None:
        self.tripped = reason
        raise H2ConnectionError(reason, ErrorCode.ENHANCE_YOUR_CALM)
