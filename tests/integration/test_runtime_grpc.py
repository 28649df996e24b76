"""The runtime's gRPC API on a real mecha process, driven by the official Dapr Python SDK
(`DaprClient` with its default environment pointed at mecha's ports) and by grpcio where
the SDK hides the details; real application processes behind it: the HTTP test app, an
HTTP backend as a second app, and an app built on the SDK's gRPC callback server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import yaml
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._response import UnlockResponseStatus
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import (
    configuration_pb2,
    dapr_pb2_grpc,
    lock_pb2,
    metadata_pb2,
    state_pb2,
)

from filters.http.runtime_grpc import mecha_pb2
from tests.support.dapr_app import App, dapr_app
from tests.support.dapr_grpc_app import dapr_grpc_app
from tests.support.dapr_http import DaprHttp
from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.http_backend import http_backend
from tests.support.mecha import ROOT, Mecha, run_mecha
from tests.support.net import free_port
from tests.support.redis import redis_server

pytestmark = [
    pytest.mark.integration,
    # The SDK flags its alpha APIs and gRPC invocation; these tests use them on purpose.
    pytest.mark.filterwarnings("ignore:The .* API is an Alpha version:UserWarning"),
    pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC:DeprecationWarning"),
]

APP_ID = "orders-app"
DAPR = "/dapr.proto.runtime.v1.Dapr/"
SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}
]
COMPONENTS: list[dict[str, Any]] = [
    {"name": "statestore", "type": "state.in-memory"},
    {
        "name": "pubsub",
        "type": "pubsub.in-memory",
        "metadata": {"redeliverInitialInterval": "50ms"},
    },
    {"name": "lockstore", "type": "lock.in-memory"},
    {"name": "ids", "type": "sequencer.in-memory"},
    {"name": "config", "type": "configuration.in-memory", "metadata": {"color": "blue"}},
    {
        "name": "envsecrets",
        "type": "secretstores.local.env",
        "metadata": {"prefix": "TEST_SECRET_"},
    },
]


def config(
    app_port: int | None, components: list[dict[str, Any]], **runtime: Any
) -> dict[str, Any]:
    clusters = runtime.pop("clusters", [])
    grpc_listener = runtime.pop("grpc_listener", {})
    return {
        "listeners": [
            {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]},
            {
                "name": "grpc",
                "address": "127.0.0.1:0",
                "filters": [{"name": "runtime_grpc", "config": grpc_listener}],
            },
        ],
        "clusters": clusters,
        "runtime": {
            "app_id": APP_ID,
            **({"app_port": app_port} if app_port else {}),
            "components": components,
            "delivery": {"retries": 2, "backoff": "50ms"},
            **runtime,
        },
    }


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with dapr_app(SUBSCRIPTIONS) as running:
        yield running


@pytest.fixture(scope="module")
def mecha(tmp_path_factory: pytest.TempPathFactory, app: App) -> Iterator[Mecha]:
    workdir = tmp_path_factory.mktemp("grpc")
    with (
        http_backend("other") as backend,
        grpc_backend() as echo_port,
        redis_server(workdir) as redis_port,
    ):
        web = {"url": f"http://127.0.0.1:{backend.port}"}
        settings = {"redisHost": f"127.0.0.1:{redis_port}"}
        components = [
            *COMPONENTS,
            {"name": "web", "type": "bindings.http", "metadata": web},
            {"name": "settings", "type": "configuration.redis", "metadata": settings},
        ]
        clusters = [
            {"name": "billing", "endpoints": [f"127.0.0.1:{backend.port}"]},
            {"name": "echo", "endpoints": [f"127.0.0.1:{echo_port}"], "protocol": "http2"},
        ]
        document = config(
            app.port,
            components,
            clusters=clusters,
            invoke={"clusters": {"billing-app": "billing", "echo-app": "echo"}},
            grpc_listener={"max_message_size": "64KiB"},
        )
        with run_mecha(workdir, document, env={"TEST_SECRET_DB": "s3cr3t"}) as running:
            running.redis_port = redis_port  # type: ignore[attr-defined]
            yield running


@pytest.fixture
def client(mecha: Mecha, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    """The SDK as an application uses it: DaprClient() finds the sidecar from its env."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(mecha.port("api")))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(mecha.port("grpc")))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    with DaprClient() as running:
        yield running


@pytest.fixture
def channel(mecha: Mecha) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{mecha.port('grpc')}") as opened:
        yield opened


