"""HTTP/2 codec: two H2Codec instances (and raw h2 peers) talking in memory."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated as H2Terminated
from h2.events import DataReceived, ResponseReceived, TrailersReceived
from h2.events import Event as H2Event
from h2.events import StreamReset as H2StreamReset
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, SettingsFrame

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
from protocols.http.h2 import H2Codec, H2Settings
from protocols.http.headers import Headers

DEFAULT = H2Settings()
SMALL = H2Settings(initial_window_size=65535, connection_window_size=65535)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# -- harness -------------------------------------------------------------------------------


def pair(
    client_settings: H2Settings = DEFAULT, server_settings: H2Settings = DEFAULT
) -> tuple[H2Codec, H2Codec]:
    client = H2Codec(client_side=True, settings=client_settings)
    server = H2Codec(client_side=False, settings=server_settings)
    client.initiate()
    server.initiate()
    exchange(client, server)
    return client, server


def exchange(client: H2Codec, server: H2Codec) -> tuple[list[Event], list[Event]]:
    """Pipe bytes both ways until both sides are quiet: (client's events, server's events)."""
    at_client: list[Event] = []
    at_server: list[Event] = []
    while True:
        to_server, to_client = client.data_to_send(), server.data_to_send()
        if not to_server and not to_client:
            return at_client, at_server
        if to_server:
            at_server += server.feed(to_server)
        if to_client:
            at_client += client.feed(to_client)


def headers(*items: tuple[bytes, bytes]) -> Headers:
    return Headers(items)


def send_request(
    client: H2Codec,
    path: bytes = b"/",
    end_stream: bool = True,
    extra: Iterable[tuple[bytes, bytes]] = (),
    method: bytes = b"GET",
    authority: bytes = b"example.com",
) -> int:
    sid = client.next_stream_id()
    head = RequestHeaders(method, path, authority, Headers(extra), stream_id=sid)
    client.send_headers(head, end_stream=end_stream)
    return sid


def respond(server: H2Codec, sid: int, body: bytes = b"", status: int = 200) -> None:
    server.send_headers(ResponseHeaders(status, headers((b"x-s", b"1")), stream_id=sid), not body)
    if body:
        server.send_data(sid, body, end_stream=True)


StreamEvent = RequestHeaders | ResponseHeaders | Data | Trailers | StreamReset


def of(events: Sequence[Event], sid: int) -> list[StreamEvent]:
    return [e for e in events if not isinstance(e, ConnectionTerminated) and e.stream_id == sid]


def body(events: Iterable[Event], sid: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data) and e.stream_id == sid)


def ended(events: Sequence[Event], sid: int) -> bool:
    mine = of(events, sid)
    if not mine or isinstance(mine[-1], StreamReset):
        return False
    return mine[-1].end_stream


def ack_all(codec: H2Codec, events: Iterable[Event]) -> None:
    for event in events:
        if isinstance(event, Data):
            codec.acknowledge(event.stream_id, len(event.data))


def raw_pump(raw: H2Connection, codec: H2Codec) -> tuple[list[H2Event], list[Event]]:
    """Like exchange, with a raw h2 connection on one side."""
    at_raw: list[H2Event] = []
    at_codec: list[Event] = []
    while True:
        to_codec, to_raw = raw.data_to_send(), codec.data_to_send()
        if not to_codec and not to_raw:
            return at_raw, at_codec
        if to_codec:
            at_codec += codec.feed(to_codec)
        if to_raw:
            at_raw += raw.receive_data(to_raw)


def raw_peer(client_side: bool, validate: bool = True) -> H2Connection:
    config = H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_outbound_headers=validate,
        normalize_outbound_headers=validate,
    )
    raw = H2Connection(config=config)
    raw.initiate_connection()
    return raw


def grpc_message(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


# -- requests and responses ----------------------------------------------------------------


def test_request_and_response_with_bodies() -> None:
    client, server = pair()
    sid = send_request(client, b"/upload?x=1", False, [(b"content-length", b"5")], b"POST")
    client.send_data(sid, b"hello", end_stream=True)
    _, at_server = exchange(client, server)

    head, data = at_server
    assert isinstance(head, RequestHeaders)
    assert (head.method, head.path, head.authority, head.scheme) == (
        b"POST",
        b"/upload?x=1",
        b"example.com",
        b"http",
    )
    assert (head.version, head.stream_id, head.content_length, head.end_stream) == (
        b"HTTP/2",
        sid,
        5,
        False,
    )
    assert head.headers.items == [(b"content-length", b"5")]
    assert data == Data(b"hello", sid, end_stream=True)

    respond(server, sid, b"world")
    at_client, _ = exchange(client, server)
    response, data = at_client
    assert isinstance(response, ResponseHeaders)
    assert (response.status, response.version, response.end_stream) == (200, b"HTTP/2", False)
    assert response.headers.items == [(b"x-s", b"1")]
    assert data == Data(b"world", sid, end_stream=True)


def test_headers_only_messages_end_on_the_head() -> None:
    client, server = pair()
    sid = send_request(client)
    _, at_server = exchange(client, server)
    assert len(at_server) == 1
    assert isinstance(at_server[0], RequestHeaders)
    assert at_server[0].end_stream
    respond(server, sid)
    at_client, _ = exchange(client, server)
    assert len(at_client) == 1
    assert isinstance(at_client[0], ResponseHeaders)
    assert at_client[0].end_stream


def test_empty_final_data_frame_ends_the_stream() -> None:
    client, server = pair()
    sid = send_request(client, end_stream=False, method=b"POST")
    client.send_data(sid, b"abc", end_stream=False)
    exchange(client, server)
    client.send_data(sid, b"", end_stream=True)
    _, at_server = exchange(client, server)
    assert at_server == [Data(b"", sid, end_stream=True)]


def test_grpc_style_unary_call_with_trailers() -> None:
    client, server = pair()
    grpc_headers = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
    sid = send_request(client, b"/pkg.Svc/Method", False, grpc_headers, b"POST")
    client.send_data(sid, grpc_message(b"\x08\x01"), end_stream=True)
    _, at_server = exchange(client, server)
    assert isinstance(at_server[0], RequestHeaders)
    assert at_server[0].headers.get(b"te") == b"trailers"
    assert body(at_server, sid) == grpc_message(b"\x08\x01")

    response = ResponseHeaders(200, headers((b"content-type", b"application/grpc")), stream_id=sid)
    server.send_headers(response, end_stream=False)
    server.send_data(sid, grpc_message(b"\x08\x02"), end_stream=False)
    server.send_trailers(sid, headers((b"grpc-status", b"0"), (b"grpc-message", b"")))
    at_client, _ = exchange(client, server)
    head, data, trailers = at_client
    assert isinstance(head, ResponseHeaders)
    assert data == Data(grpc_message(b"\x08\x02"), sid)
    assert isinstance(trailers, Trailers)
    assert trailers.headers.get(b"grpc-status") == b"0"
    assert trailers.end_stream


def test_many_concurrent_streams_keep_their_bodies_apart() -> None:
    client, server = pair()
    sids = [send_request(client, b"/%d" % i, False, method=b"PUT") for i in range(60)]
    for round_ in range(3):
        for sid in sids:
            client.send_data(sid, b"%d-%d;" % (sid, round_), end_stream=round_ == 2)
    _, at_server = exchange(client, server)
    for sid in sids:
        assert body(at_server, sid) == b"".join(b"%d-%d;" % (sid, r) for r in range(3))
        assert ended(at_server, sid)
    for sid in reversed(sids):
        respond(server, sid, b"reply to %d" % sid)
    at_client, _ = exchange(client, server)
    for sid in sids:
        assert body(at_client, sid) == b"reply to %d" % sid
        assert ended(at_client, sid)


def test_informational_response_comes_before_the_final_one() -> None:
    client, server = pair()
    sid = send_request(client, extra=[(b"expect", b"100-continue")], end_stream=False)
    _, at_server = exchange(client, server)
    assert isinstance(at_server[0], RequestHeaders)
    assert at_server[0].expect_continue
    server.send_headers(ResponseHeaders(100, Headers(), stream_id=sid), end_stream=False)
    client.send_data(sid, b"body", end_stream=True)
    respond(server, sid)
    at_client, _ = exchange(client, server)
    informational, final = at_client
    assert isinstance(informational, ResponseHeaders)
    assert isinstance(final, ResponseHeaders)
    assert informational.informational
    assert (informational.status, informational.end_stream) == (100, False)
    assert (final.status, final.end_stream) == (200, True)


# -- headers -------------------------------------------------------------------------------


def test_connection_specific_headers_are_stripped() -> None:
    client, server = pair()
    hop = [
        (b"connection", b"keep-alive, x-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"x-hop", b"1"),
        (b"te", b"trailers, deflate"),
        (b"host", b"example.com"),
        (b"x-kept", b"yes"),
    ]
    sid = send_request(client, extra=hop)
    _, at_server = exchange(client, server)
    head = at_server[0]
    assert isinstance(head, RequestHeaders)
    assert head.headers.items == [(b"te", b"trailers"), (b"x-kept", b"yes")]
    assert head.authority == b"example.com"

    response = headers((b"connection", b"close"), (b"transfer-encoding", b"chunked"), (b"a", b"b"))
    server.send_headers(ResponseHeaders(200, response, stream_id=sid), end_stream=True)
    at_client, _ = exchange(client, server)
    assert isinstance(at_client[0], ResponseHeaders)
    assert at_client[0].headers.items == [(b"a", b"b")]


def test_te_other_than_trailers_is_dropped() -> None:
    client, server = pair()
    send_request(client, extra=[(b"te", b"gzip")])
    _, at_server = exchange(client, server)
    assert isinstance(at_server[0], RequestHeaders)
    assert b"te" not in at_server[0].headers


def test_host_header_becomes_the_authority() -> None:
    client, server = pair()
    send_request(client, authority=b"", extra=[(b"host", b"svc.local:8080")])
    _, at_server = exchange(client, server)
    head = at_server[0]
    assert isinstance(head, RequestHeaders)
    assert head.authority == b"svc.local:8080"
    assert b"host" not in head.headers


def test_request_without_any_authority_is_refused_before_the_wire() -> None:
    client, server = pair()
    with pytest.raises(HttpError) as info:
        send_request(client, authority=b"")
    assert info.value.status == 400
    assert client.data_to_send() == b""
    send_request(client)  # the connection is intact
    _, at_server = exchange(client, server)
    assert isinstance(at_server[0], RequestHeaders)


def test_a_header_http2_cannot_carry_is_refused_before_the_wire() -> None:
    client, _ = pair()
    with pytest.raises(HttpError):
        send_request(client, extra=[(b"bad name", b"x")])
    with pytest.raises(HttpError):
        send_request(client, extra=[(b"x-split", b"a\r\nb")])
    assert client.data_to_send() == b""


def test_inbound_host_without_authority_fills_the_authority() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    raw = raw_peer(client_side=True)
    block = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h.example")]
    raw.send_headers(1, block, end_stream=True)
    _, at_server = raw_pump(raw, server)
    head = at_server[0]
    assert isinstance(head, RequestHeaders)
    assert head.authority == b"h.example"
    assert head.headers.get(b"host") == b"h.example"


def test_connect_uses_the_authority_form() -> None:
    client, server = pair()
    send_request(client, b"db.internal:5432", method=b"CONNECT", authority=b"db.internal:5432")
    _, at_server = exchange(client, server)
    head = at_server[0]
    assert isinstance(head, RequestHeaders)
    assert (head.method, head.path, head.authority) == (
        b"CONNECT",
        b"db.internal:5432",
        b"db.internal:5432",
    )


def test_an_early_response_asks_the_client_to_stop_sending() -> None:
    client, server = pair()
    sid = send_request(client, end_stream=False, method=b"POST")
    exchange(client, server)
    respond(server, sid, status=413)
    server.stop_receiving(sid)
    at_client, _ = exchange(client, server)
    head, reset = of(at_client, sid)
    assert isinstance(head, ResponseHeaders) and head.status == 413 and head.end_stream
    assert reset == StreamReset(sid, ErrorCodes.NO_ERROR)


def test_the_stop_waits_for_a_queued_response_to_leave() -> None:
    client, server = pair(client_settings=SMALL)
    sid = send_request(client, end_stream=False, method=b"POST")
    exchange(client, server)
    server.send_headers(ResponseHeaders(200, Headers(), stream_id=sid), end_stream=False)
    server.send_data(sid, b"x" * 100_000, end_stream=True)
    server.stop_receiving(sid)
    at_client, _ = exchange(client, server)
    assert not any(isinstance(e, StreamReset) for e in at_client)  # the body is not all out
    ack_all(client, at_client)
    more, _ = exchange(client, server)
    at_client += more
    assert body(at_client, sid) == b"x" * 100_000
    *_, last, reset = of(at_client, sid)
    assert isinstance(last, Data) and last.end_stream  # the whole response, then the stop
    assert reset == StreamReset(sid, ErrorCodes.NO_ERROR)


# -- flow control --------------------------------------------------------------------------


def test_body_larger_than_the_window_completes_only_as_the_receiver_acknowledges() -> None:
    client, server = pair(server_settings=SMALL)
    payload = bytes(range(256)) * 1200  # 307200 bytes, more than four windows
    sid = send_request(client, end_stream=False, method=b"POST")
    client.send_data(sid, payload, end_stream=True)
    _, at_server = exchange(client, server)
    got = body(at_server, sid)
    assert len(got) == 65535
    assert client.pending(sid) == len(payload) - 65535
    assert not ended(at_server, sid)

    _, stalled = exchange(client, server)  # without acknowledgements nothing moves
    assert stalled == []
    assert client.pending(sid) == len(payload) - 65535

    events = at_server
    while client.pending(sid) or not ended(events, sid):
        ack_all(server, events)
        _, events = exchange(client, server)
        assert events, "acknowledging must release more data"
        at_server += events
        assert not any(isinstance(e, Data) and e.end_stream for e in at_server[:-1])
    assert body(at_server, sid) == payload
    assert ended(at_server, sid)


def test_trailers_wait_behind_queued_data() -> None:
    client, server = pair(client_settings=SMALL)
    sid = send_request(client)
    exchange(client, server)
    server.send_headers(ResponseHeaders(200, Headers(), stream_id=sid), end_stream=False)
    server.send_data(sid, b"x" * 100_000, end_stream=False)
    server.send_trailers(sid, headers((b"grpc-status", b"0")))
    assert server.pending(sid) == 100_000 - 65535
    at_client, _ = exchange(client, server)
    assert not any(isinstance(e, Trailers) for e in at_client)
    ack_all(client, at_client)
    more, _ = exchange(client, server)
    at_client += more
    assert body(at_client, sid) == b"x" * 100_000
    assert isinstance(at_client[-1], Trailers)
    assert server.pending(sid) == 0


def test_connection_window_is_shared_round_robin() -> None:
    client, server = pair(server_settings=SMALL)
    sids = [send_request(client, end_stream=False, method=b"POST") for _ in range(3)]
    for sid in sids:
        client.send_data(sid, b"y" * 50_000, end_stream=True)
    events: list[Event] = []
    received: list[Event] = []
    for _ in range(20):
        ack_all(server, events)
        _, events = exchange(client, server)
        received += events
    for sid in sids:
        assert body(received, sid) == b"y" * 50_000
        assert ended(received, sid)


def test_padding_is_given_back_without_the_caller() -> None:
    server = H2Codec(client_side=False, settings=SMALL)
    server.initiate()
    raw = raw_peer(client_side=True)
    raw_pump(raw, server)
    raw.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"),
                         (b":authority", b"a")])  # fmt: skip
    received: list[Event] = []
    frames = 0
    while frames < 400:  # 480 KB flow-controlled through a 64 KB window
        before = frames
        while frames < 400 and raw.local_flow_control_window(1) >= 1201:
            raw.send_data(1, b"p" * 1000, pad_length=200)
            frames += 1
        _, events = raw_pump(raw, server)
        ack_all(server, events)  # payload only: padding is the codec's business
        raw_pump(raw, server)
        received += events
        if frames == before:
            break  # stalled: the window leaked
    assert len(body(received, 1)) == 400_000


def test_acknowledging_more_than_received_is_harmless() -> None:
    client, server = pair(server_settings=SMALL)
    sid = send_request(client, end_stream=False, method=b"POST")
    client.send_data(sid, b"z" * 40_000, end_stream=False)
    exchange(client, server)
    server.acknowledge(sid, 10**9)
    server.acknowledge(sid, 10**9)
    server.acknowledge(99, 5)
    exchange(client, server)
    client.send_data(sid, b"z" * 65535, end_stream=True)
    _, at_server = exchange(client, server)
    assert len(body(at_server, sid)) == 65535  # exactly one window, no more


# -- resets and GOAWAY ---------------------------------------------------------------------


def test_resetting_one_stream_leaves_the_others_alone() -> None:
    client, server = pair()
    first = send_request(client, end_stream=False, method=b"POST")
    second = send_request(client, end_stream=False, method=b"POST")
    exchange(client, server)
    client.reset(first)
    client.send_data(second, b"still here", end_stream=True)
    _, at_server = exchange(client, server)
    assert at_server == [StreamReset(first, ErrorCodes.CANCEL), Data(b"still here", second, True)]

    respond(server, first, b"too late")  # the peer reset it: ignored, no exception
    server.send_trailers(first, headers((b"x", b"y")))
    respond(server, second, b"ok")
    at_client, _ = exchange(client, server)
    assert of(at_client, first) == []
    assert body(at_client, second) == b"ok"
    assert client.open_streams == 0


def test_a_reset_gives_back_the_unacknowledged_window() -> None:
    client, server = pair(server_settings=SMALL)
    first = send_request(client, end_stream=False, method=b"POST")
    client.send_data(first, b"a" * 65535, end_stream=False)
    exchange(client, server)  # the whole connection window sits unacknowledged
    server.reset(first, ErrorCodes.REFUSED_STREAM)
    second = send_request(client, end_stream=False, method=b"POST")
    client.send_data(second, b"b" * 65535, end_stream=True)
    at_client, at_server = exchange(client, server)
    assert StreamReset(first, ErrorCodes.REFUSED_STREAM) in at_client
    assert body(at_server, second) == b"b" * 65535
    assert ended(at_server, second)


def test_reset_by_the_peer_drops_queued_output() -> None:
    client, server = pair(client_settings=SMALL)
    sid = send_request(client, end_stream=False)
    exchange(client, server)
    server.send_headers(ResponseHeaders(200, Headers(), stream_id=sid), end_stream=False)
    server.send_data(sid, b"q" * 200_000, end_stream=True)
    assert server.pending(sid) > 0
    exchange(client, server)
    client.reset(sid)
    _, at_server = exchange(client, server)
    assert at_server == [StreamReset(sid, ErrorCodes.CANCEL)]
    assert server.pending(sid) == 0


def test_graceful_goaway_lets_earlier_streams_finish() -> None:
    client, server = pair()
    first = send_request(client)
    second = send_request(client)
    exchange(client, server)
    server.goaway(last_stream_id=first)
    at_client, at_server = exchange(client, server)
    assert at_client == [
        ConnectionTerminated(0, first),
        StreamReset(second, ErrorCodes.REFUSED_STREAM),
    ]
    assert at_server == [StreamReset(second, ErrorCodes.CANCEL)]
    with pytest.raises(HttpError) as info:
        client.next_stream_id()
    assert info.value.status == 503

    respond(server, first, b"finished after GOAWAY")
    at_client, _ = exchange(client, server)
    assert body(at_client, first) == b"finished after GOAWAY"
    assert ended(at_client, first)


def test_after_its_goaway_the_server_refuses_new_streams_silently() -> None:
    client, server = pair()
    first = send_request(client)
    exchange(client, server)
    server.goaway()  # last stream id: the highest seen, i.e. `first`
    late = send_request(client)  # crosses the GOAWAY on the wire
    at_client, at_server = exchange(client, server)
    assert at_server == []
    assert at_client[:2] == [
        ConnectionTerminated(0, first),
        StreamReset(late, ErrorCodes.REFUSED_STREAM),
    ]
    respond(server, first)
    at_client, _ = exchange(client, server)
    assert ended(at_client, first)


def test_streams_crossing_our_goaway_give_their_window_back() -> None:
    client, server = pair(server_settings=SMALL)
    first = send_request(client, end_stream=False, method=b"POST")
    exchange(client, server)
    server.goaway()
    late = send_request(client, end_stream=False, method=b"POST")
    client.send_data(late, b"l" * 60_000, end_stream=True)  # refused, never seen
    _, at_server = exchange(client, server)
    assert at_server == []
    client.send_data(first, b"f" * 65535, end_stream=True)
    _, at_server = exchange(client, server)
    # Had the refused 60000 bytes leaked, only 5535 could follow; h2 batches WINDOW_UPDATEs
    # (half a window at a time), so at least 32768 must.
    assert len(body(at_server, first)) >= 32768
    ack_all(server, at_server)
    at_server += exchange(client, server)[1]
    assert body(at_server, first) == b"f" * 65535
    assert ended(at_server, first)


def test_goaway_only_ever_lowers_the_last_stream_id() -> None:
    client, server = pair()
    sids = [send_request(client, end_stream=False) for _ in range(3)]
    exchange(client, server)
    server.goaway(last_stream_id=(1 << 31) - 1)  # the shutdown notice
    at_client, _ = exchange(client, server)
    assert at_client == [ConnectionTerminated(0, (1 << 31) - 1)]
    server.goaway(last_stream_id=sids[0])
    server.goaway(last_stream_id=sids[2])  # may not raise it again
    at_client, at_server = exchange(client, server)
    assert at_client == [
        ConnectionTerminated(0, sids[0]),
        StreamReset(sids[1], ErrorCodes.REFUSED_STREAM),
        StreamReset(sids[2], ErrorCodes.REFUSED_STREAM),
        ConnectionTerminated(0, sids[0]),
    ]
    assert {e.stream_id for e in at_server if isinstance(e, StreamReset)} == set(sids[1:])


def test_goaway_with_an_error_ends_everything() -> None:
    client, server = pair()
    sid = send_request(client, end_stream=False)
    exchange(client, server)
    server.goaway(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=0)
    at_client, _ = exchange(client, server)
    assert at_client == [
        ConnectionTerminated(ErrorCodes.ENHANCE_YOUR_CALM, 0),
        StreamReset(sid, ErrorCodes.REFUSED_STREAM),
    ]
    client.send_data(sid, b"ignored", end_stream=True)  # the connection is gone: no-op
    with pytest.raises(HttpError):
        send_request(client)


def test_peer_stream_limit_is_respected() -> None:
    client, _ = pair(server_settings=H2Settings(max_concurrent_streams=2))
    assert client.max_outbound_streams == 2
    send_request(client, end_stream=False)
    send_request(client, end_stream=False)
    assert client.open_streams == 2
    with pytest.raises(HttpError) as info:
        send_request(client)
    assert info.value.status == 503


# -- errors --------------------------------------------------------------------------------


def malformed(block: list[tuple[bytes, bytes]]) -> tuple[list[H2Event], list[Event]]:
    """A raw client without validation sends `block` on stream 1, then a good stream 3."""
    server = H2Codec(client_side=False)
    server.initiate()
    raw = raw_peer(client_side=True, validate=False)
    raw_pump(raw, server)
    raw.send_headers(1, block, end_stream=True)
    good = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
    raw.send_headers(3, good, end_stream=True)
    return raw_pump(raw, server)


@pytest.mark.parametrize(
    "block",
    [
        [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")],  # no :path
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b"Upper", b"x")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b"connection", b"close")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b"content-length", b"ten")],
        # A length no body can have (HTTP/1.1 answers 413), and lengths h2 lets through.
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b"content-length", b"9" * 20)],
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b"content-length", b"-1")],
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b"content-length", b"5"), (b"content-length", b"6")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
         (b":status", b"200")],
    ],
)  # fmt: skip
def test_a_malformed_request_resets_only_its_stream(block: list[tuple[bytes, bytes]]) -> None:
    at_raw, at_server = malformed(block)
    assert at_server[0] == StreamReset(1, ErrorCodes.PROTOCOL_ERROR)
    assert isinstance(at_server[1], RequestHeaders)
    assert at_server[1].stream_id == 3
    resets = [e for e in at_raw if isinstance(e, H2StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(1, ErrorCodes.PROTOCOL_ERROR)]


def test_a_body_contradicting_content_length_resets_only_its_stream() -> None:
    server = H2Codec(client_side=False, settings=SMALL)
    server.initiate()
    raw = raw_peer(client_side=True)
    raw_pump(raw, server)
    block = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
    at_server: list[Event] = []
    for sid in range(1, 21, 2):  # 160 KB of bad bodies through a 64 KB connection window
        assert raw.outbound_flow_control_window >= 16000, "the bad bodies leaked window"
        raw.send_headers(sid, [*block, (b"content-length", b"10")])
        raw.send_data(sid, b"x" * 16000)  # longer than announced: the stream is malformed
        at_server += raw_pump(raw, server)[1]
    raw.send_headers(21, [*block, (b"content-length", b"3")])
    raw.send_data(21, b"abc", end_stream=True)
    at_server += raw_pump(raw, server)[1]
    for sid in range(1, 21, 2):
        head, reset = of(at_server, sid)
        assert isinstance(head, RequestHeaders)
        assert reset == StreamReset(sid, ErrorCodes.PROTOCOL_ERROR)
    assert body(at_server, 21) == b"abc"
    assert ended(at_server, 21)


def test_a_malformed_status_resets_only_its_stream() -> None:
    client = H2Codec(client_side=True)
    client.initiate()
    raw = raw_peer(client_side=False, validate=False)
    raw_pump(raw, client)
    bad, good = send_request(client), send_request(client)
    raw_pump(raw, client)
    raw.send_headers(bad, [(b":status", b"2xx")], end_stream=True)
    raw.send_headers(good, [(b":status", b"204")], end_stream=True)
    _, at_client = raw_pump(raw, client)
    assert at_client[0] == StreamReset(bad, ErrorCodes.PROTOCOL_ERROR)
    assert isinstance(at_client[1], ResponseHeaders)
    assert (at_client[1].status, at_client[1].end_stream) == (204, True)


def test_a_response_length_nobody_can_forward_resets_only_its_stream() -> None:
    client = H2Codec(client_side=True)
    client.initiate()
    raw = raw_peer(client_side=False, validate=False)
    raw_pump(raw, client)
    bad, good = send_request(client), send_request(client)
    raw_pump(raw, client)
    raw.send_headers(bad, [(b":status", b"200"), (b"content-length", b"9" * 20)])
    raw.send_headers(good, [(b":status", b"200"), (b"content-length", b"2")])
    raw.send_data(good, b"ok", end_stream=True)
    at_raw, at_client = raw_pump(raw, client)
    assert at_client[0] == StreamReset(bad, ErrorCodes.PROTOCOL_ERROR)
    assert isinstance(at_client[1], ResponseHeaders) and at_client[1].content_length == 2
    assert body(at_client, good) == b"ok" and ended(at_client, good)
    assert not [e for e in at_raw if isinstance(e, H2Terminated)]


def test_a_connection_error_raises_after_goaway_is_queued() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    raw = raw_peer(client_side=True)
    raw_pump(raw, server)
    data_on_stream_zero = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
    with pytest.raises(HttpError) as info:
        server.feed(data_on_stream_zero)
    assert info.value.status == 400
    at_raw = raw.receive_data(server.data_to_send())
    assert [type(e) for e in at_raw] == [H2Terminated]
    assert isinstance(at_raw[0], H2Terminated)
    assert at_raw[0].error_code == ErrorCodes.PROTOCOL_ERROR
    with pytest.raises(HttpError):
        server.feed(b"\x00")


def test_a_peer_ignoring_our_window_is_cut_off_not_buffered() -> None:
    server = H2Codec(client_side=False, settings=SMALL)
    server.initiate()
    raw = raw_peer(client_side=True)
    raw_pump(raw, server)
    raw.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"),
                         (b":authority", b"a")])  # fmt: skip
    server.feed(raw.data_to_send())
    frame = DataFrame(1, data=b"f" * 16384).serialize()
    with pytest.raises(HttpError):
        for _ in range(5):  # 80 KB into a 64 KB window, never acknowledged
            server.feed(frame)
    at_raw = raw.receive_data(server.data_to_send())
    goaway = [e for e in at_raw if isinstance(e, H2Terminated)]
    assert goaway[0].error_code == ErrorCodes.FLOW_CONTROL_ERROR


def test_endless_continuation_frames_are_cut_off() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    server.feed(PREFACE + SettingsFrame(0).serialize())
    with pytest.raises(HttpError):
        server.feed(HeadersFrame(1, data=b"\x82").serialize())
        for _ in range(100):
            server.feed(ContinuationFrame(1, data=b"\x00" * 1000).serialize())


def test_an_oversized_header_list_is_a_connection_error() -> None:
    server = H2Codec(client_side=False, settings=H2Settings(max_header_list_size=4096))
    server.initiate()
    raw = raw_peer(client_side=True)
    raw_pump(raw, server)
    block = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
    raw.send_headers(1, [*block, (b"x-big", b"b" * 8000)], end_stream=True)
    with pytest.raises(HttpError):
        server.feed(raw.data_to_send())


def test_http1_bytes_are_not_a_preface() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    with pytest.raises(HttpError):
        server.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_eof_is_not_an_error() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    assert server.feed(b"") == []


def test_sending_data_after_the_end_is_refused() -> None:
    client, _ = pair(server_settings=SMALL)
    sid = send_request(client, end_stream=False, method=b"POST")
    client.send_data(sid, b"d" * 100_000, end_stream=True)
    with pytest.raises(HttpError):
        client.send_data(sid, b"more", end_stream=False)
    with pytest.raises(HttpError):
        client.send_data(99, b"never opened", end_stream=False)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        H2Settings(max_frame_size=1000)
    with pytest.raises(ValueError):
        H2Settings(initial_window_size=1 << 31)


# -- interop and chunking ------------------------------------------------------------------


def test_our_client_against_a_raw_h2_server() -> None:
    client = H2Codec(client_side=True)
    client.initiate()
    raw = raw_peer(client_side=False)
    raw_pump(raw, client)
    sid = send_request(client, b"/echo", False, [(b"te", b"trailers")], b"POST")
    client.send_data(sid, b"ping", end_stream=True)
    at_raw, _ = raw_pump(raw, client)
    data = [e for e in at_raw if isinstance(e, DataReceived)]
    assert b"".join(e.data or b"" for e in data) == b"ping"
    raw.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/plain")])
    raw.send_data(sid, b"pong")
    raw.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    _, at_client = raw_pump(raw, client)
    head, payload, trailers = at_client
    assert isinstance(head, ResponseHeaders)
    assert head.status == 200
    assert payload == Data(b"pong", sid)
    assert trailers == Trailers(headers((b"grpc-status", b"0")), sid)


def test_a_raw_h2_client_against_our_server() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    raw = raw_peer(client_side=True)
    raw_pump(raw, server)
    block = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/x"),
             (b":authority", b"a.b"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]  # fmt: skip
    raw.send_headers(1, block, end_stream=True)
    _, at_server = raw_pump(raw, server)
    head = at_server[0]
    assert isinstance(head, RequestHeaders)
    assert (head.scheme, head.path, head.headers.get(b"cookie")) == (b"https", b"/x", b"a=1; b=2")
    respond(server, 1, b"hi")
    at_raw, _ = raw_pump(raw, server)
    responses = [e for e in at_raw if isinstance(e, ResponseReceived)]
    assert responses[0].headers[0] == (b":status", b"200")
    assert b"".join(e.data or b"" for e in at_raw if isinstance(e, DataReceived)) == b"hi"
    assert not [e for e in at_raw if isinstance(e, TrailersReceived)]


def conversation() -> list[bytes]:
    """What a client sends in a busy exchange: many streams, bodies, trailers, resets."""
    client = H2Codec(client_side=True)
    server = H2Codec(client_side=False, settings=SMALL)
    client.initiate()
    server.initiate()
    sent: list[bytes] = []

    def pump() -> None:
        while True:
            to_server, to_client = client.data_to_send(), server.data_to_send()
            if not to_server and not to_client:
                return
            if to_server:
                sent.append(to_server)
                ack_all(server, server.feed(to_server))
            if to_client:
                client.feed(to_client)

    pump()
    sids = [send_request(client, b"/%d" % i, False, [(b"x-i", b"%d" % i)]) for i in range(8)]
    for sid in sids:
        client.send_data(sid, bytes([sid]) * (sid * 1200), end_stream=sid % 3 == 0)
    pump()
    client.reset(sids[1])
    for sid in sids:
        if sid % 3 and sid != sids[1]:
            client.send_trailers(sid, headers((b"grpc-status", b"0")))
    pump()
    return sent


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    chunks = conversation()
    whole = H2Codec(client_side=False, settings=SMALL)
    whole.initiate()
    expected: list[Event] = []
    for chunk in chunks:
        expected += whole.feed(chunk)
        ack_all(whole, expected)
    assert len(expected) > 20
    byte_wise = H2Codec(client_side=False, settings=SMALL)
    byte_wise.initiate()
    stream = b"".join(chunks)
    got: list[Event] = []
    for i in range(len(stream)):
        events = byte_wise.feed(stream[i : i + 1])
        ack_all(byte_wise, events)
        got += events
    assert got == expected


def test_a_response_to_a_stream_we_reset_is_ignored_and_hpack_stays_in_step() -> None:
    """A deadline passed: the client reset its stream while the answer was on its way."""
    client, server = pair()
    late, other = send_request(client), send_request(client)
    exchange(client, server)
    client.reset(late)
    respond(server, late, b"too late")  # crosses the RST_STREAM on the wire
    server.send_headers(ResponseHeaders(200, headers((b"x-new", b"v")), stream_id=other), False)
    server.send_data(other, b"fine", end_stream=True)
    at_client = client.feed(server.data_to_send())
    assert of(at_client, late) == []
    head = of(at_client, other)[0]
    assert isinstance(head, ResponseHeaders) and head.headers.get(b"x-new") == b"v"
    assert body(at_client, other) == b"fine" and ended(at_client, other)
