"""gRPC through mecha: a real grpcio client and server over HTTP/2 on both sides."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.mecha import Mecha, http_config, run_mecha
from tests.support.net import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Mecha, grpc.Channel]]:
    with grpc_backend() as port:
        routes = [
            {"match": {"prefix": f"/{SERVICE}/"}, "route": {"cluster": "grpc"}},
            {"match": {"prefix": "/mecha.test.Down/"}, "route": {"cluster": "down"}},
        ]
        options = {"grpc": {"protocol": "http2"}, "down": {"protocol": "http2"}}
        clusters = {"grpc": [port], "down": [free_port()]}
        config = http_config(clusters, routes, cluster_options=options)
        with run_mecha(tmp_path, config) as mecha:
            channel = grpc.insecure_channel(f"127.0.0.1:{mecha.port('http')}")
            try:
                yield mecha, channel
            finally:
                channel.close()


def method(channel: grpc.Channel, kind: str, name: str, service: str = SERVICE) -> Any:
    return getattr(channel, kind)(f"/{service}/{name}")


def test_unary_call(proxied: tuple[Mecha, grpc.Channel]) -> None:
    mecha, channel = proxied
    assert method(channel, "unary_unary", "Unary")(b"hi", timeout=5) == b"echo:hi via 127.0.0.1"
    line = mecha.wait_access_log(1)[-1]
    assert f'"POST /{SERVICE}/Unary HTTP/2" 200 - ' in line


def test_streaming_calls(proxied: tuple[Mecha, grpc.Channel]) -> None:
    _, channel = proxied
    items = list(method(channel, "unary_stream", "ServerStream")(b"50", timeout=5))
    assert items == [b"item %d" % i for i in range(50)]
    joined = method(channel, "stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=5)
    assert joined == b"a+b+c"
    replies = method(channel, "stream_stream", "Bidi")(iter([b"x", b"y"]), timeout=5)
    assert list(replies) == [b"X", b"Y"]


def test_status_and_message_pass_through(proxied: tuple[Mecha, grpc.Channel]) -> None:
    _, channel = proxied
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "unary_unary", "Unary")(b"fail", timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such thing"


def test_grpc_timeout_is_honoured_by_the_proxy(
    proxied: tuple[Mecha, grpc.Channel], tmp_path: Path
) -> None:
    """A client that sends grpc-timeout but does not enforce it: mecha must end the call."""
    mecha, _ = proxied
    message = b"sleep:2"
    body = tmp_path / "call.bin"
    body.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    started = time.monotonic()
    result = subprocess.run(
        ["curl", "-s", "-i", "--http2-prior-knowledge", "-H", "content-type: application/grpc",
         "-H", "te: trailers", "-H", "grpc-timeout: 300m", "--data-binary", f"@{body}",
         f"http://127.0.0.1:{mecha.port('http')}/{SERVICE}/Unary"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert time.monotonic() - started < 1.5
    assert "grpc-status: 4" in result.stdout  # DEADLINE_EXCEEDED
    line = mecha.wait_access_log(1)[-1]
    assert " UT " in line  # the route timeout is 15s: grpc-timeout shortened it


def test_errors_the_proxy_makes_are_grpc_statuses(proxied: tuple[Mecha, grpc.Channel]) -> None:
    _, channel = proxied
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "unary_unary", "Nothing", service="mecha.test.Unknown")(b"x", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route (404)
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "unary_unary", "Call", service="mecha.test.Down")(b"x", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # connect failure (503)
    assert "connection refused" in (caught.value.details() or "")


def test_many_concurrent_calls_share_connections(proxied: tuple[Mecha, grpc.Channel]) -> None:
    mecha, channel = proxied
    call = method(channel, "unary_unary", "Unary")
    futures = [call.future(b"%d" % i, timeout=10) for i in range(200)]
    assert [f.result() for f in futures] == [b"echo:%d via 127.0.0.1" % i for i in range(200)]
    assert mecha.metric("mecha_cluster_upstream_cx_total", cluster="grpc") <= 2