def wait_subscribed(stub: dapr_pb2_grpc.DaprStub, topics: set[str]) -> set[str]:
    """The subscribed topics once `topics` are among them (the app is asked after start-up),
    or as they are after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        metadata = stub.GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=5)
        subscribed = {s.topic for s in metadata.subscriptions}
        if topics <= subscribed or time.monotonic() > deadline:
            return subscribed
        time.sleep(0.05)


def code_of(error: pytest.ExceptionInfo[Any]) -> grpc.StatusCode:
    code: grpc.StatusCode = error.value.code()
    return code


# -- state -----------------------------------------------------------------------------------------


def test_state_with_etags(client: DaprClient, mecha: Mecha) -> None:
    client.save_state("statestore", "order-1", '{"qty": 3}')
    got = client.get_state("statestore", "order-1")
    assert got.data == b'{"qty": 3}' and got.etag
    first_write = StateOptions(concurrency=Concurrency.first_write)
    with pytest.raises(DaprGrpcError) as stale:
        client.save_state("statestore", "order-1", "9", etag="999", options=first_write)
    assert code_of(stale) == grpc.StatusCode.ABORTED
    assert stale.value.error_code() == "DAPR_STATE_ETAG_MISMATCH"
    client.save_state("statestore", "order-1", "x", etag=got.etag)
    assert client.get_state("statestore", "order-1").data == b"x"
    with pytest.raises(grpc.RpcError) as wrong:
        client.delete_state("statestore", "order-1", etag=got.etag)
    assert code_of(wrong) == grpc.StatusCode.ABORTED
    # the HTTP API sees the same item, under the same app-id prefix
    assert DaprHttp(mecha.port("api")).get("/v1.0/state/statestore/order-1").body == b"x"
    current = client.get_state("statestore", "order-1").etag
    client.delete_state("statestore", "order-1", etag=current)
    gone = client.get_state("statestore", "order-1")
    assert gone.data == b"" and gone.etag == ""


def test_state_bulk_transactions_and_ttl(client: DaprClient, channel: grpc.Channel) -> None:
    client.save_bulk_state("statestore", [StateItem(f"bulk-{i}", f"v{i}") for i in range(3)])
    bulk = client.get_bulk_state("statestore", ["bulk-0", "bulk-2", "nope"]).items
    by_key = {item.key: item for item in bulk}
    assert by_key["bulk-0"].data == b"v0" and by_key["bulk-2"].data == b"v2"
    assert by_key["bulk-0"].etag and by_key["nope"].data == b""
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation("bulk-0", "changed"),
            TransactionalStateOperation(
                "bulk-1", "", operation_type=TransactionOperationType.delete
            ),
        ],
    )
    assert client.get_state("statestore", "bulk-0").data == b"changed"
    assert client.get_state("statestore", "bulk-1").data == b""
    with pytest.raises(grpc.RpcError) as aborted:  # all or nothing
        client.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation("bulk-2", "lost"),
                TransactionalStateOperation(
                    "bulk-0", "", etag="12345", operation_type=TransactionOperationType.delete
                ),
            ],
        )
    assert code_of(aborted) == grpc.StatusCode.ABORTED
    assert client.get_state("statestore", "bulk-2").data == b"v2"
    stub = dapr_pb2_grpc.DaprStub(channel)
    stub.DeleteBulkState(
        state_pb2.DeleteBulkStateRequest(
            store_name="statestore",
            states=[common_pb2.StateItem(key="bulk-0"), common_pb2.StateItem(key="bulk-2")],
        ),
        timeout=5,
    )
    assert client.get_state("statestore", "bulk-2").data == b""
    client.save_state("statestore", "short", "1", state_metadata={"ttlInSeconds": "1"})
    reply = stub.GetState(
        state_pb2.GetStateRequest(store_name="statestore", key="short"), timeout=5
    )
    assert reply.data == b"1" and "ttlExpireTime" in reply.metadata
    time.sleep(1.3)
    assert client.get_state("statestore", "short").data == b""


def test_state_errors(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as unknown:
        client.get_state("nope", "k")
    assert code_of(unknown) == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.error_code() == "DAPR_STATE_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as pipes:
        client.save_state("statestore", "a||b", "1")
    assert code_of(pipes) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as query:
        client.query_state("statestore", '{"filter": {}}')
    assert code_of(query) == grpc.StatusCode.INTERNAL and "querying" in query.value.details()


# -- pub/sub ---------------------------------------------------------------------------------------


def test_publish_reaches_the_subscriber_app(client: DaprClient, app: App) -> None:
    before = len(app.received("/orders"))
    client.publish_event(
        "pubsub", "orders", json.dumps({"orderId": 7}), data_content_type="application/json"
    )
    event = json.loads(app.wait_received("/orders", before + 1)[-1]["body"])
    assert event["data"] == {"orderId": 7} and event["source"] == APP_ID
    assert event["type"] == "com.dapr.event.sent" and event["pubsubname"] == "pubsub"
    result = client.publish_events(
        "pubsub",
        "orders",
        [json.dumps({"i": i}) for i in range(3)],
        data_content_type="application/json",
    )
    assert result.failed_entries == []
    delivered = app.wait_received("/orders", before + 4)[before + 1 :]
    assert sorted(json.loads(d["body"])["data"]["i"] for d in delivered) == [0, 1, 2]
    with pytest.raises(grpc.RpcError) as unknown:
        client.publish_event("nope", "orders", "x")
    assert code_of(unknown) == grpc.StatusCode.INVALID_ARGUMENT


def test_streaming_subscription_loses_nothing_unacknowledged(client: DaprClient) -> None:
    subscription = client.subscribe("pubsub", "stream-topic")
    try:
        stub = dapr_pb2_grpc.DaprStub(client._channel)
        metadata = stub.GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=5)
        topics = [(s.pubsub_name, s.topic, s.type) for s in metadata.subscriptions]
        assert ("pubsub", "stream-topic", metadata_pb2.PubsubSubscriptionType.STREAMING) in topics
        client.publish_event("pubsub", "stream-topic", "one")
        first = subscription.next_message()
        assert first.raw_data() == b"one" and first.topic() == "stream-topic"
        subscription.respond_success(first)
        client.publish_event("pubsub", "stream-topic", "two")
        client.publish_event("pubsub", "stream-topic", "three")
        unacknowledged = subscription.next_message()
        assert unacknowledged.raw_data() == b"two"
    finally:
        subscription.close()  # goes away without acknowledging "two", "three" still queued
    again = client.subscribe("pubsub", "stream-topic")
    try:
        received = []
        for _ in range(2):
            message = again.next_message()
            received.append(message.raw_data())
            again.respond_success(message)
        assert sorted(received) == [b"three", b"two"]
    finally:
        again.close()


# -- invocation ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def close_the_sdks_event_loop() -> Iterator[None]:
    """The SDK's HTTP invocation client makes an event loop, sets it current and never closes
    it; closed here, so that it is not reported as unclosed in whichever test collects it."""
    yield
    policy = asyncio.get_event_loop_policy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = policy.get_event_loop()
    except RuntimeError:
        return  # none is current: nothing was left behind
    if not loop.is_running():
        loop.close()
    policy.set_event_loop(None)


def test_invoke_service_over_grpc(mecha: Mecha, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(mecha.port("api")))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(mecha.port("grpc")))
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient() as client:
        own = client.invoke_method(
            APP_ID,
            "echo/deep",
            b"ping",
            content_type="text/plain",
            http_verb="PUT",
            http_querystring=(("x", "1"),),
        )
        seen = json.loads(own.data)
        assert seen["method"] == "PUT" and seen["path"] == "/echo/deep?x=1"
        assert seen["body"] == "ping" and seen["headers"]["dapr-caller-app-id"] == APP_ID
        assert seen["headers"]["content-type"] == "text/plain"
        assert own.content_type == "application/json"
        other = client.invoke_method("billing-app", "echo/bill", b"", http_verb="GET")
        assert json.loads(other.data)["path"] == "/echo/bill"
        assert other.headers["x-backend"] == ["other"]
        with pytest.raises(grpc.RpcError) as failing:
            client.invoke_method(APP_ID, "fail", b"", http_verb="GET")
        assert code_of(failing) == grpc.StatusCode.UNKNOWN  # Dapr's mapping of a 500
        with pytest.raises(grpc.RpcError) as ghost:
            client.invoke_method("ghost-app", "x", b"")
        assert code_of(ghost) == grpc.StatusCode.INTERNAL
        with pytest.raises(grpc.RpcError) as late:  # the client's deadline caps the call
            client.invoke_method(APP_ID, "slow", b"", http_verb="GET", timeout=1)
        assert code_of(late) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_sdk_invocation_over_http_too(client: DaprClient) -> None:
    reply = client.invoke_method(APP_ID, "echo/by-http", b"hi", http_verb="POST")
    assert json.loads(reply.data)["path"] == "/echo/by-http"


def test_grpc_proxying_by_app_id_metadata(channel: grpc.Channel) -> None:
    """Plain gRPC with `dapr-app-id` metadata goes through the mesh to the app's cluster."""
    unary = channel.unary_unary(f"/{SERVICE}/Unary")
    assert unary(b"hi", metadata=(("dapr-app-id", "echo-app"),), timeout=5).startswith(b"echo:hi")
    with pytest.raises(grpc.RpcError) as failed:
        unary(b"fail", metadata=(("dapr-app-id", "echo-app"),), timeout=5)
    assert (
        code_of(failed) == grpc.StatusCode.NOT_FOUND and failed.value.details() == "no such thing"
    )
    items = channel.unary_stream(f"/{SERVICE}/ServerStream")(
        b"3", metadata=(("dapr-app-id", "echo-app"),), timeout=5
    )
    assert list(items) == [b"item 0", b"item 1", b"item 2"]
    with pytest.raises(grpc.RpcError) as nowhere:  # no app id: nothing serves it
        unary(b"hi", timeout=5)
    assert code_of(nowhere) == grpc.StatusCode.UNIMPLEMENTED


