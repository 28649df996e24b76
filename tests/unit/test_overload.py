"""The overload manager's stages, its config, and the HTTP connection manager refusing."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any, cast

import pytest
from hpack import Encoder
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame, SettingsFrame

from proxy.config.overload import OverloadConfig
from proxy.config.parse import parse_config
from proxy.config.reader import ConfigError
from proxy.listener import Listener
from proxy.overload import OverloadCollector, OverloadManager, Readings
from tests.unit.test_http_drain import PREFACE, REQUEST, connect, http_listener, settle


class Dial(Readings):
    """Readings a test turns: descriptors out of 1000, memory in MiB."""

    def __init__(self) -> None:
        self.open = 100
        self.rss = 10 << 20

    def memory(self) -> int:
        return self.rss

    def descriptors(self) -> int:
        return self.open

    def descriptor_limit(self) -> int:
        return 1000


class FakeListener:
    def __init__(self) -> None:
        self.paused: set[str] = set()
        self.idle_closed = 0

    def pause_accepting(self, reason: str) -> None:
        self.paused.add(reason)

    def resume_accepting(self, reason: str) -> None:
        self.paused.discard(reason)

    def close_idle(self) -> int:
        self.idle_closed += 1
        return 0


def manager(dial: Dial, listeners: list[FakeListener], **config: Any) -> OverloadManager:
    return OverloadManager(OverloadConfig(**config), lambda: cast(list[Listener], listeners), dial)


async def checked(overload: OverloadManager) -> None:
    overload.check()
    overload.stop()  # (one check at a time: the test turns the dial in between)


async def test_stages_start_in_turn_and_stop_below_their_watermark(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dial, listener = Dial(), FakeListener()
    overload = manager(dial, [listener])
    caplog.set_level(logging.INFO, "mecha.overload")
    steps = [(899, set()), (900, {"close_idle_connections"}),
             (950, {"close_idle_connections", "stop_accepting"}),
             (985, {"close_idle_connections", "stop_accepting", "refuse_requests"}),
             (965, {"close_idle_connections", "stop_accepting", "refuse_requests"}),
             (959, {"close_idle_connections", "stop_accepting"}),
             (931, {"close_idle_connections", "stop_accepting"}), (929, {"close_idle_connections"}),
             (879, set())]  # fmt: skip
    for open_descriptors, active in steps:
        dial.open = open_descriptors
        await checked(overload)
        assert {a for a, on in overload.active.items() if on} == active, open_descriptors
        assert overload.state.refuse_requests == ("refuse_requests" in active)
        assert (listener.paused == {"overload"}) == ("stop_accepting" in active)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "overload: descriptors at 90%: close_idle_connections starts",
        "overload: descriptors at 95%: stop_accepting starts",
        "overload: descriptors at 98%: refuse_requests starts",
        "overload: descriptors at 96%: refuse_requests stops",
        "overload: descriptors at 93%: stop_accepting stops",
        "overload: descriptors at 88%: close_idle_connections stops",
    ]
    assert overload.activations == dict.fromkeys(overload.active, 1)


async def test_idle_connections_are_closed_at_every_check_while_it_lasts() -> None:
    dial, listener = Dial(), FakeListener()
    overload = manager(dial, [listener])
    dial.open = 920
    for _ in range(3):
        await checked(overload)
    assert listener.idle_closed == 3


async def test_memory_counts_when_max_rss_is_set_and_the_higher_pressure_wins() -> None:
    dial, listener = Dial(), FakeListener()
    overload = manager(dial, [listener], max_rss=100 << 20)
    dial.rss = 96 << 20
    await checked(overload)
    assert overload.pressure == {"descriptors": 0.1, "memory": 0.96}
    assert overload.active["stop_accepting"] and not overload.active["refuse_requests"]


async def test_an_action_set_to_false_never_starts() -> None:
    config = parse_config({"overload": {"watermarks": {"refuse_requests": False}}})
    assert config.overload is not None
    dial = Dial()
    overload = OverloadManager(config.overload, lambda: [], dial)
    dial.open = 1000
    await checked(overload)
    assert not overload.state.refuse_requests and overload.active["stop_accepting"]


async def test_metrics() -> None:
    dial = Dial()
    overload = manager(dial, [])
    dial.open = 960
    await checked(overload)
    families = {family.name: family for family in OverloadCollector(overload).collect()}
    pressure = families["mecha_overload_pressure"].samples
    assert [(s.labels, s.value) for s in pressure] == [({"resource": "descriptors"}, 0.96)]
    active = {s.labels["action"]: s.value for s in families["mecha_overload_action_active"].samples}
    assert active == {"close_idle_connections": 1.0, "stop_accepting": 1.0, "refuse_requests": 0.0}


async def test_checks_go_on_every_interval() -> None:
    dial = Dial()
    overload = manager(dial, [], check_interval=0.01)
    overload.start()
    dial.open = 990
    await asyncio.sleep(0.05)
    overload.stop()
    assert overload.state.refuse_requests


# -- config -----------------------------------------------------------------------------------


def test_defaults_watch_descriptors_only() -> None:
    config = parse_config({})
    assert config.overload == OverloadConfig()
    assert config.overload.max_rss is None and config.overload.max_descriptors is None
    assert dict(config.overload.watermarks) == {
        "close_idle_connections": 0.9, "stop_accepting": 0.95, "refuse_requests": 0.98}  # fmt: skip


def test_off_and_full() -> None:
    assert parse_config({"overload": False}).overload is None
    config = parse_config({"overload": {
        "check_interval": "250ms", "max_rss": "1GiB", "max_descriptors": 50000,
        "watermarks": {"stop_accepting": 0.8}}})  # fmt: skip
    assert config.overload == OverloadConfig(
        check_interval=0.25, max_rss=1 << 30, max_descriptors=50000,
        watermarks=(("close_idle_connections", 0.9), ("stop_accepting", 0.8),
                    ("refuse_requests", 0.98)),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"check_interval": 0}, "overload.check_interval: must be greater than zero"),
        ({"max_rss": "lots"}, "overload.max_rss:"),
        ({"max_descriptors": -1}, "overload.max_descriptors:"),
        ({"watermarks": {"stop_accepting": 1.5}}, "overload.watermarks.stop_accepting:"),
        ({"watermarks": {"shrink_heap": 0.9}}, "overload.watermarks.shrink_heap: unknown key"),
        ({"limit": 1}, "overload.limit: unknown key"),
    ],
)
def test_problems_name_their_path(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"overload": document})
    assert any(str(found).startswith(problem) for found in raised.value.problems), str(raised.value)


# -- the HTTP connection manager refusing --------------------------------------------------------


async def test_http1_requests_are_refused_with_503_and_the_connection_closes() -> None:
    listener = http_listener()
    connection, transport = connect(listener)
    shared = connection._single_reader.shared  # type: ignore[union-attr]
    shared.overload.refuse_requests = True
    connection.data_received(REQUEST + REQUEST)
    await settle()
    assert transport.data.startswith(b"HTTP/1.1 503 ")
    assert transport.data.count(b"HTTP/1.1") == 1 and transport.closed
    assert b"\r\nconnection: close\r\n" in transport.data
    assert shared.stats.overload_refused == 1


async def test_http2_streams_are_refused_with_refused_stream_and_the_connection_stays() -> None:
    listener = http_listener()
    connection, transport = connect(listener)
    shared = connection._single_reader.shared  # type: ignore[union-attr]
    shared.overload.refuse_requests = True
    headers = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    headers.data = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                                     (":authority", "test")])  # fmt: skip
    connection.data_received(PREFACE + SettingsFrame(0).serialize() + headers.serialize())
    await settle()
    resets = [f for f in frames(transport.data) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, 7)]  # REFUSED_STREAM
    assert not transport.closed and shared.stats.overload_refused == 1
    shared.overload.refuse_requests = False


def frames(data: bytes) -> list[Frame]:
    found, view = [], memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        found.append(frame)
        view = view[9 + length :]
    return found


class Exhausted(Dial):
    def descriptors(self) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    def memory(self) -> int:
        raise OSError(errno.EMFILE, "Too many open files")


async def test_with_no_descriptor_free_to_read_them_descriptors_are_at_their_limit() -> None:
    dial = Exhausted()
    overload = manager(dial, [], max_rss=100 << 20)
    await checked(overload)
    assert overload.pressure == {"descriptors": 1.0, "memory": 0.0}
    assert overload.state.refuse_requests
