"""A gRPC server (grpcio) with raw-bytes methods: echo, streams, errors and slow calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

SERVICE = "mecha.test.Echo"


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    metadata = dict(context.invocation_metadata())
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    if request.startswith(b"sleep:"):
        time.sleep(float(request[6:]))
    return b"echo:" + request + b" via " + str(metadata.get("x-forwarded-for", "-")).encode()


def _server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for index in range(int(request)):
        yield b"item %d" % index


def _client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b"+".join(requests)


def _bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield request.upper()


@contextmanager
def grpc_backend(tls: tuple[bytes, bytes] | None = None) -> Iterator[int]:
    """Serve on a free loopback port; with `tls` (key PEM, certificate PEM), over TLS."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers: dict[str, Any] = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([tls]))
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)