# -- bindings, secrets, configuration, locks, metadata ---------------------------------------------


def test_output_binding(client: DaprClient) -> None:
    reply = client.invoke_binding(
        "web", "post", json.dumps({"hello": "world"}), binding_metadata={"path": "/echo/hook"}
    )
    echoed = json.loads(reply.data)
    assert echoed["path"] == "/echo/hook" and json.loads(echoed["body"]) == {"hello": "world"}
    assert reply.binding_metadata["statusCode"] == "200"
    with pytest.raises(grpc.RpcError) as bad:
        client.invoke_binding("web", "explode", "x")
    assert code_of(bad) == grpc.StatusCode.INTERNAL


def test_secrets(client: DaprClient) -> None:
    assert client.get_secret("envsecrets", "DB").secret == {"DB": "s3cr3t"}
    assert client.get_bulk_secret("envsecrets").secrets == {"DB": {"DB": "s3cr3t"}}
    assert client.get_secret("envsecrets", "NOPE").secret == {}
    with pytest.raises(grpc.RpcError) as unknown:
        client.get_secret("nope", "DB")
    assert code_of(unknown) == grpc.StatusCode.INVALID_ARGUMENT


def test_configuration_get_and_subscribe(client: DaprClient, mecha: Mecha) -> None:
    assert client.get_configuration("config", ["color"]).items["color"].value == "blue"
    assert client.get_configuration("config", ["missing"]).items == {}
    store = redis.Redis(port=mecha.redis_port)  # type: ignore[attr-defined]
    store.set("flag", "off||1")
    updates: list[tuple[str, str]] = []
    changed = threading.Event()

    def handler(subscription_id: str, response: Any) -> None:
        updates.append((subscription_id, response.items["flag"].value))
        changed.set()

    subscription_id = client.subscribe_configuration("settings", ["flag"], handler)
    assert subscription_id
    store.set("flag", "on||2")
    assert changed.wait(10)
    assert updates[0] == (subscription_id, "on")
    assert client.unsubscribe_configuration("settings", subscription_id) is True
    assert client.unsubscribe_configuration("settings", subscription_id) is False
    with pytest.raises(grpc.RpcError) as unknown:
        client.get_configuration("nope", ["a"])
    assert code_of(unknown) == grpc.StatusCode.INVALID_ARGUMENT


