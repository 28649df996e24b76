"""Bindings: `bindings.cron` (input) and `bindings.http` (output, against a real HTTP server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import pytest

from runtime.components.api import BindingEvent, InputBinding, OutputBinding
from runtime.components.bindings.cron import (
    Cron,
    CronInputBinding,
    Every,
    parse_go_duration,
    parse_schedule,
)
from runtime.components.bindings.http import HttpOutputBinding, HttpStatusError
from runtime.components.errors import BadMetadata, ComponentError, NotSupported
from tests.support.http_backend import Backend as HttpServer
from tests.support.http_backend import http_backend
from tests.support.net import free_port

# -- cron schedules ------------------------------------------------------------------------------

START = datetime(2024, 3, 1, 12, 0, 0)  # a Friday

NEXT_FIRES = [
    ("*/15 * * * * *", datetime(2024, 3, 1, 12, 0, 15)),
    ("0 30 * * * *", datetime(2024, 3, 1, 12, 30)),
    ("0 0 * * *", datetime(2024, 3, 2, 0, 0)),
    ("30 9 * * MON-FRI", datetime(2024, 3, 4, 9, 30)),
    ("0 0 13 * 5", datetime(2024, 3, 8)),  # both day fields: Friday the 8th comes first
    ("0 0 13 * ?", datetime(2024, 3, 13)),
    ("0 0 * * 7", datetime(2024, 3, 3)),  # 7 is Sunday too
    ("0 0 29 2 *", datetime(2028, 2, 29)),
    ("0 0 1 jan,jul *", datetime(2024, 7, 1)),
    ("5/20 * * * * *", datetime(2024, 3, 1, 12, 0, 5)),
    ("0 0 10-14/2 * * *", datetime(2024, 3, 1, 14, 0)),
    ("@hourly", datetime(2024, 3, 1, 13, 0)),
    ("@daily", datetime(2024, 3, 2)),
    ("@weekly", datetime(2024, 3, 3)),
    ("@monthly", datetime(2024, 4, 1)),
    ("@yearly", datetime(2025, 1, 1)),
]


@pytest.mark.parametrize(("schedule", "expected"), NEXT_FIRES)
def test_cron_next_fire_time(schedule: str, expected: datetime) -> None:
    parsed = parse_schedule(schedule)
    assert isinstance(parsed, Cron)
    assert parsed.next_after(START) == expected


def test_cron_next_fire_is_strictly_later() -> None:
    parsed = parse_schedule("* * * * * *")
    assert isinstance(parsed, Cron)
    assert parsed.next_after(START.replace(microsecond=999_999)) == START.replace(second=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("250ms", 0.25), ("2h45m10s", 9910.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)
    every = parse_schedule(f"@every {text}")
    assert isinstance(every, Every) and every.interval == pytest.approx(seconds)


@pytest.mark.parametrize(
    "schedule",
    ["", "* * * *", "* * * * * * *", "61 * * * *", "* 24 * * *", "0 0 32 * *", "0 0 * 13 *",
     "5-1 * * * *", "*/0 * * * *", "x * * * *", "? * * * *", "@often", "@every", "@every 0s",
     "@every 5", "@every -1s", "0 0 30 2 *", "L * * * *"],
)  # fmt: skip
async def test_cron_bad_schedules_name_the_key(schedule: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        await CronInputBinding().init({"schedule": schedule})
    assert caught.value.key == "schedule"


# -- the cron binding ----------------------------------------------------------------------------


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[BindingEvent] = asyncio.Queue()

    async def __call__(self, event: BindingEvent) -> None:
        self.queue.put_nowait(event)

    async def next(self) -> BindingEvent:
        async with asyncio.timeout(3):
            return await self.queue.get()


@pytest.fixture
async def every_50ms() -> AsyncIterator[InputBinding]:
    binding = CronInputBinding()
    await binding.init({"schedule": "@every 50ms"})
    yield binding
    await binding.close()


async def test_cron_fires_repeatedly_with_empty_events(every_50ms: InputBinding) -> None:
    events = Events()
    await every_50ms.read(events)
    for _ in range(3):
        event = await events.next()
        assert event.data == b""
        assert set(event.metadata) == {"timeZone", "readTimeUTC"}
        assert datetime.fromisoformat(event.metadata["readTimeUTC"]).tzinfo is not None


async def test_cron_six_field_schedule_fires_on_the_second() -> None:
    binding = CronInputBinding()
    await binding.init({"schedule": "* * * * * *"})
    events = Events()
    await binding.read(events)
    first = datetime.fromisoformat((await events.next()).metadata["readTimeUTC"])
    second = datetime.fromisoformat((await events.next()).metadata["readTimeUTC"])
    assert 0.5 <= (second - first).total_seconds() <= 1.5
    assert first.microsecond < 500_000  # on (just after) a whole second
    await binding.close()


async def test_cron_cancel_stops_the_events(every_50ms: InputBinding) -> None:
    events = Events()
    subscription = await every_50ms.read(events)
    await events.next()
    await subscription.cancel()
    await asyncio.sleep(0.15)
    while not events.queue.empty():  # at most one event raced the cancel
        events.queue.get_nowait()
    await asyncio.sleep(0.15)
    assert events.queue.empty()


async def test_cron_a_failing_handler_does_not_stop_the_schedule(
    every_50ms: InputBinding, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    done = asyncio.Event()

    async def flaky(event: BindingEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            done.set()
        raise RuntimeError("app is down")

    await every_50ms.read(flaky)
    async with asyncio.timeout(3):
        await done.wait()
    assert "app is down" in caplog.text


async def test_cron_close_cancels_every_reader() -> None:
    binding = CronInputBinding()
    await binding.init({"schedule": "@every 1h"})
    await binding.read(Events())
    await binding.read(Events())
    assert sum(t.get_name().startswith("bindings.cron") for t in asyncio.all_tasks()) == 2
    await binding.close()
    assert not any(t.get_name().startswith("bindings.cron") for t in asyncio.all_tasks())


# -- the http binding ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with http_backend("api") as backend:
        yield backend


async def http_binding(server: HttpServer, base: str = "/", **metadata: str) -> OutputBinding:
    binding = HttpOutputBinding()
    await binding.init({"url": f"http://127.0.0.1:{server.port}{base}", **metadata})
    return binding


async def test_http_get_appends_the_path_and_answers_with_metadata(server: HttpServer) -> None:
    binding = await http_binding(server, "/echo/")
    response = await binding.invoke("get", b"ignored", {"path": "/item?id=7"})
    echoed = json.loads(response.data)
    assert (echoed["method"], echoed["path"], echoed["body"]) == ("GET", "/echo/item?id=7", "")
    assert echoed["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert response.metadata["statusCode"] == "200"
    assert response.metadata["status"] == "200 OK"
    assert response.metadata["Content-Type"] == "application/json"
    assert response.metadata["X-Backend"] == "api"


@pytest.mark.parametrize(("operation", "method"), [("post", "POST"), ("create", "POST"),
                                                   ("put", "PUT"), ("patch", "PATCH")])  # fmt: skip
async def test_http_operations_with_a_body(server: HttpServer, operation: str, method: str) -> None:
    binding = await http_binding(server)
    response = await binding.invoke(operation, '{"grüße": 1}'.encode(), {"path": "echo"})
    echoed = json.loads(response.data)
    assert echoed["method"] == method
    assert echoed["body"].encode("latin-1") == '{"grüße": 1}'.encode()
    assert echoed["headers"]["content-type"] == "application/json; charset=utf-8"
    assert echoed["headers"]["content-length"] == str(len('{"grüße": 1}'.encode()))


async def test_http_delete_head_and_options(server: HttpServer) -> None:
    binding = await http_binding(server)
    deleted = json.loads((await binding.invoke("delete", b"x", {"path": "echo"})).data)
    assert (deleted["method"], deleted["body"]) == ("DELETE", "")
    head = await binding.invoke("head", b"", {"path": "echo"})
    assert head.data == b"" and head.metadata["statusCode"] == "200"
    options = json.loads((await binding.invoke("OPTIONS", b"", {"path": "echo"})).data)
    assert options["method"] == "OPTIONS"


async def test_http_capitalised_metadata_are_headers(server: HttpServer) -> None:
    binding = await http_binding(server, securityToken="t0k", securityTokenHeader="X-Token")
    metadata = {"path": "echo", "X-Custom": "yes", "Content-Type": "text/plain",
                "lowercase": "not a header", "traceparent": "00-abc-def-01"}  # fmt: skip
    echoed = json.loads((await binding.invoke("post", b"hi", metadata)).data)
    headers = echoed["headers"]
    assert headers["x-custom"] == "yes" and headers["content-type"] == "text/plain"
    assert headers["x-token"] == "t0k" and headers["traceparent"] == "00-abc-def-01"
    assert "lowercase" not in headers and "path" not in headers


async def test_http_a_non_2xx_answer_raises_with_the_status(server: HttpServer) -> None:
    binding = await http_binding(server)
    with pytest.raises(HttpStatusError) as caught:
        await binding.invoke("get", b"", {"path": "status/503"})
    assert caught.value.status == 503 and caught.value.retryable
    assert "503" in str(caught.value)
    assert caught.value.response.data == b"status 503"
    with pytest.raises(HttpStatusError) as not_found:
        await binding.invoke("get", b"", {"path": "status/404"})
    assert not not_found.value.retryable


async def test_http_error_if_not_2xx_can_be_turned_off(server: HttpServer) -> None:
    binding = await http_binding(server, errorIfNot2XX="false")
    response = await binding.invoke("get", b"", {"path": "status/500"})
    assert response.metadata["statusCode"] == "500"
    with pytest.raises(HttpStatusError):
        await binding.invoke("get", b"", {"path": "status/500", "errorIfNot2XX": "true"})


async def test_http_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; ends when the client goes away
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        binding = HttpOutputBinding()
        await binding.init({"url": f"http://127.0.0.1:{port}/", "responseTimeout": "100ms"})
        with pytest.raises(ComponentError, match=r"within 0\.1s") as caught:
            await binding.invoke("get", b"", {})
        assert caught.value.retryable
    finally:
        server.close()
        await server.wait_closed()


async def test_http_a_refused_connection_is_an_error() -> None:
    binding = HttpOutputBinding()
    await binding.init({"url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ComponentError) as caught:
        await binding.invoke("get", b"", {})
    assert caught.value.retryable


async def test_http_https_urls_use_tls() -> None:
    """A plain server behind an https:// URL: the TLS handshake fails, as an error."""

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        binding = HttpOutputBinding()
        await binding.init({"url": f"https://127.0.0.1:{port}/"})
        with pytest.raises(ComponentError):
            await binding.invoke("get", b"", {})
    finally:
        server.close()
        await server.wait_closed()


