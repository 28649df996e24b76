"""Bad JSON on the runtime API of a real mecha, over HTTP and over gRPC with the Dapr SDK:
Dapr's error code with a 400 (INVALID_ARGUMENT), never a traceback in the log; and what is
stored, answered or delivered to the app is valid JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError

from protocols import strict_json
from tests.support.dapr_app import App, dapr_app
from tests.support.dapr_http import DaprHttp
from tests.support.mecha import Mecha, run_mecha

pytestmark = pytest.mark.integration

DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_VALUES = [DEEP, b'"\\ud800"', b"NaN", b"Infinity", b"1e999999", b'{"a": [1, -Infinity]}']
CLOUD_EVENT = "application/cloudevents+json"


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with dapr_app([{"pubsubname": "pubsub", "topic": "events", "route": "/events"}]) as running:
        yield running


@pytest.fixture(scope="module")
def mecha(tmp_path_factory: pytest.TempPathFactory, app: App) -> Iterator[Mecha]:
    document = {
        "listeners": [
            {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]},
            {"name": "grpc", "address": "127.0.0.1:0", "filters": [{"name": "runtime_grpc"}]},
        ],
        "runtime": {
            "app_id": "json-app",
            "app_port": app.port,
            "components": [
                {"name": "statestore", "type": "state.in-memory"},
                {"name": "pubsub", "type": "pubsub.in-memory"},
            ],
        },
    }
    with run_mecha(tmp_path_factory.mktemp("json"), document) as running:
        yield running


@pytest.fixture(autouse=True)
def no_traceback(mecha: Mecha) -> Iterator[None]:
    """Nothing a test sends makes mecha log a traceback."""
    seen = len(mecha.logs())
    yield
    assert "Traceback" not in mecha.logs()[seen:]


@pytest.fixture
def http(mecha: Mecha) -> DaprHttp:
    return DaprHttp(mecha.port("api"))


@pytest.fixture
def client(mecha: Mecha, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(mecha.port("api")))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(mecha.port("grpc")))
    with DaprClient() as running:
        yield running


def rpc_error(error: pytest.ExceptionInfo[Any]) -> tuple[grpc.StatusCode, str | None]:
    assert isinstance(error.value, DaprGrpcError)
    return error.value.code(), error.value.error_code()


# -- HTTP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_bad_state_value_is_a_400_and_nothing_is_stored(http: DaprHttp, value: bytes) -> None:
    reply = http.post("/v1.0/state/statestore", b'[{"key": "bad", "value": ' + value + b"}]")
    assert (reply.status, reply.error_code) == (400, "ERR_MALFORMED_REQUEST")
    assert http.get("/v1.0/state/statestore/bad").status == 204
    operations = b'{"operations": [{"operation": "upsert", "request": {"key": "bad", "value": '
    reply = http.post("/v1.0/state/statestore/transaction", operations + value + b"}}]}")
    assert (reply.status, reply.error_code) == (400, "ERR_MALFORMED_REQUEST")
    assert http.get("/v1.0/state/statestore/bad").status == 204


def test_what_is_stored_reads_back_as_json(http: DaprHttp) -> None:
    inner = strict_json.MAX_DEPTH - 2  # the body's list and item object are two levels
    nested = "[" * inner + "]" * inner
    values = {"deep": nested, "pair": '"\\ud83d\\ude00"', "tiny": "1e-999", "big": "1e308"}
    items = ", ".join(f'{{"key": "{key}", "value": {value}}}' for key, value in values.items())
    assert http.post("/v1.0/state/statestore", f"[{items}]".encode()).status == 204
    for key, value in values.items():
        stored = http.get(f"/v1.0/state/statestore/{key}").body
        assert strict_json.loads(stored) == json.loads(value)
    bulk = http.post("/v1.0/state/statestore/bulk", {"keys": list(values)})
    assert bulk.status == 200 and {e["key"] for e in strict_json.loads(bulk.body)} == set(values)


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'"x"', DEEP, b'{"id": "1", "n": NaN}'])
def test_a_malformed_cloud_event_is_a_400(http: DaprHttp, app: App, body: bytes) -> None:
    before = len(app.received("/events"))
    reply = http.post("/v1.0/publish/pubsub/events", body, headers={"content-type": CLOUD_EVENT})
    assert (reply.status, reply.error_code) == (400, "ERR_PUBSUB_CLOUD_EVENTS_SER")
    entry = {"entryId": "1", "event": [1], "contentType": CLOUD_EVENT}
    reply = http.post("/v1.0-alpha1/publish/bulk/pubsub/events", [entry])
    assert (reply.status, reply.error_code) == (400, "ERR_PUBSUB_CLOUD_EVENTS_SER")
    reply = http.post("/v1.0-alpha1/publish/bulk/pubsub/events", DEEP)
    assert (reply.status, reply.error_code) == (400, "ERR_PUBSUB_EVENTS_SER")
    http.post("/v1.0/publish/pubsub/events", b"sentinel", headers={"content-type": "text/plain"})
    delivered = app.wait_received("/events", before + 1)[before:]
    assert [json.loads(d["body"])["data"] for d in delivered] == ["sentinel"]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_payload_said_to_be_json_that_is_not_travels_as_text(
    http: DaprHttp, app: App, value: bytes
) -> None:
    """As in Dapr: the CloudEvent carries it as a string, and is valid JSON."""
    before = len(app.received("/events"))
    headers = {"content-type": "application/json"}
    assert http.post("/v1.0/publish/pubsub/events", value, headers=headers).status == 204
    delivered = app.wait_received("/events", before + 1)[before]
    assert strict_json.loads(delivered["body"].encode())["data"] == value.decode()


# -- gRPC (the Dapr SDK) ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", DEEP, b'{"id": "1", "n": NaN}'])
def test_grpc_a_malformed_cloud_event_is_invalid_argument(client: DaprClient, body: bytes) -> None:
    with pytest.raises(DaprGrpcError) as error:
        client.publish_event("pubsub", "events", body, data_content_type=CLOUD_EVENT)
    assert rpc_error(error) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
    )
    with pytest.raises(DaprGrpcError) as bulk:
        client.publish_events("pubsub", "events", [body], data_content_type=CLOUD_EVENT)
    assert rpc_error(bulk) == (grpc.StatusCode.INVALID_ARGUMENT, "DAPR_PUBSUB_CLOUD_EVENT_CREATION")


@pytest.mark.parametrize("value", BAD_VALUES)
def test_grpc_a_payload_said_to_be_json_that_is_not_travels_as_text(
    client: DaprClient, app: App, value: bytes
) -> None:
    before = len(app.received("/events"))
    client.publish_event("pubsub", "events", value, data_content_type="application/json")
    delivered = app.wait_received("/events", before + 1)[before]
    assert strict_json.loads(delivered["body"].encode())["data"] == value.decode()


def test_grpc_bytes_stored_as_they_are_read_back_over_http_as_json(
    client: DaprClient, http: DaprHttp
) -> None:
    """gRPC stores bytes as given; the HTTP bulk read embeds what is JSON and gives the rest
    as text, and answers JSON either way."""
    for key, value in (("g-deep", DEEP), ("g-nan", b"NaN"), ("g-ok", b'{"a": 1}')):
        client.save_state("statestore", key, value)
    bulk = http.post("/v1.0/state/statestore/bulk", {"keys": ["g-deep", "g-nan", "g-ok"]})
    assert bulk.status == 200
    data = {entry["key"]: entry["data"] for entry in strict_json.loads(bulk.body)}
    assert data == {"g-deep": DEEP.decode(), "g-nan": "NaN", "g-ok": {"a": 1}}