def test_lock_and_unlock(client: DaprClient) -> None:
    first = client.try_lock("lockstore", "invoice-9", "worker-a", 30)
    assert first.success
    assert not client.try_lock("lockstore", "invoice-9", "worker-b", 30).success
    others = client.unlock("lockstore", "invoice-9", "worker-b")
    assert others.status == UnlockResponseStatus.lock_belongs_to_others
    assert (
        client.unlock("lockstore", "invoice-9", "worker-a").status == UnlockResponseStatus.success
    )
    gone = client.unlock("lockstore", "invoice-9", "worker-a")
    assert gone.status == UnlockResponseStatus.lock_does_not_exist
    with pytest.raises(grpc.RpcError) as unknown:
        client.try_lock("nope", "r", "o", 5)
    assert code_of(unknown) == grpc.StatusCode.INVALID_ARGUMENT


def test_mechas_own_service(channel: grpc.Channel) -> None:
    def call(method: str, request: Any, reply: Any) -> Any:
        rpc = channel.unary_unary(
            f"/mecha.runtime.v1.Mecha/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,
        )
        return rpc(request, timeout=5)

    next_id = mecha_pb2.GetNextIdRequest(store_name="ids", key="orders")
    ids = [call("GetNextId", next_id, mecha_pb2.GetNextIdResponse).next_id for _ in range(3)]
    assert ids == sorted(set(ids)) and ids[0] > 0
    lock = mecha_pb2.TryLockRequest(
        store_name="lockstore", resource_id="fenced", lock_owner="a", expiry_in_seconds=30
    )
    granted = call("TryLock", lock, mecha_pb2.TryLockResponse)
    assert granted.success and granted.fencing_token > 0
    renew = mecha_pb2.RenewLockRequest(
        store_name="lockstore", resource_id="fenced", lock_owner="b", expiry_in_seconds=30
    )
    status = call("RenewLock", renew, mecha_pb2.RenewLockResponse).status
    assert status == mecha_pb2.RenewLockResponse.LOCK_BELONGS_TO_OTHERS
    renew.lock_owner = "a"
    assert call("RenewLock", renew, mecha_pb2.RenewLockResponse).status == 0
    unlock = lock_pb2.UnlockRequest(store_name="lockstore", resource_id="fenced", lock_owner="a")
    dapr_pb2_grpc.DaprStub(channel).UnlockAlpha1(unlock, timeout=5)
    again = call(
        "TryLock",
        mecha_pb2.TryLockRequest(
            store_name="lockstore", resource_id="fenced", lock_owner="b", expiry_in_seconds=30
        ),
        mecha_pb2.TryLockResponse,
    )
    assert again.success and again.fencing_token > granted.fencing_token
    with pytest.raises(grpc.RpcError) as bad:
        call(
            "GetNextId",
            mecha_pb2.GetNextIdRequest(store_name="ids", key="a||b"),
            mecha_pb2.GetNextIdResponse,
        )
    assert code_of(bad) == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata(client: DaprClient, channel: grpc.Channel) -> None:
    client.set_metadata("team", "payments")
    metadata = client.get_metadata()
    assert metadata.application_id == APP_ID and metadata.extended_metadata["team"] == "payments"
    types = {c.name: c.type for c in metadata.registered_components}
    assert types["statestore"] == "state.in-memory" and types["web"] == "bindings.http"
    full = dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=5)
    subscriptions = {(s.pubsub_name, s.topic, s.type) for s in full.subscriptions}
    assert ("pubsub", "orders", metadata_pb2.PubsubSubscriptionType.PROGRAMMATIC) in subscriptions
    assert full.app_connection_properties.port > 0


