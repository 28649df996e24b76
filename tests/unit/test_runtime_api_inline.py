"""The runtime API's handlers run inline (filters/http/runtime_api/inline.py): answered in
the same call as the request when nothing waits, carried on by a task when something does,
with the same answers, errors, cancellation and Dapr codes either way. Driven through the
real filter with a scripted stream and a real Runtime."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from filters.http.runtime_api.base import Answer
from filters.http.runtime_api.filter import NESTED_REPLIES, ApiShared, RuntimeApiFilter
from filters.http.runtime_api.inline import Resumed, run_inline
from proxy.upstream.cluster import ClusterManager
from runtime.components.api import Metadata, StateFeature, StateItem
from runtime.components.errors import ComponentError
from runtime.config import ComponentSpec, RuntimeConfig
from runtime.runtime import LoadedComponent, Runtime
from tests.unit.http_fakes import FakeStream, make_request

APP_ID = "inline"


# -- run_inline: a coroutine stepped by hand, then carried on by a task ---------------------


async def test_a_coroutine_that_does_not_wait_needs_no_task() -> None:
    done = []

    async def handler() -> None:
        done.append(True)

    assert run_inline(handler()) is None
    assert done == [True]


async def test_a_coroutine_that_waits_gets_what_it_awaited_from_its_task() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler() -> int:
        return await future + 1

    task = run_inline(handler())
    assert task is not None
    await asyncio.sleep(0)
    assert not task.done()
    future.set_result(41)
    assert await task == 42


async def test_the_awaited_failure_is_thrown_into_the_coroutine() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler() -> str:
        try:
            await future
        except ValueError as error:
            return f"caught {error}"
        return "not reached"

    task = run_inline(handler())
    assert task is not None
    future.set_exception(ValueError("boom"))
    assert await task == "caught boom"


@pytest.mark.parametrize("turns", [0, 1], ids=["before its first step", "while it waits"])
async def test_cancelling_the_task_reaches_the_coroutine(turns: int) -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen = []

    async def handler() -> int:
        try:
            return await future
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("cleaned up")

    task = run_inline(handler())
    assert task is not None
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled", "cleaned up"]
    assert future.cancelled()  # what it awaited is cancelled too, as a task's would be


async def test_bare_yields_and_more_waits_go_on_in_the_task() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()

    async def handler() -> int:
        await asyncio.sleep(0)  # a bare yield first
        total = await first
        await asyncio.sleep(0)
        return total + await second

    task = run_inline(handler())
    assert task is not None
    first.set_result(1)
    for _ in range(3):
        await asyncio.sleep(0)
    second.set_result(2)
    assert await task == 3


def test_closing_what_was_not_finished_closes_the_coroutine() -> None:
    cleaned = []

    async def handler() -> None:
        try:
            await asyncio.sleep(0)
        finally:
            cleaned.append(True)

    coro = handler()
    resumed = Resumed(coro, coro.send(None))
    assert resumed.send(None) is None  # (the bare yield, handed on)
    resumed.close()
    assert cleaned == [True]


# -- the filter ---------------------------------------------------------------------------------


@dataclass(eq=False)
class ApiStream(FakeStream):
    """FakeStream that keeps the response body, as the API sends one."""

    body: list[bytes] = field(default_factory=list)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        assert not self.done, "data after the stream ended"
        self.body.append(data)
        if end_stream:
            self.done = True

    def encode_headers(self, head: Any, end_stream: bool) -> None:
        assert not self.done, "a response after the stream ended"
        super().encode_headers(head, end_stream)
        if end_stream:
            self.done = True

    def answer(self) -> tuple[int, dict[bytes, bytes], bytes]:
        head = self.response
        return head.status, dict(head.headers), b"".join(self.body)


class FakeStore:
    features = StateFeature.NONE

    async def close(self) -> None:
        pass


class GatedStore(FakeStore):
    """A state store whose reads wait until the test opens (or breaks) the gate."""

    runs_inline = True

    def __init__(self) -> None:
        self.gate: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.cancelled = False

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        try:
            value = await self.gate
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return StateItem(key, value, etag="7")


class FailingStore(FakeStore):
    """A state store whose reads fail at once, with `error`."""

    runs_inline = True

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        raise self.error


class TaskOnlyStore(FakeStore):
    """A state store that needs a task (as one under asyncio.timeout would)."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any] | None] = []

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        self.tasks.append(asyncio.current_task())
        return StateItem(key, b'"from a task"')


