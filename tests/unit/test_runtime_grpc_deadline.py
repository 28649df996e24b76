"""runtime_grpc answers every call, however short its `grpc-timeout`: a deadline that has
passed before the handler ran still ends the call with DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from filters.http.api import STOP
from filters.http.runtime_grpc.filter import GrpcShared, RuntimeGrpcConfig, RuntimeGrpcFilter
from protocols.http.events import RequestHeaders
from protocols.http.headers import Headers
from proxy.upstream.cluster import ClusterManager
from runtime.config import RuntimeConfig
from runtime.runtime import Runtime
from tests.unit.http_fakes import FakeStream

METADATA = b"/dapr.proto.runtime.v1.Dapr/GetMetadata"
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


class Context:
    listener_name = "test"
    cluster_manager = ClusterManager([])

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


@dataclass(eq=False)
class GrpcStream(FakeStream):
    """A FakeStream that also takes response messages and trailers."""

    sent: list[bytes] = field(default_factory=list)
    trailers: list[Headers] = field(default_factory=list)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        self.sent.append(data)

    def encode_trailers(self, trailers: Headers) -> None:
        self.trailers.append(trailers)
        self.done = True


def shared() -> GrpcShared:
    runtime = Runtime(RuntimeConfig(app_id="test"), Context.cluster_manager)
    return GrpcShared(runtime, RuntimeGrpcConfig(), Context(runtime))


def call(timeout: bytes) -> tuple[GrpcStream, RuntimeGrpcFilter]:
    headers = Headers([(b"content-type", b"application/grpc"), (b"te", b"trailers"),
                       (b"grpc-timeout", timeout)])  # fmt: skip
    stream = GrpcStream(RequestHeaders(b"POST", METADATA, b"t", headers, version=b"HTTP/2"))
    made: list[RuntimeGrpcFilter] = []

    def factory(callbacks: GrpcStream) -> RuntimeGrpcFilter:
        made.append(RuntimeGrpcFilter(shared(), callbacks))
        return made[-1]

    assert stream.start(factory) is STOP  # type: ignore[arg-type]
    return stream, made[0]


def status_of(stream: GrpcStream) -> bytes | None:
    return stream.response.headers.get(b"grpc-status")


@pytest.mark.parametrize("grpc_timeout", [b"0n", b"0S", b"0H"])
async def test_a_deadline_already_passed_is_answered_at_once(grpc_timeout: bytes) -> None:
    stream, grpc_filter = call(grpc_timeout)
    assert status_of(stream) == b"4"  # DEADLINE_EXCEEDED
    assert stream.response.end_stream
    assert grpc_filter._task is None  # nothing was started that would have to be cancelled
    grpc_filter.decode_data(EMPTY_MESSAGE, True)  # what the client still sends is dropped
    assert len(stream.responses) == 1


@pytest.mark.parametrize("grpc_timeout", [b"1n", b"1u", b"1m"])
async def test_a_deadline_that_passes_before_the_handler_runs_is_answered(
    grpc_timeout: bytes,
) -> None:
    stream, grpc_filter = call(grpc_timeout)
    grpc_filter.decode_data(EMPTY_MESSAGE, True)
    stream.advance(0.001)  # the timer fires before the handler's task took its first step
    assert status_of(stream) == b"4"
    assert stream.response.headers.get(b"grpc-message") == b"deadline exceeded"
    await asyncio.sleep(0)
    task = grpc_filter._task
    assert task is not None and task.cancelled()
    assert len(stream.responses) == 1  # answered once


async def test_a_call_that_beats_its_deadline_is_answered_ok() -> None:
    stream, grpc_filter = call(b"5S")
    grpc_filter.decode_data(EMPTY_MESSAGE, True)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [t.get(b"grpc-status") for t in stream.trailers] == [b"0"]
    assert stream.sent  # the GetMetadataResponse
    stream.advance(10)  # a deadline after the end changes nothing
    assert len(stream.trailers) == 1 and len(stream.responses) == 1