# -- bad input -------------------------------------------------------------------------------------


def test_bad_calls_end_only_their_stream(client: DaprClient, channel: grpc.Channel) -> None:
    """Unknown methods, malformed and oversized messages get their status; a subscription
    stream on the same connection goes on receiving."""
    subscription = client.subscribe("pubsub", "survivor")
    try:
        raw = channel.unary_unary(DAPR + "GetState")
        with pytest.raises(grpc.RpcError) as malformed:
            raw(b"\xff\xff\xff", timeout=5)
        assert code_of(malformed) == grpc.StatusCode.INVALID_ARGUMENT
        big = state_pb2.GetStateRequest(store_name="statestore", key="k" * (70 * 1024))
        with pytest.raises(grpc.RpcError) as oversized:
            raw(big.SerializeToString(), timeout=5)
        assert code_of(oversized) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for path in (
            DAPR + "NoSuchMethod",
            DAPR + "ScheduleJobAlpha1",
            "/mecha.runtime.v1.Mecha/X",
        ):
            with pytest.raises(grpc.RpcError) as unknown:
                channel.unary_unary(path)(b"", timeout=5)
            assert code_of(unknown) == grpc.StatusCode.UNIMPLEMENTED, path
            assert path.rpartition("/")[2] in unknown.value.details(), path
        ok = raw(
            state_pb2.GetStateRequest(store_name="statestore", key="k").SerializeToString(),
            timeout=5,
        )
        assert ok == b""  # the connection is fine
        client.publish_event("pubsub", "survivor", "still here")
        message = subscription.next_message()
        assert message.raw_data() == b"still here"
        subscription.respond_success(message)
    finally:
        subscription.close()


