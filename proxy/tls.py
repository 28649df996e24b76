"""TLS termination on an accepted connection, after its listener filters chose a chain.

This is what `loop.start_tls` does, with one difference that `start_tls` cannot offer: the
bytes the listener filters already read (the ClientHello they parsed for SNI and ALPN) are
handed to the TLS layer first. The event loop's own SSL protocol is used (uvloop's, compiled,
under uvloop): it sits between the socket transport and the connection, which then sees
plaintext through an ordinary transport, so nothing on the data path changes for filters.

The handshake ends in one of two ways: the connection's `connection_made` is called again
with the TLS transport, or the returned future carries the exception (or None when the peer
went away first) and the connection's own `connection_lost` is never called.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
from typing import Any

import uvloop
import uvloop.loop

_UVLOOP_SSL_PROTOCOL: Any = getattr(uvloop.loop, "SSLProtocol", None)
"""Not in uvloop's type stubs, but what uvloop's own start_tls uses."""


def _protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The SSL protocol that goes with the loop's transports."""
    if _UVLOOP_SSL_PROTOCOL is not None and isinstance(loop, uvloop.Loop):
        return _UVLOOP_SSL_PROTOCOL
    return asyncio.sslproto.SSLProtocol


def start_server_tls(
    transport: asyncio.Transport,
    app_protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
    prefix: bytes = b"",
) -> asyncio.Future[None]:
    """Put a server-side TLS layer between `transport` and `app_protocol`; feed it `prefix`."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    tls = _protocol_class(loop)(
        loop, app_protocol, context, waiter, server_side=True, call_connection_made=True,
        ssl_handshake_timeout=handshake_timeout,
    )  # fmt: skip
    transport.set_protocol(tls)
    tls.connection_made(transport)
    view = memoryview(prefix)
    while view and not transport.is_closing():
        buffer = tls.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        tls.buffer_updated(size)
        view = view[size:]
    return waiter


def describe(error: BaseException | None) -> str:
    """A handshake failure in one line: OpenSSL's reason when there is one."""
    if error is None:
        return "connection closed during the handshake"
    if isinstance(error, ssl.SSLError):
        reason = error.reason or error.strerror or str(error)
        return str(reason).replace("_", " ").lower()
    return str(error) or type(error).__name__