class Api:
    """The filter over a runtime with `statestore` (in-memory) and the stores a test adds."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.shared = ApiShared(runtime, _Context())

    def add_store(self, name: str, instance: object) -> None:
        spec = ComponentSpec(name, "state.in-memory")
        self.runtime.components[name] = LoadedComponent(spec, instance, ready=True)

    def send(
        self, method: bytes, target: bytes, body: bytes = b"", grpc: bool = False
    ) -> tuple[ApiStream, RuntimeApiFilter]:
        request = make_request(method, target)
        request.end_stream = not body
        stream = ApiStream(request=request)
        stream.info.grpc = grpc
        api_filter = RuntimeApiFilter(self.shared, stream)
        stream.filters.append(api_filter)
        stream.start()
        if body:
            api_filter.decode_data(body, True)
        return stream, api_filter


class _Context:
    listener_name = "test"
    runtime = None
    cluster_manager = ClusterManager(())


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    config = RuntimeConfig(
        app_id=APP_ID, components=(ComponentSpec("statestore", "state.in-memory"),)
    )
    runtime = Runtime(config, ClusterManager(()))
    await runtime.start()
    try:
        yield Api(runtime)
    finally:
        await runtime.stop()


async def test_an_in_memory_read_is_answered_in_the_same_call(api: Api) -> None:
    saved, _ = api.send(b"POST", b"/v1.0/state/statestore", b'[{"key": "k", "value": {"a": 1}}]')
    assert saved.answer()[0] == 204 and b"content-length" not in saved.answer()[1]
    got, api_filter = api.send(b"GET", b"/v1.0/state/statestore/k")
    status, headers, body = got.answer()  # no loop turn has run since the request
    assert api_filter._task is None
    assert (status, body) == (200, b'{"a":1}')
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == b"7" and headers[b"etag"].isdigit()


async def test_a_read_that_waits_is_carried_on_by_a_task(api: Api) -> None:
    store = GatedStore()
    api.add_store("gated", store)
    stream, api_filter = api.send(b"GET", b"/v1.0/state/gated/k")
    assert stream.responses == [] and api_filter._task is not None
    store.gate.set_result(b'"late"')
    await api_filter._task
    assert stream.answer() == (
        200,
        {b"etag": b"7", b"content-type": b"application/json", b"content-length": b"6"},
        b'"late"',
    )


@pytest.mark.parametrize("waits", [False, True], ids=["at once", "after waiting"])
async def test_component_errors_keep_daprs_codes(api: Api, waits: bool) -> None:
    error = ComponentError("the backend is down")
    stream = await _fail(api, "broken", error, waits)
    status, headers, body = stream.answer()
    assert status == 500 and headers[b"content-type"] == b"application/json"
    assert json.loads(body) == {
        "errorCode": "ERR_STATE_GET",
        "message": "fail to get k from state store broken: the backend is down",
    }


async def _fail(api: Api, name: str, error: Exception, waits: bool) -> ApiStream:
    """A GET of `name`'s item `k` that fails with `error`, at once or after waiting."""
    if not waits:
        api.add_store(name, FailingStore(error))
        stream, api_filter = api.send(b"GET", f"/v1.0/state/{name}/k".encode())
        assert api_filter._task is None
        return stream
    store = GatedStore()
    api.add_store(name, store)
    stream, api_filter = api.send(b"GET", f"/v1.0/state/{name}/k".encode())
    assert api_filter._task is not None and stream.responses == []
    store.gate.set_exception(error)
    await api_filter._task
    return stream


