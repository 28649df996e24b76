"""`bindings.http`: an output binding that sends one HTTP/1.1 request per invocation (Dapr's).

Component metadata:

| key | meaning |
| --- | --- |
| `url` | base URL, `http://` or `https://` (required) |
| `responseTimeout` | deadline of the whole exchange (default `30s`; Dapr has none) |
| `maxResponseBodySize` | larger answers fail (default `100MiB`; Dapr truncates instead) |
| `errorIfNot2XX` | `true` (default): an answer outside 2xx raises HttpStatusError |
| `securityToken`, `securityTokenHeader` | a header (name, value) sent with every request |
| `MTLSRootCA`, `MTLSClientCert`, `MTLSClientKey`, `MTLSRenegotiation` | refused (not yet) |

Operations: `get`, `head`, `post`, `put`, `patch`, `delete`, `options`, `trace`, and `create`
(= `post`). Only post, put and patch send the data, by default as
`application/json; charset=utf-8`. Request metadata: `path` is appended to the URL; keys that
start with a capital letter are request headers; `traceparent` / `tracestate` are passed on;
`errorIfNot2XX` overrides the component's. The response carries `statusCode`, `status`
(`200 OK`) and the response headers (names in canonical case, repeated values joined by ", ").

Each request uses a connection of its own (`Connection: close`), opened within 15s; any
failure (refused, reset, timed out, malformed answer) raises ComponentError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from runtime.components.api import BindingResponse, Metadata
from runtime.components.errors import BadMetadata, ComponentError, NotSupported
from runtime.components.metadata import duration, flag, size

OPERATIONS: tuple[str, ...] = (
    "create",
    "get",
    "head",
    "post",
    "put",
    "patch",
    "delete",
    "options",
    "trace",
)
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
DEFAULT_MAX_BODY = 100 << 20
JSON_UTF8 = "application/json; charset=utf-8"

UNSUPPORTED = frozenset({"mtlsrootca", "mtlsclientcert", "mtlsclientkey", "mtlsrenegotiation"})
"""Dapr's mTLS keys (lowercased): refused rather than silently ignored."""

_Header = tuple[bytes, bytes]


class HttpStatusError(ComponentError):
    """The server answered outside 2xx; `response` holds its body and metadata."""

    def __init__(self, status: int, response: BindingResponse) -> None:
        super().__init__(f"http binding: received status code {status}",
                         retryable=status >= 500 or status in (408, 429))  # fmt: skip
        self.status = status
        self.response = response


