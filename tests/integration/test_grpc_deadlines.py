"""Every gRPC call gets a status, however short its deadline (`grpc-timeout` 0n, 0S, 1n, 1u),
on the runtime's gRPC API and through the proxy. An h2 client sends the header without
enforcing it (so only mecha can end the call); grpcio enforces its own deadline as well."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.h2_client import Client
from tests.support.mecha import Mecha, run_mecha

pytestmark = pytest.mark.integration

METADATA = "/dapr.proto.runtime.v1.Dapr/GetMetadata"
TINY = ["0n", "0S", "1n", "1u"]


@pytest.fixture(scope="module")
def mecha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mecha]:
    workdir = tmp_path_factory.mktemp("deadlines")
    route = {"match": {"prefix": "/"}, "route": {"cluster": "grpc"}}
    proxy = {"route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                 "routes": [route]}]}}  # fmt: skip
    with grpc_backend() as port:
        config = {
            "listeners": [
                {"name": "runtime", "address": "127.0.0.1:0",
                 "filters": [{"name": "runtime_grpc"}]},
                {"name": "proxy", "address": "127.0.0.1:0",
                 "filters": [{"name": "http", "config": proxy}]},
            ],
            "clusters": [{"name": "grpc", "protocol": "http2",
                          "endpoints": [f"127.0.0.1:{port}"]}],
            "runtime": {"app_id": "deadlines", "components": []},
        }  # fmt: skip
        with run_mecha(workdir, config) as running:
            yield running


def call(mecha: Mecha, listener: str, path: str, message: bytes, timeout: str) -> Client:
    """One unary call with `grpc-timeout: timeout`, sent as grpcio sends it (head and message
    in one write); the client, once mecha has ended the call."""
    client = Client(mecha.port(listener))
    framed = b"\x00" + len(message).to_bytes(4, "big") + message
    head = [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", timeout)]
    stream_id = client.request("POST", head, framed, path=path, end_stream=True)
    try:
        client.until_done(stream_id)  # mecha answers, or the socket times out (5 s)
    finally:
        client.close()
    return client


def grpc_status(client: Client) -> bytes | None:
    return client.headers(1).get(b"grpc-status")


@pytest.mark.parametrize("timeout", TINY)
def test_the_runtime_answers_deadline_exceeded(mecha: Mecha, timeout: str) -> None:
    assert grpc_status(call(mecha, "runtime", METADATA, b"", timeout)) == b"4"


@pytest.mark.parametrize("timeout", TINY)
def test_the_proxy_answers_deadline_exceeded(mecha: Mecha, timeout: str) -> None:
    assert grpc_status(call(mecha, "proxy", f"/{SERVICE}/Unary", b"hi", timeout)) == b"4"


@pytest.mark.parametrize(("listener", "path"), [("runtime", METADATA),
                                                ("proxy", f"/{SERVICE}/Unary")])  # fmt: skip
def test_grpcio_calls_with_tiny_deadlines_end_and_the_channel_goes_on(
    mecha: Mecha, listener: str, path: str
) -> None:
    """On a fresh channel grpcio sends `grpc-timeout: 1n` for a zero timeout when the deadline
    passed while it connected (`1m` when it did not, and the call may then succeed). grpcio
    gives up on its own at its deadline, so this shows mecha breaks nothing for it and answers
    nothing but DEADLINE_EXCEEDED; the tests above show that mecha itself answers."""
    for _ in range(5):
        with grpc.insecure_channel(f"127.0.0.1:{mecha.port(listener)}") as channel:
            call = channel.unary_unary(path)
            try:
                call(b"", timeout=0)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            call(b"", timeout=5)  # the connection goes on