@pytest.mark.parametrize("waits", [False, True], ids=["at once", "after waiting"])
async def test_a_handler_bug_is_a_logged_500(
    api: Api, waits: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "mecha.runtime_api"):
        stream = await _fail(api, "buggy", KeyError("bug"), waits)
    status, _, body = stream.answer()
    assert status == 500 and json.loads(body)["errorCode"] == "ERR_INTERNAL"
    assert "runtime API GET /v1.0/state/buggy/k failed" in caplog.text
    assert "KeyError: 'bug'" in caplog.text


async def test_a_client_that_goes_away_cancels_the_waiting_handler(api: Api) -> None:
    store = GatedStore()
    api.add_store("gated", store)
    stream, api_filter = api.send(b"GET", b"/v1.0/state/gated/k")
    task = api_filter._task
    assert task is not None
    stream.finish()  # the connection closed: the stream ends, its filters are destroyed
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.cancelled
    assert stream.responses == []


async def test_a_component_without_runs_inline_gets_a_task(api: Api) -> None:
    store = TaskOnlyStore()
    api.add_store("tasky", store)
    stream, api_filter = api.send(b"GET", b"/v1.0/state/tasky/k")
    assert stream.responses == [] and api_filter._task is not None
    await api_filter._task
    assert store.tasks == [api_filter._task]
    assert stream.answer()[2] == b'"from a task"'


@pytest.mark.parametrize(
    ("method", "target", "inline"),
    [
        (b"GET", b"/v1.0/metadata", True),
        (b"GET", b"/v1.0/healthz", True),
        (b"GET", b"/v1.0/state/nosuchstore/k", True),  # Dapr's 400, nothing to wait for
        (b"GET", b"/v1.0/healthz/outbound", False),  # pings every component
        (b"GET", b"/v1.0/configuration/nosuchstore/subscribe", False),
    ],
)
async def test_what_a_path_waits_on_decides(
    api: Api, method: bytes, target: bytes, inline: bool
) -> None:
    stream, api_filter = api.send(method, target)
    assert (api_filter._task is None) is inline
    if api_filter._task is not None:
        await api_filter._task
    assert stream.response.status in (200, 204, 400, 500)


async def test_a_grpc_client_hears_an_answer_as_a_local_reply(api: Api) -> None:
    stream, _ = api.send(b"GET", b"/v1.0/state/nosuchstore/k", grpc=True)
    reply = stream.reply
    assert reply.status == 400 and json.loads(reply.body)["errorCode"] == (
        "ERR_STATE_STORE_NOT_FOUND"
    )
    assert reply.headers.get(b"content-type") == b"application/json"


def test_an_answers_head_keeps_its_own_content_type_and_a_204_has_no_length() -> None:
    typed = Answer(200, b"hi", [(b"content-type", b"text/plain")]).head()
    assert list(typed) == [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    json_answer = Answer(409, b"{}", [(b"etag", b"3")]).head()
    assert list(json_answer) == [
        (b"etag", b"3"),
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
    ]
    assert list(Answer(204).head()) == []


@pytest.mark.parametrize("gone", [False, True], ids=["answered a turn later", "client gone"])
async def test_answers_nested_too_deep_wait_a_loop_turn(api: Api, gone: bool) -> None:
    api.shared.replying = NESTED_REPLIES  # (as deep inside other answers as allowed)
    stream, api_filter = api.send(b"GET", b"/v1.0/healthz")
    api.shared.replying = 0
    deferred = api_filter._deferred
    assert stream.responses == [] and deferred is not None
    if gone:
        stream.finish()
        assert deferred.cancelled()
    await asyncio.sleep(0)
    assert [head.status for head in stream.responses] == ([] if gone else [204])
