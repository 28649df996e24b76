"""Requests, answers and Dapr's error bodies for the runtime API handlers."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

from protocols import strict_json
from protocols.http.headers import Headers
from runtime.components.errors import (
    BadMetadata,
    ComponentError,
    EtagInvalid,
    EtagMismatch,
    NotSupported,
)
from runtime.runtime import Runtime, UnknownComponent

T = TypeVar("T")


class ApiError(Exception):
    """An error answer: HTTP status and Dapr's `{"errorCode": ..., "message": ...}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def answer(self) -> Answer:
        # A message may quote what a client sent: nothing in it may make the answer fail.
        message = self.message.encode(errors="replace").decode()
        return Answer(self.status, strict_json.dumps({"errorCode": self.code, "message": message}))


def split_target(target: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    """The decoded path segments and query parameters of a request target."""
    path, _, query = target.decode("latin-1").partition("?")
    parts = [unquote(part) for part in path.split("/") if part]
    return parts, parse_qsl(query, keep_blank_values=True)


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: list[str]
    query: list[tuple[str, str]]
    headers: Headers
    body: bytes = b""

    def metadata(self) -> dict[str, str]:
        """`?metadata.key=value` query parameters, as Dapr passes request metadata."""
        if not self.query:
            return {}
        return {k[9:]: v for k, v in self.query if k.startswith("metadata.") and len(k) > 9}

    def values(self, name: str) -> list[str]:
        if not self.query:
            return []
        return [v for k, v in self.query if k == name]

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    def json(self, what: str = "request body", code: str = "ERR_MALFORMED_REQUEST") -> Any:
        """The body's JSON value; bad JSON (protocols/strict_json.py) is a 400 with `code`."""
        if not self.body.strip():
            raise ApiError(400, code, f"{what} is empty")
        try:
            return strict_json.loads(self.body)
        except strict_json.JsonError as error:
            raise ApiError(400, code, f"{what} is not valid JSON: {error}") from None


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes = b""
    headers: Iterable[tuple[bytes, bytes]] = ()
    content_type: bytes = b"application/json"
    """Sent with a body, unless `headers` has a Content-Type."""

    def head(self) -> Headers:
        """The response's fields: `headers`, then Content-Type and Content-Length when there
        is a body (none for a 204, which must not have them)."""
        fields = list(self.headers)
        body = self.body
        if body:
            if not any(name == b"content-type" for name, _ in fields):
                fields.append((b"content-type", self.content_type))
            fields.append((b"content-length", b"%d" % len(body)))
        return Headers(fields)


def json_answer(value: Any, status: int = 200) -> Answer:
    return Answer(status, strict_json.dumps(value))


NO_CONTENT = Answer(204)


def malformed(message: str) -> ApiError:
    return ApiError(400, "ERR_MALFORMED_REQUEST", message)


def component_failed(error: ComponentError, code: str, what: str) -> ApiError:
    """A component's error as Dapr answers it: etag conflicts 409/400, the rest 500."""
    if isinstance(error, EtagMismatch):
        return ApiError(
            409, code, f"{what}: possible etag mismatch. error from state store: {error}"
        )
    if isinstance(error, EtagInvalid | NotSupported | BadMetadata):
        return ApiError(400, code, f"{what}: {error}")
    return ApiError(500, code, f"{what}: {error}")


@dataclass(frozen=True, slots=True)
class Block:
    """A building block's answers for "none configured" and "no such component"."""

    kind: str
    """The component block (`state`, `pubsub`, ...)."""
    none: tuple[int, str, str]
    """Status, error code and message when no component of the block is loaded."""
    unknown: tuple[int, str, str]
    """The same for an unknown name; the message has a `{}` for it."""


def lookup(runtime: Runtime, block: Block, find: Callable[[str], T], name: str) -> T:
    """A component by name, or Dapr's error for a missing one."""
    try:
        return find(name)
    except UnknownComponent:
        pass
    if not any(c.spec.block == block.kind for c in runtime.components.values()):
        raise ApiError(*block.none)
    status, code, message = block.unknown
    raise ApiError(status, code, message.format(name or "(empty)"))


def string_map(value: Any, what: str) -> dict[str, str]:
    """A JSON object of strings (metadata), or a 400 naming `what`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed(f"{what} must be an object of strings")
    return {
        str(k): v if isinstance(v, str) else strict_json.dumps(v).decode() for k, v in value.items()
    }


def data_bytes(value: Any) -> bytes:
    """A JSON `data` field as the bytes a component gets: strings as text, the rest as JSON."""
    if isinstance(value, str):
        return value.encode()
    return strict_json.dumps(value)


def embed(data: bytes) -> Any:
    """Stored bytes inside a JSON answer: as JSON when they are, else text, else base64."""
    try:
        return strict_json.loads(data)
    except strict_json.JsonError:
        pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return base64.b64encode(data).decode()