def test_deadline_ends_a_stream(channel: grpc.Channel) -> None:
    stream = channel.unary_stream(
        DAPR + "SubscribeConfiguration",
        request_serializer=configuration_pb2.SubscribeConfigurationRequest.SerializeToString,
        response_deserializer=configuration_pb2.SubscribeConfigurationResponse.FromString,
    )
    replies = stream(
        configuration_pb2.SubscribeConfigurationRequest(store_name="config", keys=["color"]),
        timeout=0.5,
    )
    first = next(replies)
    assert first.id and not first.items
    with pytest.raises(grpc.RpcError) as late:
        next(replies)
    assert code_of(late) == grpc.StatusCode.DEADLINE_EXCEEDED


# -- token, shutdown, the default config, a gRPC app ----------------------------------------------


def test_token_and_shutdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = config(None, [{"name": "s", "type": "state.in-memory"}], api_token="sekrit")
    # gRPC clients keep their HTTP/2 connection after closing a channel, and the connection
    # manager sends no GOAWAY on drain (yet): the drain waits for its timeout.
    document["drain_timeout"] = "2s"
    with run_mecha(tmp_path, document) as running:
        port = running.port("grpc")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = dapr_pb2_grpc.DaprStub(channel)
            request = state_pb2.GetStateRequest(store_name="s", key="k")
            with pytest.raises(grpc.RpcError) as anonymous:
                stub.GetState(request, timeout=5)
            assert code_of(anonymous) == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as wrong:
                stub.GetState(request, metadata=(("dapr-api-token", "nope"),), timeout=5)
            assert code_of(wrong) == grpc.StatusCode.UNAUTHENTICATED
        monkeypatch.setenv("DAPR_HTTP_PORT", str(running.port("api")))
        monkeypatch.setenv("DAPR_GRPC_PORT", str(port))
        monkeypatch.setenv("DAPR_API_TOKEN", "sekrit")
        with DaprClient() as client:
            client.save_state("s", "k", "v")
            assert client.get_state("s", "k").data == b"v"
            client.shutdown()
        assert running.wait(timeout=20) == 0


