"""Invoking an app that speaks gRPC through the HTTP API: Dapr's status tables between gRPC
and HTTP, and the InvokeRequest an HTTP invocation becomes."""

from __future__ import annotations

import pytest
from dapr.proto.common.v1 import common_pb2

from filters.http.runtime_api.base import ApiRequest
from filters.http.runtime_api.invoke import invoke_request
from protocols.grpc.status import StatusCode, code_from_http_status, http_status
from protocols.http.headers import Headers


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (StatusCode.OK, 200),
        (StatusCode.CANCELLED, 408),
        (StatusCode.UNKNOWN, 500),
        (StatusCode.INVALID_ARGUMENT, 400),
        (StatusCode.DEADLINE_EXCEEDED, 504),
        (StatusCode.NOT_FOUND, 404),
        (StatusCode.ALREADY_EXISTS, 409),
        (StatusCode.PERMISSION_DENIED, 403),
        (StatusCode.RESOURCE_EXHAUSTED, 429),
        (StatusCode.FAILED_PRECONDITION, 400),
        (StatusCode.ABORTED, 409),
        (StatusCode.OUT_OF_RANGE, 400),
        (StatusCode.UNIMPLEMENTED, 501),
        (StatusCode.INTERNAL, 500),
        (StatusCode.UNAVAILABLE, 503),
        (StatusCode.DATA_LOSS, 500),
        (StatusCode.UNAUTHENTICATED, 401),
        (17, 500),
        (-1, 500),
    ],
)
def test_http_status_of_a_grpc_code(code: int, status: int) -> None:
    assert http_status(code) == status


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, StatusCode.INTERNAL),
        (404, StatusCode.NOT_FOUND),
        (408, StatusCode.CANCELLED),
        (429, StatusCode.RESOURCE_EXHAUSTED),
        (500, StatusCode.UNKNOWN),
        (503, StatusCode.UNAVAILABLE),
        (418, StatusCode.UNKNOWN),
        (302, StatusCode.UNKNOWN),
    ],
)
def test_grpc_code_of_an_http_status(status: int, code: StatusCode) -> None:
    assert code_from_http_status(status) == code


def request(method: str, body: bytes = b"", content_type: bytes | None = None) -> ApiRequest:
    headers = Headers([(b"content-type", content_type)] if content_type else [])
    return ApiRequest(method, [], [], headers, body)


def test_invoke_request_carries_method_verb_query_and_body() -> None:
    message = invoke_request(request("PATCH", b"{}", b"application/json"), "/orders/7?a=1&b=")
    assert message.method == "orders/7"
    assert message.http_extension.verb == common_pb2.HTTPExtension.PATCH
    assert message.http_extension.querystring == "a=1&b="
    assert message.data.value == b"{}" and message.content_type == "application/json"


def test_invoke_request_of_a_verb_dapr_does_not_name() -> None:
    message = invoke_request(request("PROPFIND"), "/x")
    assert message.http_extension.verb == common_pb2.HTTPExtension.NONE
    assert (message.method, message.http_extension.querystring, message.content_type) == (
        "x",
        "",
        "",
    )