async def test_http_an_answer_too_large_is_an_error(server: HttpServer) -> None:
    binding = await http_binding(server, maxResponseBodySize="1KiB")
    assert len((await binding.invoke("get", b"", {"path": "bytes/1024"})).data) == 1024
    with pytest.raises(ComponentError, match="larger than 1024"):
        await binding.invoke("get", b"", {"path": "bytes/1025"})


async def test_http_an_unknown_operation_is_not_supported(server: HttpServer) -> None:
    binding = await http_binding(server)
    assert set(binding.operations) >= {"get", "post", "create", "delete", "trace"}
    with pytest.raises(NotSupported):
        await binding.invoke("connect", b"", {})


async def test_http_a_malformed_answer_is_an_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        binding = HttpOutputBinding()
        await binding.init({"url": f"http://127.0.0.1:{port}"})
        with pytest.raises(ComponentError, match="malformed"):
            await binding.invoke("get", b"", {})
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "http://h:99999/"}, "url"),
        ({"url": "http://h/", "responseTimeout": "soon"}, "responseTimeout"),
        ({"url": "http://h/", "maxResponseBodySize": "0"}, "maxResponseBodySize"),
        ({"url": "http://h/", "errorIfNot2XX": "sometimes"}, "errorIfNot2XX"),
        ({"url": "https://h/", "MTLSRootCA": "/ca.pem"}, "MTLSRootCA"),
    ],
)
async def test_http_bad_metadata_names_the_key(metadata: dict[str, str], key: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        await HttpOutputBinding().init(metadata)
    assert caught.value.key == key