def test_default_config_serves_the_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mecha run -c configs/default.yaml`: DaprClient() with only the ports moved works."""
    http_port, grpc_port = free_port(), free_port()
    document = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    del document["admin"]  # run_mecha picks a free admin port
    env = {"MECHA_HTTP_API": f"127.0.0.1:{http_port}", "MECHA_GRPC_API": f"127.0.0.1:{grpc_port}"}
    with run_mecha(tmp_path, document, env=env):
        monkeypatch.setenv("DAPR_HTTP_PORT", str(http_port))
        monkeypatch.setenv("DAPR_GRPC_PORT", str(grpc_port))
        with DaprClient() as client:
            client.save_state("statestore", "k", "v")
            assert client.get_state("statestore", "k").data == b"v"
            assert client.get_metadata().application_id == "mecha"


def test_grpc_app_receives_events_and_bindings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`app_protocol: grpc`: mecha calls the app's AppCallback (dapr.ext.grpc's App) with
    what DaprClient publishes and what the input binding fires."""
    components = [
        {
            "name": "pubsub",
            "type": "pubsub.in-memory",
            "metadata": {"redeliverInitialInterval": "50ms"},
        },
        {"name": "tick", "type": "bindings.cron", "metadata": {"schedule": "@every 300ms"}},
    ]
    with dapr_grpc_app(tmp_path) as grpc_app:
        document = config(grpc_app.port, components, app_protocol="grpc")
        with run_mecha(tmp_path, document) as running:
            with grpc.insecure_channel(f"127.0.0.1:{running.port('grpc')}") as channel:
                wanted = {"grpc-orders", "grpc-retry", "grpc-dead", "grpc-drop"}
                assert wanted <= wait_subscribed(dapr_pb2_grpc.DaprStub(channel), wanted)
            monkeypatch.setenv("DAPR_HTTP_PORT", str(running.port("api")))
            monkeypatch.setenv("DAPR_GRPC_PORT", str(running.port("grpc")))
            with DaprClient() as client:
                client.publish_event(
                    "pubsub",
                    "grpc-orders",
                    json.dumps({"n": 1}),
                    data_content_type="application/json",
                )
                event = grpc_app.wait_received("topic", "grpc-orders")[-1]
                assert json.loads(event["data"]) == {"n": 1} and event["source"] == APP_ID
                assert event["content_type"] == "application/json"
                assert event["type"] == "com.dapr.event.sent"
                client.publish_event("pubsub", "grpc-retry", "again")
                dead = grpc_app.wait_received("topic", "grpc-dead")
                assert dead[-1]["data"] == "again"
                assert len(grpc_app.received("topic", "grpc-retry")) >= 2
                client.publish_event("pubsub", "grpc-drop", "once")
                grpc_app.wait_received("topic", "grpc-drop")
                time.sleep(0.3)
                assert len(grpc_app.received("topic", "grpc-drop")) == 1
            grpc_app.wait_received("binding", "tick", 2)


def test_invoking_a_grpc_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """InvokeService to an app that speaks gRPC calls its OnInvoke (dapr.ext.grpc's App)."""
    with dapr_grpc_app(tmp_path) as grpc_app:
        document = config(grpc_app.port, [], app_protocol="grpc")
        with run_mecha(tmp_path, document) as running:
            monkeypatch.setenv("DAPR_HTTP_PORT", str(running.port("api")))
            monkeypatch.setenv("DAPR_GRPC_PORT", str(running.port("grpc")))
            monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
            with DaprClient() as client:
                reply = client.invoke_method(APP_ID, "echo", b"ping", content_type="text/plain")
                seen = json.loads(reply.data)
                assert seen == {"data": "ping", "content_type": "text/plain", "caller": APP_ID}
                assert reply.content_type == "application/json"
                assert reply.headers["x-app"] == ["grpc"]
                with pytest.raises(grpc.RpcError) as failed:
                    client.invoke_method(APP_ID, "fail", b"")
                assert code_of(failed) == grpc.StatusCode.UNKNOWN
                assert "the app refuses" in failed.value.details()
                with pytest.raises(grpc.RpcError) as unknown:
                    client.invoke_method(APP_ID, "nope", b"")
                assert code_of(unknown) == grpc.StatusCode.UNIMPLEMENTED


def test_http_api_invokes_a_grpc_app(tmp_path: Path) -> None:
    """The HTTP API's invocation of this app, when it speaks gRPC, is its OnInvoke too: the
    verb, query string, content type and body go in the InvokeRequest, the app's status comes
    back with Dapr's HTTP mapping."""
    with dapr_grpc_app(tmp_path) as grpc_app:
        document = config(grpc_app.port, [], app_protocol="grpc", max_request_body="64KiB")
        with run_mecha(tmp_path, document) as running:
            api = DaprHttp(running.port("api"))
            reply = api.call("PUT", f"/v1.0/invoke/{APP_ID}/method/echo?x=1&y=two", b"ping",
                             headers={"content-type": "text/plain"})  # fmt: skip
            assert reply.status == 200, reply.body
            assert reply.json() == {"data": "ping", "content_type": "text/plain", "caller": APP_ID}
            assert reply.headers["content-type"] == "application/json"
            assert reply.headers["x-app"] == "grpc"
            assert grpc_app.received("invoke", "echo")[-1] == {
                "kind": "invoke", "name": "echo", "verb": "PUT", "querystring": "x=1&y=two",
                "content_type": "text/plain", "data": "ping",
            }  # fmt: skip
            by_header = api.get("/echo?z=3", headers={"dapr-app-id": APP_ID})
            assert by_header.status == 200 and by_header.json()["data"] == ""
            seen = grpc_app.received("invoke", "echo")[-1]
            assert (seen["verb"], seen["querystring"]) == ("GET", "z=3")
            large = "x" * 60_000  # several reads of the body, buffered before the call
            assert api.post(f"/v1.0/invoke/{APP_ID}/method/echo", large).json()["data"] == (
                json.dumps(large)
            )
            too_large = api.post(f"/v1.0/invoke/{APP_ID}/method/echo", b"x" * 70_000)
            assert too_large.status == 413
            for method, status in (("lost", 404), ("fail", 500), ("nope", 501)):
                failed = api.post(f"/v1.0/invoke/{APP_ID}/method/{method}", b"x")
                assert failed.status == status, (method, failed.body)
                assert failed.error_code == "ERR_DIRECT_INVOKE"
            assert "no such order" in api.post(f"/v1.0/invoke/{APP_ID}/method/lost").body.decode()
