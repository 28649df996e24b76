"""The runtime's HTTP API (Dapr's paths, bodies, status codes and error codes) on a real
mecha process, with a real application process behind it and in-memory components."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.dapr_app import App, dapr_app
from tests.support.dapr_http import DaprHttp
from tests.support.http_backend import http_backend
from tests.support.mecha import Mecha, run_mecha
from tests.support.net import free_port
from tests.support.redis import redis_server

APP_ID = "orders-app"
SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"},
    {"pubsubname": "pubsub", "topic": "flaky", "route": "/retry-flaky", "deadLetterTopic": "dead"},
    {"pubsubname": "pubsub", "topic": "dead", "route": "/dead-letters"},
    {"pubsubname": "pubsub", "topic": "dropped", "route": "/drop-it"},
    {
        "pubsubname": "pubsub",
        "topic": "shapes",
        "routes": {
            "rules": [{"match": 'event.type == "widget"', "path": "/widgets"}],
            "default": "/other-shapes",
        },
    },
]


def runtime_config(
    app_port: int | None, components: list[dict[str, Any]], **runtime: Any
) -> dict[str, Any]:
    clusters = runtime.pop("clusters", [])
    return {
        "listeners": [
            {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]}
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


IN_MEMORY: list[dict[str, Any]] = [
    {"name": "statestore", "type": "state.in-memory"},
    {"name": "pubsub", "type": "pubsub.in-memory"},
    {"name": "lockstore", "type": "lock.in-memory"},
    {"name": "ids", "type": "sequencer.in-memory"},
    {"name": "config", "type": "configuration.in-memory", "metadata": {"color": "blue"}},
    {
        "name": "envsecrets",
        "type": "secretstores.local.env",
        "metadata": {"prefix": "TEST_SECRET_"},
    },
    {"name": "tick", "type": "bindings.cron", "metadata": {"schedule": "@every 300ms"}},
]


@pytest.fixture(scope="module")
def backend_port() -> Iterator[int]:
    with http_backend("other") as backend:
        yield backend.port


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with dapr_app(SUBSCRIPTIONS) as running:
        yield running


@pytest.fixture(scope="module")
def mecha(tmp_path_factory: pytest.TempPathFactory, app: App, backend_port: int) -> Iterator[Mecha]:
    web = {"url": f"http://127.0.0.1:{backend_port}"}
    components = [*IN_MEMORY, {"name": "web", "type": "bindings.http", "metadata": web}]
    config = runtime_config(
        app.port,
        components,
        clusters=[{"name": "billing", "endpoints": [f"127.0.0.1:{backend_port}"]}],
        invoke={"clusters": {"billing-app": "billing"}},
    )
    workdir = tmp_path_factory.mktemp("runtime")
    with run_mecha(workdir, config, env={"TEST_SECRET_DB": "s3cr3t"}) as running:
        yield running


@pytest.fixture
def api(mecha: Mecha) -> DaprHttp:
    return DaprHttp(mecha.port("api"))


# -- state -----------------------------------------------------------------------------------------


def test_state_save_get_delete_with_etags(api: DaprHttp) -> None:
    saved = api.post("/v1.0/state/statestore", [{"key": "order-1", "value": {"qty": 3}}])
    assert saved.status == 204, saved.body
    got = api.get("/v1.0/state/statestore/order-1")
    assert got.status == 200 and got.json() == {"qty": 3}
    etag = got.headers["etag"]
    # first-write with a stale etag: 409 and the value is unchanged
    stale = api.post(
        "/v1.0/state/statestore",
        [{"key": "order-1", "value": 9, "etag": "999", "options": {"concurrency": "first-write"}}],
    )
    assert stale.status == 409 and stale.error_code == "ERR_STATE_SAVE"
    assert api.get("/v1.0/state/statestore/order-1").json() == {"qty": 3}
    fresh = api.post("/v1.0/state/statestore", [{"key": "order-1", "value": "x", "etag": etag}])
    assert fresh.status == 204
    assert api.get("/v1.0/state/statestore/order-1").body == b'"x"'
    wrong = api.delete("/v1.0/state/statestore/order-1", headers={"If-Match": etag})
    assert wrong.status == 409 and wrong.error_code == "ERR_STATE_DELETE"
    current = api.get("/v1.0/state/statestore/order-1").headers["etag"]
    assert api.delete("/v1.0/state/statestore/order-1", headers={"If-Match": current}).status == 204
    missing = api.get("/v1.0/state/statestore/order-1")
    assert missing.status == 204 and missing.body == b""


def test_state_bulk_get_and_transaction(api: DaprHttp) -> None:
    items = [{"key": f"bulk-{i}", "value": {"n": i}} for i in range(3)]
    assert api.post("/v1.0/state/statestore", items).status == 204
    bulk = api.post("/v1.0/state/statestore/bulk", {"keys": ["bulk-0", "bulk-2", "nope"]})
    assert bulk.status == 200
    by_key = {entry["key"]: entry for entry in bulk.json()}
    assert by_key["bulk-0"]["data"] == {"n": 0} and by_key["bulk-2"]["data"] == {"n": 2}
    assert "etag" in by_key["bulk-0"] and "data" not in by_key["nope"]
    transaction = {
        "operations": [
            {"operation": "upsert", "request": {"key": "bulk-0", "value": "changed"}},
            {"operation": "delete", "request": {"key": "bulk-1"}},
        ]
    }
    assert api.post("/v1.0/state/statestore/transaction", transaction).status == 204
    assert api.get("/v1.0/state/statestore/bulk-0").json() == "changed"
    assert api.get("/v1.0/state/statestore/bulk-1").status == 204
    # all or nothing: a stale etag aborts the upsert next to it
    aborted = api.post(
        "/v1.0/state/statestore/transaction",
        {
            "operations": [
                {"operation": "upsert", "request": {"key": "bulk-2", "value": "lost"}},
                {"operation": "delete", "request": {"key": "bulk-0", "etag": "12345"}},
            ]
        },
    )
    assert aborted.status == 409 and aborted.error_code == "ERR_STATE_TRANSACTION"
    assert api.get("/v1.0/state/statestore/bulk-2").json() == {"n": 2}
    unknown = api.post(
        "/v1.0/state/statestore/transaction",
        {"operations": [{"operation": "merge", "request": {"key": "a"}}]},
    )
    assert unknown.status == 400 and unknown.error_code == "ERR_NOT_SUPPORTED_STATE_OPERATION"


def test_state_ttl_expires(api: DaprHttp) -> None:
    reply = api.post(
        "/v1.0/state/statestore?metadata.ttlInSeconds=1", [{"key": "short-lived", "value": 1}]
    )
    assert reply.status == 204
    got = api.get("/v1.0/state/statestore/short-lived")
    assert got.status == 200 and "metadata.ttlexpiretime" in got.headers
    time.sleep(1.3)
    assert api.get("/v1.0/state/statestore/short-lived").status == 204


def test_keys_are_namespaced_by_app_id(api: DaprHttp, mecha: Mecha) -> None:
    assert api.post("/v1.0/state/statestore", [{"key": "ns", "value": 1}]).status == 204
    pipe = api.post("/v1.0/state/statestore", [{"key": "a||b", "value": 1}])
    assert pipe.status == 400 and pipe.error_code == "ERR_MALFORMED_REQUEST"
    assert "||" in pipe.json()["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1.0/state/nope", [{"key": "a", "value": 1}], 400, "ERR_STATE_STORE_NOT_FOUND"),
        ("/v1.0/state/statestore", b"{not json", 400, "ERR_MALFORMED_REQUEST"),
        ("/v1.0/state/statestore", {"key": "a"}, 400, "ERR_MALFORMED_REQUEST"),
        ("/v1.0/state/statestore", [{"value": 1}], 400, "ERR_MALFORMED_REQUEST"),
        (
            "/v1.0/state/statestore",
            [{"key": "a", "value": 1, "options": {"concurrency": "any"}}],
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "/v1.0/state/statestore?metadata.ttlInSeconds=soon",
            [{"key": "a", "value": 1}],
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        ("/v1.0/state/statestore/bulk", {"keys": "a"}, 400, "ERR_MALFORMED_REQUEST"),
        (
            "/v1.0-alpha1/state/statestore/query",
            {"filter": {}},
            500,
            "ERR_STATE_STORE_NOT_SUPPORTED",
        ),
    ],
)
def test_state_bad_requests(api: DaprHttp, path: str, body: Any, status: int, code: str) -> None:
    reply = api.post(path, body)
    assert (reply.status, reply.error_code) == (status, code), reply.body
    assert reply.json()["message"]


def test_unknown_paths_and_methods(api: DaprHttp) -> None:
    assert api.get("/v1.0/nothing-here").status == 404
    assert api.call("PATCH", "/v1.0/state/statestore").status == 405


# -- pub/sub -------------------------------------------------------------------------------------


def test_publish_delivers_a_cloudevent_to_the_app(api: DaprHttp, app: App) -> None:
    reply = api.post(
        "/v1.0/publish/pubsub/orders", {"orderId": 7}, headers={"content-type": "application/json"}
    )
    assert reply.status == 204, reply.body
    delivered = app.wait_received("/orders")[-1]
    event = json.loads(delivered["body"])
    assert event["data"] == {"orderId": 7} and event["specversion"] == "1.0"
    assert event["source"] == APP_ID and event["type"] == "com.dapr.event.sent"
    assert event["topic"] == "orders" and event["pubsubname"] == "pubsub" and event["id"]
    assert delivered["headers"]["content-type"].startswith("application/cloudevents+json")


def test_publish_cloudevent_passthrough_and_raw_payload(api: DaprHttp, app: App) -> None:
    given = {
        "specversion": "1.0",
        "id": "my-id-1",
        "source": "me",
        "type": "custom",
        "datacontenttype": "text/plain",
        "data": "hi",
    }
    before = len(app.received("/orders"))
    reply = api.post(
        "/v1.0/publish/pubsub/orders",
        given,
        headers={"content-type": "application/cloudevents+json"},
    )
    assert reply.status == 204
    raw = api.post("/v1.0/publish/pubsub/orders?metadata.rawPayload=true", b"plain bytes")
    assert raw.status == 204
    delivered = app.wait_received("/orders", before + 2)[before:]
    events = [json.loads(d["body"]) for d in delivered]
    passed = next(e for e in events if e.get("id") == "my-id-1")
    assert passed["type"] == "custom" and passed["data"] == "hi" and passed["topic"] == "orders"
    wrapped = next(e for e in events if e.get("id") != "my-id-1")
    assert "data_base64" in wrapped  # a raw payload reaches a CloudEvent subscriber wrapped


def test_retry_then_dead_letter(api: DaprHttp, app: App) -> None:
    assert (
        api.post(
            "/v1.0/publish/pubsub/flaky", {"n": 1}, headers={"content-type": "application/json"}
        ).status
        == 204
    )
    dead = app.wait_received("/dead-letters")
    assert json.loads(dead[-1]["body"])["data"] == {"n": 1}
    assert len(app.received("/retry-flaky")) >= 2  # tried again before giving up


def test_drop_is_not_retried(api: DaprHttp, app: App) -> None:
    assert api.post("/v1.0/publish/pubsub/dropped", "x").status == 204
    app.wait_received("/drop-it")
    time.sleep(0.3)
    assert len(app.received("/drop-it")) == 1


def test_routing_rules(api: DaprHttp, app: App) -> None:
    widget = {"specversion": "1.0", "id": "w1", "source": "s", "type": "widget", "data": 1}
    gadget = {"specversion": "1.0", "id": "g1", "source": "s", "type": "gadget", "data": 2}
    for event in (widget, gadget):
        reply = api.post(
            "/v1.0/publish/pubsub/shapes",
            event,
            headers={"content-type": "application/cloudevents+json"},
        )
        assert reply.status == 204
    assert json.loads(app.wait_received("/widgets")[-1]["body"])["id"] == "w1"
    assert json.loads(app.wait_received("/other-shapes")[-1]["body"])["id"] == "g1"


def test_bulk_publish(api: DaprHttp, app: App) -> None:
    before = len(app.received("/orders"))
    entries = [
        {"entryId": str(i), "event": {"i": i}, "contentType": "application/json"} for i in range(5)
    ]
    assert api.post("/v1.0-alpha1/publish/bulk/pubsub/orders", entries).status == 204
    delivered = app.wait_received("/orders", before + 5)[before:]
    assert sorted(json.loads(d["body"])["data"]["i"] for d in delivered) == list(range(5))
    twice = [{"entryId": "a", "event": 1}, {"entryId": "a", "event": 2}]
    reply = api.post("/v1.0-alpha1/publish/bulk/pubsub/orders", twice)
    assert reply.status == 400 and reply.error_code == "ERR_MALFORMED_REQUEST"


def test_publish_errors(api: DaprHttp) -> None:
    unknown = api.post("/v1.0/publish/nope/orders", b"x")
    assert unknown.status == 400 and unknown.error_code == "ERR_PUBSUB_NOT_FOUND"


# -- invocation ----------------------------------------------------------------------------------


def test_invoke_own_app_by_path_and_header(api: DaprHttp, app: App) -> None:
    reply = api.post(f"/v1.0/invoke/{APP_ID}/method/echo/deep?x=1", b"ping")
    assert reply.status == 200 and reply.headers["x-app"] == "yes"
    seen = reply.json()
    assert seen["path"] == "/echo/deep?x=1" and seen["body"] == "ping"
    assert seen["headers"]["dapr-caller-app-id"] == APP_ID
    by_header = api.call("PUT", "/echo-header", b"pong", headers={"dapr-app-id": APP_ID})
    assert by_header.status == 200
    assert by_header.json()["path"] == "/echo-header" and by_header.json()["method"] == "PUT"
    assert "dapr-app-id" not in by_header.json()["headers"]


def test_invoke_other_app_through_a_cluster(api: DaprHttp) -> None:
    reply = api.get("/v1.0/invoke/billing-app/method/echo/bill")
    assert reply.status == 200, reply.body
    assert reply.headers["x-backend"] == "other"
    assert json.loads(reply.body)["path"] == "/echo/bill"


def test_invoke_errors(api: DaprHttp) -> None:
    unknown = api.get("/v1.0/invoke/ghost-app/method/x")
    assert unknown.status == 500 and unknown.error_code == "ERR_DIRECT_INVOKE"
    malformed = api.get("/v1.0/invoke/ghost-app/x")
    assert malformed.status == 404 and malformed.error_code == "ERR_DIRECT_INVOKE"
    failing = api.get(f"/v1.0/invoke/{APP_ID}/method/fail")
    assert failing.status == 500 and failing.json() == {"error": "failing on purpose"}


# -- bindings, secrets, configuration --------------------------------------------------------------


def test_output_binding_http(api: DaprHttp) -> None:
    body = {"operation": "post", "data": {"hello": "world"}, "metadata": {"path": "/echo/hook"}}
    reply = api.post("/v1.0/bindings/web", body)
    assert reply.status == 200, reply.body
    echoed = reply.json()
    assert echoed["path"] == "/echo/hook" and json.loads(echoed["body"]) == {"hello": "world"}
    assert reply.headers["metadata.statuscode"] == "200"
    bad = api.post("/v1.0/bindings/web", {"operation": "explode", "data": 1})
    assert bad.status == 500 and bad.error_code == "ERR_INVOKE_OUTPUT_BINDING"
    assert "supported operations" in bad.json()["message"]
    missing = api.post("/v1.0/bindings/nope", {"operation": "post"})
    assert missing.status == 500 and missing.error_code == "ERR_INVOKE_OUTPUT_BINDING"


def test_input_binding_cron_reaches_the_app(app: App) -> None:
    events = app.wait_received("/tick", 2, timeout=5)
    assert all(e["method"] == "POST" for e in events)


def test_secrets(api: DaprHttp) -> None:
    assert api.get("/v1.0/secrets/envsecrets/DB").json() == {"DB": "s3cr3t"}
    assert api.get("/v1.0/secrets/envsecrets/bulk").json() == {"DB": {"DB": "s3cr3t"}}
    assert api.get("/v1.0/secrets/envsecrets/NOPE").status == 204
    unknown = api.get("/v1.0/secrets/nope/DB")
    assert unknown.status == 401 and unknown.error_code == "ERR_SECRET_STORE_NOT_FOUND"


def test_configuration_get(api: DaprHttp) -> None:
    reply = api.get("/v1.0/configuration/config?key=color")
    assert reply.status == 200 and reply.json()["color"]["value"] == "blue"
    assert api.get("/v1.0-alpha1/configuration/config?key=missing").json() == {}
    subscribed = api.get("/v1.0/configuration/config/subscribe?key=color")
    assert subscribed.status == 200
    subscription = subscribed.json()["id"]
    done = api.get(f"/v1.0/configuration/config/{subscription}/unsubscribe")
    assert done.status == 200 and done.json() == {"ok": True}
    again = api.get(f"/v1.0/configuration/config/{subscription}/unsubscribe")
    assert again.status == 500 and again.error_code == "ERR_CONFIGURATION_UNSUBSCRIBE"
    unknown = api.get("/v1.0/configuration/nope?key=a")
    assert unknown.status == 400 and unknown.error_code == "ERR_CONFIGURATION_STORE_NOT_FOUND"


# -- locks and ids -------------------------------------------------------------------------------


def test_lock_unlock_renew_and_fencing(api: DaprHttp) -> None:
    lock = {"resourceId": "invoice-9", "lockOwner": "worker-a", "expiryInSeconds": 30}
    first = api.post("/v1.0-alpha1/lock/lockstore", lock)
    assert first.status == 200 and first.json()["success"] is True
    taken = api.post("/v1.0-alpha1/lock/lockstore", {**lock, "lockOwner": "worker-b"})
    assert taken.json() == {"success": False}
    others = api.post("/v1.0-alpha1/unlock/lockstore", {**lock, "lockOwner": "worker-b"})
    assert others.json() == {"status": 2}
    assert api.post("/v1.0-alpha1/lock/lockstore/renew", lock).json() == {"status": 0}
    assert api.post("/v1.0-alpha1/unlock/lockstore", lock).json() == {"status": 0}
    assert api.post("/v1.0-alpha1/unlock/lockstore", lock).json() == {"status": 1}
    second = api.post("/v1.0-alpha1/lock/lockstore", {**lock, "lockOwner": "worker-b"})
    assert int(second.json()["fencingToken"]) > int(first.json()["fencingToken"])
    bad = api.post("/v1.0-alpha1/lock/lockstore", {**lock, "expiryInSeconds": 0})
    assert bad.status == 400 and bad.error_code == "ERR_MALFORMED_REQUEST"
    unknown = api.post("/v1.0-alpha1/lock/nope", lock)
    assert unknown.status == 400 and unknown.error_code == "ERR_LOCK_STORE_NOT_FOUND"


def test_lock_is_exclusive_under_concurrency(api: DaprHttp) -> None:
    winners: list[str] = []

    def contend(owner: str) -> None:
        body = {"resourceId": "contended", "lockOwner": owner, "expiryInSeconds": 30}
        if api.post("/v1.0-alpha1/lock/lockstore", body).json()["success"]:
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"o{i}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_sequencer_ids_increase(api: DaprHttp) -> None:
    ids: list[int] = []

    def take() -> None:
        replies = [api.post("/v1.0-alpha1/sequencer/ids", {"key": "orders"}) for _ in range(10)]
        ids.extend(int(reply.json()["nextId"]) for reply in replies)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 40
    serial = [
        int(api.post("/v1.0-alpha1/sequencer/ids", {"key": "orders"}).json()["nextId"])
        for _ in range(3)
    ]
    assert serial == sorted(serial) and serial[0] > max(ids)
    assert api.post("/v1.0-alpha1/sequencer/ids", {"nokey": 1}).status == 400


# -- metadata, health, limits, token, shutdown ----------------------------------------------------


def test_metadata_lists_components_and_subscriptions(api: DaprHttp) -> None:
    assert api.call("PUT", "/v1.0/metadata/team", b"payments").status == 204
    metadata = api.get("/v1.0/metadata").json()
    assert metadata["id"] == APP_ID and metadata["extended"]["team"] == "payments"
    types = {c["name"]: c["type"] for c in metadata["components"]}
    assert types["statestore"] == "state.in-memory" and types["web"] == "bindings.http"
    topics = {(s["topic"], s["type"]) for s in metadata["subscriptions"]}
    assert ("orders", "PROGRAMMATIC") in topics
    assert metadata["appConnectionProperties"]["port"] > 0


def test_health(api: DaprHttp) -> None:
    assert api.get("/v1.0/healthz").status == 204
    assert api.get("/v1.0/healthz/outbound").status == 204


def test_curl_sees_dapr_answers(mecha: Mecha) -> None:
    port = mecha.port("api")
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            '[{"key":"c","value":1}]',
            f"http://127.0.0.1:{port}/v1.0/state/statestore",
        ],
        capture_output=True,
        check=True,
        timeout=10,
    )
    assert out.stdout == b"204"
    body = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{port}/v1.0/state/statestore/c"],
        capture_output=True,
        check=True,
        timeout=10,
    )
    assert body.stdout == b"1"


def test_token_body_limit_and_shutdown(tmp_path: Path) -> None:
    config = runtime_config(
        None,
        [{"name": "s", "type": "state.in-memory"}],
        api_token="sekrit",
        max_request_body="2KiB",
    )
    with run_mecha(tmp_path, config) as running:
        anonymous = DaprHttp(running.port("api"))
        denied = anonymous.get("/v1.0/state/s/k")
        assert denied.status == 401 and denied.error_code == "ERR_UNAUTHORIZED"
        assert anonymous.get("/v1.0/healthz").status == 204  # probes need no token
        api = DaprHttp(running.port("api"), token="sekrit")
        assert api.post("/v1.0/state/s", [{"key": "k", "value": "v"}]).status == 204
        big = api.post("/v1.0/state/s", [{"key": "k", "value": "v" * 4096}])
        assert big.status == 413
        assert api.get("/v1.0/state/s/k").json() == "v"
        wrong = DaprHttp(running.port("api"), token="sekri").get("/v1.0/state/s/k")
        assert wrong.status == 401 and wrong.error_code == "ERR_UNAUTHORIZED"
        assert api.post("/v1.0/shutdown").status == 204
        assert running.wait(timeout=20) == 0


def test_invoke_resolves_app_ids_by_dns(tmp_path: Path) -> None:
    with http_backend("by-dns") as backend:
        config = runtime_config(None, [], invoke={"dns": f"{{app_id}}:{backend.port}"})
        with run_mecha(tmp_path, config) as running:
            api = DaprHttp(running.port("api"))
            reply = api.get("/v1.0/invoke/localhost/method/echo/dns")
            assert reply.status == 200 and reply.headers["x-backend"] == "by-dns", reply.body
            assert json.loads(reply.body)["headers"]["dapr-callee-app-id"] == "localhost"
            nowhere = api.get("/v1.0/invoke/no-such-host.invalid/method/x")
            assert nowhere.status == 500 and nowhere.error_code == "ERR_DIRECT_INVOKE"


def test_redis_outage_is_an_error_and_an_unhealthy_outbound(tmp_path: Path) -> None:
    """A backend outage surfaces as 500s and a failing outbound probe, never a hang; mecha
    reconnects by itself when the server is back."""
    port = free_port()
    components = [{"name": "cache", "type": "state.redis",
                   "metadata": {"redisHost": f"127.0.0.1:{port}"}}]  # fmt: skip
    with (
        contextlib.ExitStack() as first,
        run_mecha_after(first, tmp_path, port, components) as running,
    ):
        api = DaprHttp(running.port("api"))
        assert api.post("/v1.0/state/cache", [{"key": "k", "value": 1}]).status == 204
        assert api.get("/v1.0/healthz/outbound").status == 204
        first.close()  # the server goes away under mecha
        started = time.monotonic()
        failed = api.get("/v1.0/state/cache/k")
        assert failed.status == 500 and failed.error_code == "ERR_STATE_GET"
        assert time.monotonic() - started < 10
        outbound = api.get("/v1.0/healthz/outbound")
        assert outbound.status == 500 and outbound.error_code == "ERR_OUTBOUND_HEALTH_NOT_READY"
        assert api.get("/v1.0/healthz").status == 204  # mecha itself is fine
        with redis_server(tmp_path, port=port):
            deadline = time.monotonic() + 15
            while api.post("/v1.0/state/cache", [{"key": "k", "value": 2}]).status != 204:
                assert time.monotonic() < deadline, "no reconnection"
                time.sleep(0.2)
            assert api.get("/v1.0/state/cache/k").json() == 2
            assert api.get("/v1.0/healthz/outbound").status == 204


@contextlib.contextmanager
def run_mecha_after(stack: contextlib.ExitStack, workdir: Path, port: int,
                    components: list[dict[str, Any]]) -> Iterator[Mecha]:  # fmt: skip
    """A redis-server (on `stack`, so the test can stop it) and then mecha using it."""
    stack.enter_context(redis_server(workdir, port=port))
    with run_mecha(workdir, runtime_config(None, components)) as running:
        yield running


def test_configuration_updates_reach_the_app(tmp_path: Path, redis_port: int) -> None:
    components = [{"name": "settings", "type": "configuration.redis",
                   "metadata": {"redisHost": f"127.0.0.1:{redis_port}"}}]  # fmt: skip
    client = redis.Redis(port=redis_port)
    client.set("flag", "off||1")
    with dapr_app([]) as app, run_mecha(tmp_path, runtime_config(app.port, components)) as m:
        api = DaprHttp(m.port("api"))
        got = api.get("/v1.0/configuration/settings?key=flag").json()
        assert got["flag"]["value"] == "off" and got["flag"]["version"] == "1"
        subscription = api.get("/v1.0/configuration/settings/subscribe?key=flag").json()["id"]
        client.set("flag", "on||2")
        update = json.loads(app.wait_received("/configuration/settings/flag")[-1]["body"])
        assert update["id"] == subscription
        assert update["items"]["flag"]["value"] == "on"
        done = api.get(f"/v1.0/configuration/settings/{subscription}/unsubscribe")
        assert done.json() == {"ok": True}
        client.set("flag", "again||3")
        time.sleep(0.5)
        assert len(app.received("/configuration/settings/flag")) == 1


def test_accepted_publishes_survive_a_mecha_crash(tmp_path: Path, redis_port: int) -> None:
    """With Redis Streams, a publish that got 204 is delivered even when mecha is killed
    before the app accepted it: the next mecha redelivers what is pending."""
    metadata = {"redisHost": f"127.0.0.1:{redis_port}", "processingTimeout": "1s",
                "redeliverInterval": "300ms"}  # fmt: skip
    components = [{"name": "pubsub", "type": "pubsub.redis", "metadata": metadata}]
    failing = [{"pubsubname": "pubsub", "topic": "durable", "route": "/fail-durable"}]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        dapr_app(failing) as app,
        run_mecha(tmp_path / "a", runtime_config(app.port, components)) as first,
    ):
        api = DaprHttp(first.port("api"))
        for n in range(5):
            reply = api.post("/v1.0/publish/pubsub/durable", {"n": n},
                             headers={"content-type": "application/json"})  # fmt: skip
            assert reply.status == 204
        app.wait_received("/fail-durable")
        first.signal(signal.SIGKILL)
        first.wait()
    accepting = [{"pubsubname": "pubsub", "topic": "durable", "route": "/durable"}]
    with (
        dapr_app(accepting) as app,
        run_mecha(tmp_path / "b", runtime_config(app.port, components)),
    ):
        delivered = app.wait_received("/durable", 5, timeout=20)
        assert sorted(json.loads(d["body"])["data"]["n"] for d in delivered[:5]) == list(range(5))
