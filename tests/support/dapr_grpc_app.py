"""An application that receives over gRPC, built on the official SDK's callback server
(`dapr.ext.grpc.App`): `python -m tests.support.dapr_grpc_app PORT RECORD_FILE`.

It subscribes (ListTopicSubscriptions) to pubsub/grpc-orders (SUCCESS), pubsub/grpc-retry
(RETRY, with dead-letter topic grpc-dead, itself subscribed) and pubsub/grpc-drop (DROP),
and takes input binding `tick`. Every event it gets is appended to RECORD_FILE as a JSON
line: kind, topic or binding name, id, data, content type. Invoked (OnInvoke), method `echo`
answers JSON with the data, content type and caller app id it got, and metadata `x-app: grpc`;
method `fail` raises (status UNKNOWN), method `lost` aborts with NOT_FOUND. Every InvokeRequest
is recorded too (kind `invoke`, its method as name, verb, query string, content type, data):
the SDK's handlers do not see the verb or query string.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from dapr.ext.grpc import (
    App,
    BindingRequest,
    InvokeMethodRequest,
    InvokeMethodResponse,
    SubscriptionMessage,
    TopicEventResponse,
)
from dapr.ext.grpc._servicer import _CallbackServicer
from dapr.proto.common.v1 import common_pb2

from tests.support.net import free_port, wait_for_port

Write = Callable[[dict[str, Any]], None]


def record_invocations(write: Write) -> None:
    """Wrap the SDK's OnInvoke (before App() registers it) to record each request as sent."""
    on_invoke = _CallbackServicer.OnInvoke

    def recorded(servicer: Any, request: common_pb2.InvokeRequest, context: Any) -> Any:
        extension = request.http_extension
        write({"kind": "invoke", "name": request.method,
               "verb": common_pb2.HTTPExtension.Verb.Name(extension.verb),
               "querystring": extension.querystring, "content_type": request.content_type,
               "data": request.data.value.decode("utf-8", "replace")})  # fmt: skip
        if request.method == "lost":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return on_invoke(servicer, request, context)

    _CallbackServicer.OnInvoke = recorded  # type: ignore[method-assign, assignment]


def serve(port: int, record: Path) -> None:
    lock = threading.Lock()

    def write(entry: dict[str, Any]) -> None:
        with lock, record.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    record_invocations(write)
    app = App()

    def topic_event(event: SubscriptionMessage) -> None:
        write({"kind": "topic", "topic": event.topic(), "id": event.id(),
               "data": event.raw_data().decode("utf-8", "replace"),
               "content_type": event.data_content_type(), "type": event.type(),
               "source": event.source()})  # fmt: skip

    def answering(status: str | None) -> Any:
        def handler(event: SubscriptionMessage) -> TopicEventResponse | None:
            topic_event(event)
            return TopicEventResponse(status) if status else None

        return handler

    app.subscribe(pubsub_name="pubsub", topic="grpc-orders")(answering("success"))
    app.subscribe(pubsub_name="pubsub", topic="grpc-retry", dead_letter_topic="grpc-dead")(
        answering("retry")
    )
    app.subscribe(pubsub_name="pubsub", topic="grpc-dead")(answering(None))
    app.subscribe(pubsub_name="pubsub", topic="grpc-drop")(answering("drop"))

    def tick(request: BindingRequest) -> None:
        write({"kind": "binding", "name": "tick", "data": request.text()})

    app.binding("tick")(tick)

    def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
        caller = request.metadata.get("dapr-caller-app-id", [""])[0]
        seen = {"data": request.text(), "content_type": request.content_type, "caller": caller}
        response = InvokeMethodResponse(json.dumps(seen), "application/json")
        response.headers = (("x-app", "grpc"),)
        return response

    def fail(request: InvokeMethodRequest) -> None:
        raise ValueError("the app refuses")

    app.method("echo")(echo)
    app.method("fail")(fail)

    app.run(port, "127.0.0.1")


class GrpcApp:
    def __init__(self, port: int, record: Path) -> None:
        self.port = port
        self.record = record

    def received(self, kind: str, name: str) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        entries = [json.loads(line) for line in self.record.read_text().splitlines() if line]
        key = "topic" if kind == "topic" else "name"
        return [e for e in entries if e["kind"] == kind and e.get(key) == name]

    def wait_received(self, kind: str, name: str, count: int = 1,
                      timeout: float = 10.0) -> list[dict[str, Any]]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while len(found := self.received(kind, name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} {kind} events for {name}, expected {count}")
            time.sleep(0.05)
        return found


@contextmanager
def dapr_grpc_app(workdir: Path) -> Iterator[GrpcApp]:
    """The app as a process of its own, on a free port."""
    port = free_port()
    record = workdir / "grpc-app-events.jsonl"
    argv = [sys.executable, "-m", "tests.support.dapr_grpc_app", str(port), str(record)]
    process = subprocess.Popen(argv)
    try:
        wait_for_port(port)
        yield GrpcApp(port, record)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