@dataclass(frozen=True, slots=True)
class _Target:
    tls: bool
    host: str
    port: int
    authority: str
    """The Host header."""
    path: str
    """Path and query, as sent in the request line."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


class HttpOutputBinding:
    operations = OPERATIONS

    def __init__(self) -> None:
        self._url = ""
        self._timeout = DEFAULT_TIMEOUT
        self._max_body = DEFAULT_MAX_BODY
        self._error_if_not_2xx = True
        self._token: tuple[str, str] | None = None
        self._tls: ssl.SSLContext | None = None

    async def init(self, metadata: Metadata) -> None:
        for key in metadata:
            if key.lower() in UNSUPPORTED:
                raise BadMetadata(key, "mTLS is not supported yet")
        self._url = metadata.get("url", "").strip()
        try:
            tls = _target(self._url).tls
        except ValueError as error:
            raise BadMetadata("url", str(error)) from None
        self._timeout = duration(metadata, "responseTimeout", DEFAULT_TIMEOUT, positive=True)
        self._max_body = size(metadata, "maxResponseBodySize", DEFAULT_MAX_BODY)
        self._error_if_not_2xx = flag(metadata, "errorIfNot2XX", True)
        token, header = metadata.get("securityToken"), metadata.get("securityTokenHeader")
        self._token = (header, token) if token and header else None
        if tls:
            self._tls = await asyncio.to_thread(ssl.create_default_context)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def invoke(self, operation: str, data: bytes, metadata: Metadata) -> BindingResponse:
        method = "POST" if operation.lower() == "create" else operation.upper()
        if operation.lower() not in OPERATIONS:
            raise NotSupported(f"operation {operation!r}", "bindings.http")
        url = self._url
        if metadata.get("path"):
            url = url.rstrip("/") + "/" + metadata["path"].lstrip("/")
        try:
            target = _target(url)
        except ValueError as error:
            raise ComponentError(f"http binding: {error}", retryable=False) from None
        body = data if method in WITH_BODY else None
        answer = await self._send(target, method, self._headers(target, body, metadata), body)
        response = BindingResponse(data=answer.body, metadata=_response_metadata(answer))
        if flag(metadata, "errorIfNot2XX", self._error_if_not_2xx) and answer.status // 100 != 2:
            raise HttpStatusError(answer.status, response)
        return response

    def _headers(self, target: _Target, body: bytes | None, metadata: Metadata) -> list[_Header]:
        headers: dict[str, tuple[str, str]] = {}

        def put(name: str, value: str) -> None:
            headers[name.lower()] = (name, value)

        put("Host", target.authority)
        put("User-Agent", "mecha")
        put("Accept", JSON_UTF8)
        if body is not None:
            put("Content-Type", JSON_UTF8)
        if self._token is not None:
            put(*self._token)
        for key, value in metadata.items():
            if (key[:1].isascii() and key[:1].isupper()) or key in ("traceparent", "tracestate"):
                put(key, value)
        if body is not None:
            put("Content-Length", str(len(body)))
        else:
            headers.pop("content-length", None)
        put("Connection", "close")
        return [(name.encode(), value.encode()) for name, value in headers.values()]

    async def _send(
        self, target: _Target, method: str, headers: list[_Header], body: bytes | None
    ) -> _Answer:
        what = f"http binding: {method} {target.authority}{target.path}"
        try:
            async with asyncio.timeout(self._timeout):
                return await _exchange(target, method, headers, body, self._tls, self._max_body)
        except TimeoutError:
            raise ComponentError(f"{what}: no answer within {self._timeout:g}s") from None
        except h11.LocalProtocolError as error:
            raise ComponentError(f"{what}: bad request: {error}", retryable=False) from None
        except h11.RemoteProtocolError as error:
            raise ComponentError(f"{what}: malformed answer: {error}") from None
        except OSError as error:
            raise ComponentError(f"{what}: {error.strerror or error}") from None


async def _exchange(
    target: _Target,
    method: str,
    headers: list[_Header],
    body: bytes | None,
    tls: ssl.SSLContext | None,
    limit: int,
) -> _Answer:
    async with asyncio.timeout(CONNECT_TIMEOUT):
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=tls if target.tls else None
        )
    try:
        connection = h11.Connection(h11.CLIENT)
        out = connection.send(h11.Request(method=method, target=target.path, headers=headers))
        if body:
            out += connection.send(h11.Data(data=body))
        writer.write(out + connection.send(h11.EndOfMessage()))
        await writer.drain()
        return await _receive(connection, reader, limit)
    finally:
        await _close(writer)


async def _receive(connection: h11.Connection, reader: asyncio.StreamReader, limit: int) -> _Answer:
    response: h11.Response | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise ComponentError(f"http binding: answer larger than {limit} bytes",
                                     retryable=False)  # fmt: skip
        elif isinstance(event, h11.EndOfMessage) and response is not None:
            reason = response.reason.decode("latin-1")
            return _Answer(response.status_code, reason, list(response.headers), bytes(body))
        elif not isinstance(event, h11.InformationalResponse):  # closed, paused: no answer
            raise h11.RemoteProtocolError("the connection ended before the answer")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


def _target(url: str) -> _Target:
    if not url:
        raise ValueError("required (e.g. http://localhost:8080/api)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    authority = parts.netloc.rpartition("@")[2]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme == "https", parts.hostname, port, authority, path)


def _response_metadata(answer: _Answer) -> dict[str, str]:
    metadata = {"statusCode": str(answer.status), "status": f"{answer.status} {answer.reason}"}
    joined: dict[str, list[str]] = {}
    for name, value in answer.headers:
        joined.setdefault(_canonical(name.decode("latin-1")), []).append(value.decode("latin-1"))
    metadata.update((name, ", ".join(values)) for name, values in joined.items())
    return metadata


def _canonical(name: str) -> str:
    """`content-type` -> `Content-Type`, as Go's net/http (and so Dapr) names headers."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
