"""Fuzzing the runtime API's request handling with one invariant: whatever the method, path,
query and body, a handler answers (a Dapr error with a 4xx/5xx status and an error code, or
success) and never raises anything else; and the in-memory components behind it keep
answering afterwards.

The default run is fast; set RUNTIME_FUZZ_EXAMPLES=5000 for a deep run.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.http.runtime_api import meta, paths, state
from filters.http.runtime_api.base import Answer, ApiError, ApiRequest, split_target
from filters.http.runtime_api.invoke import split_invoke_path
from protocols import strict_json
from protocols.http.headers import Headers
from proxy.upstream.cluster import ClusterManager
from runtime.config import ComponentSpec, RuntimeConfig
from runtime.runtime import Runtime

EXAMPLES = int(os.environ.get("RUNTIME_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

COMPONENTS = (
    ComponentSpec("statestore", "state.in-memory"),
    ComponentSpec("pubsub", "pubsub.in-memory"),
    ComponentSpec("lockstore", "lock.in-memory"),
    ComponentSpec("ids", "sequencer.in-memory"),
    ComponentSpec("config", "configuration.in-memory", metadata={"a": "1"}),
    ComponentSpec("secrets", "secretstores.local.env", metadata={"prefix": "FUZZ_"}),
)
SEGMENTS = st.sampled_from(
    [
        "v1.0",
        "v1.0-alpha1",
        "state",
        "statestore",
        "publish",
        "pubsub",
        "bulk",
        "transaction",
        "lock",
        "unlock",
        "lockstore",
        "renew",
        "sequencer",
        "ids",
        "configuration",
        "config",
        "subscribe",
        "secrets",
        "bindings",
        "metadata",
        "healthz",
        "x",
        "%7C%7C",
        "a b",
        "query",
        "outbound",
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "key",
        "value",
        "etag",
        "options",
        "metadata",
        "keys",
        "operations",
        "operation",
        "request",
        "resourceId",
        "lockOwner",
        "expiryInSeconds",
        "entryId",
        "event",
        "contentType",
        "data",
        "concurrency",
    ]
)
SHAPED = st.recursive(
    JSON,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELDS, inner, max_size=5),
    max_leaves=16,
)
BAD_JSON = [
    b"[" * 100_000,
    b'"\\ud800"',
    b"NaN",
    b"1e999999",
    b"-Infinity",
    b'{"',
    b"\xff",
]
"""Texts the standard library reads (or recurses on) that are no JSON the API accepts."""
BAD_VALUES = st.sampled_from(BAD_JSON[:5])
BODIES = st.one_of(
    st.binary(max_size=64),
    SHAPED.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(BAD_JSON),
    # a bad value where a good one could be: inside items, operations, entries
    st.tuples(SHAPED.map(json.dumps), BAD_VALUES).map(
        lambda p: p[0].replace("null", p[1].decode(), 1).encode()
    ),
)


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    loop = asyncio.new_event_loop()
    config = RuntimeConfig(app_id="fuzz", components=COMPONENTS)
    instance = loop.run_until_complete(_started(config))
    instance.loop = loop  # type: ignore[attr-defined]
    yield instance
    loop.run_until_complete(instance.stop())
    loop.close()


async def _started(config: RuntimeConfig) -> Runtime:
    instance = Runtime(config, ClusterManager(()))
    await instance.start()
    return instance


def _serve(
    runtime: Runtime, method: str, target: bytes, body: bytes, headers: Headers | None = None
) -> Answer | None:
    parts, query = split_target(target)
    found = paths.find(method, parts)
    if found is None or found.handler is None or found.handler is meta.shutdown:
        return None  # no handler (shutdown stops the process: not for a fuzzer)
    handler, args = found.handler, found.args
    request = ApiRequest(method, parts, query, headers or Headers(), body)
    loop: asyncio.AbstractEventLoop = runtime.loop  # type: ignore[attr-defined]

    async def call() -> Answer:
        try:
            return await asyncio.wait_for(handler(runtime, request, *args), 5)
        except ApiError as error:
            return error.answer()

    return loop.run_until_complete(call())


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(SEGMENTS, min_size=1, max_size=6),
    query=st.sampled_from(
        [
            "",
            "?metadata.ttlInSeconds=1",
            "?metadata.ttlInSeconds=x",
            "?key=a&key=b",
            "?consistency=bad",
            "?metadata.rawPayload=true",
        ]
    ),
    body=BODIES,
)
def test_any_request_gets_an_answer(
    runtime: Runtime, method: str, segments: list[str], query: str, body: bytes
) -> None:
    target = ("/" + "/".join(segments) + query).encode()
    answer = _serve(runtime, method, target, body)
    if answer is None:
        return
    assert 200 <= answer.status < 600
    strict_json.loads(answer.body or b"null")  # every answer is JSON (or empty)
    if answer.status >= 400:
        error = json.loads(answer.body)
        assert error["errorCode"].startswith("ERR_") and error["message"]


@FUZZ
@given(body=SHAPED)
def test_state_writes_never_break_the_store(runtime: Runtime, body: Any) -> None:
    _serve(runtime, "POST", b"/v1.0/state/statestore", json.dumps(body).encode())
    _serve(runtime, "POST", b"/v1.0/state/statestore/transaction", json.dumps(body).encode())
    saved = _serve(runtime, "POST", b"/v1.0/state/statestore", b'[{"key": "probe", "value": 1}]')
    assert saved is not None and saved.status == 204
    got = _serve(runtime, "GET", b"/v1.0/state/statestore/probe", b"")
    assert got is not None and got.status == 200 and got.body == b"1"


@FUZZ
@given(path=st.binary(max_size=40))
def test_invoke_paths_split_or_refuse(path: bytes) -> None:
    split = split_invoke_path(b"/v1.0/invoke/" + path)
    if split is not None:
        app_id, method_path = split
        assert app_id and "/" not in app_id and method_path.startswith(b"/")


def test_paths_prefer_literal_segments() -> None:
    found = paths.find("POST", ["v1.0", "state", "s", "bulk"])
    assert found is not None and found.handler is state.bulk_get
    keyed = paths.find("GET", ["v1.0", "state", "s", "bulk"])
    assert keyed is not None and keyed.handler is state.get and keyed.args == ["s", "bulk"]
    nested = paths.find("GET", ["v1.0", "state", "s", "a", "b"])
    assert nested is not None and nested.args == ["s", "a/b"]
    wrong = paths.find("PATCH", ["v1.0", "state", "s"])
    assert wrong is not None and wrong.handler is None
    assert paths.find("GET", ["v2", "state"]) is None


# -- bad JSON: Dapr's 400, never a traceback; what is stored is JSON ---------------------------

JSON_BODIES = [
    ("POST", b"/v1.0/state/statestore", "ERR_MALFORMED_REQUEST"),
    ("POST", b"/v1.0/state/statestore/transaction", "ERR_MALFORMED_REQUEST"),
    ("POST", b"/v1.0/state/statestore/bulk", "ERR_MALFORMED_REQUEST"),
    ("POST", b"/v1.0-alpha1/lock/lockstore", "ERR_MALFORMED_REQUEST"),
    ("POST", b"/v1.0-alpha1/publish/bulk/pubsub/t", "ERR_PUBSUB_EVENTS_SER"),
]


@pytest.mark.parametrize(("method", "target", "code"), JSON_BODIES)
@pytest.mark.parametrize("body", BAD_JSON)
def test_a_bad_json_body_is_a_400(
    runtime: Runtime, method: str, target: bytes, code: str, body: bytes
) -> None:
    answer = _serve(runtime, method, target, body)
    assert answer is not None and answer.status == 400
    assert json.loads(answer.body)["errorCode"] == code


@pytest.mark.parametrize("value", [v for v in BAD_JSON if v != b'{"'])
def test_a_bad_value_inside_good_json_is_a_400(runtime: Runtime, value: bytes) -> None:
    body = b'[{"key": "bad", "value": ' + value + b"}]"
    answer = _serve(runtime, "POST", b"/v1.0/state/statestore", body)
    assert answer is not None and answer.status == 400
    assert json.loads(answer.body)["errorCode"] == "ERR_MALFORMED_REQUEST"
    got = _serve(runtime, "GET", b"/v1.0/state/statestore/bad", b"")
    assert got is not None and got.status == 204  # nothing stored


@pytest.mark.parametrize(
    "body", [b"{", b"[1, 2]", b'"event"', b"[" * 100_000, b'{"id": NaN}', b'{"a": "\\udfff"}']
)
def test_a_bad_cloud_event_is_a_400(runtime: Runtime, body: bytes) -> None:
    headers = Headers([(b"content-type", b"application/cloudevents+json")])
    answer = _serve(runtime, "POST", b"/v1.0/publish/pubsub/t", body, headers)
    assert answer is not None and answer.status == 400
    assert json.loads(answer.body)["errorCode"] == "ERR_PUBSUB_CLOUD_EVENTS_SER"
    entries = b'[{"entryId": "1", "event": ' + (body if body[:1] == b"{" else b"[1]") + b","
    entries += b' "contentType": "application/cloudevents+json"}]'
    bulk = _serve(runtime, "POST", b"/v1.0-alpha1/publish/bulk/pubsub/t", entries)
    assert bulk is not None and bulk.status == 400


NEAR_JSON = st.text(alphabet='[]{}",:\\ 0123456789.eE+-tfnrualsNIy\u00e9u', max_size=40)


@FUZZ
@given(value=NEAR_JSON)
def test_what_is_stored_is_json(runtime: Runtime, value: str) -> None:
    """Any text as an item's value: refused with a 400, or stored as JSON that reads back as
    the same value."""
    body = b'[{"key": "fuzzed", "value": ' + value.encode() + b"}]"
    saved = _serve(runtime, "POST", b"/v1.0/state/statestore", body)
    assert saved is not None
    if saved.status == 400:
        assert json.loads(saved.body)["errorCode"] == "ERR_MALFORMED_REQUEST"
        return
    assert saved.status == 204
    got = _serve(runtime, "GET", b"/v1.0/state/statestore/fuzzed", b"")
    assert got is not None and got.status == 200
    assert strict_json.loads(got.body) == strict_json.loads(value)
