"""`runtime_api`: Dapr's HTTP API as an HTTP stream filter.

In an `http` connection manager, the filter answers `/v1.0*` paths itself (the body buffered
up to `runtime.max_request_body`; a handler whose component can start without a task runs
inline and answers in the same loop turn, see inline.py; the others get one task per
request), hands invocations
(`/v1.0/invoke/...` or a `dapr-app-id` header) to the router with a route of their own
(to this app when it speaks gRPC: buffered and answered here, through its OnInvoke), and
lets every other request through to the listener's routes. The network filter of the same
name (filters/network/runtime_api.py) wraps it for a listener of its own.

With an API token (`runtime.api_token` or `DAPR_API_TOKEN`), requests must carry it in
`dapr-api-token` (401 otherwise); the health probes are exempt, as in Dapr.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass

from filters.http.api import (
    CONTINUE,
    STOP,
    FilterStatus,
    HttpFactoryContext,
    LocalAnswer,
    StreamCallbacks,
    StreamFilter,
    StreamFilterFactory,
)
from filters.http.registry import HttpFilterSpec
from filters.http.runtime_api import paths
from filters.http.runtime_api.base import Answer, ApiError, ApiRequest, split_target
from filters.http.runtime_api.inline import run_inline
from filters.http.runtime_api.invoke import (
    INVOKE_PREFIX,
    Invoker,
    calls_grpc_app,
    invoke_grpc_app,
    split_invoke_path,
)
from protocols.http.events import RequestHeaders, ResponseHeaders
from protocols.http.h1_forward import RequestHead
from protocols.http.h1_parse import parse_fields
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from runtime.api_access import http_api
from runtime.runtime import Runtime

log = logging.getLogger("mecha.runtime_api")

NAME = "runtime_api"
API_PREFIX = b"/v1.0"
TOKEN_HEADER = b"dapr-api-token"
JSON = b"application/json"
RESOLVED_CACHE_LIMIT = 4096
NESTED_REPLIES = 16
"""How many answers may be sent from inside one another's call (see ApiShared.replying)."""
HOP_HEADERS = (b"dapr-app-id", TOKEN_HEADER)
"""Not forwarded on an invocation: the target is chosen, and the token is this API's."""


@dataclass(frozen=True, slots=True)
class RuntimeApiConfig:
    internal: bool = False
    """Serves other sidecars, not the app: every request is an invocation of this app, sent
    by the caller's sidecar, which said who calls (`dapr-caller-app-id`)."""


def parse_config(node: Node, context: ParseContext) -> RuntimeApiConfig:
    node.only("internal")
    if context.runtime is None:
        node.problem("runtime_api needs a `runtime:` section at the top level")
    return RuntimeApiConfig(internal=node.flag("internal", False))


class ApiShared:
    """What every stream of one filter factory shares."""

    def __init__(
        self, runtime: Runtime, context: HttpFactoryContext, internal: bool = False
    ) -> None:
        self.runtime = runtime
        self.internal = internal
        config = runtime.config
        self.app_token = config.app_token.encode() if config.app_token else None
        self.api_access = None if internal else config.api_access
        token = config.api_token or os.environ.get("DAPR_API_TOKEN") or ""
        self.token = token.encode() or None
        self.max_body = config.max_request_body
        self.invoker = Invoker(runtime, context.cluster_manager)
        self.app_id = config.app_id.encode()
        self._resolved: dict[tuple[bytes, bytes], Resolved] = {}
        self.replying = 0
        """Answers being sent, one inside the other: an HTTP/1 connection manager starts the
        next pipelined exchange from the end of the last, so answers made at once nest; past
        NESTED_REPLIES the next one waits a loop turn, and the stack stays shallow."""

    def resolve(self, method: bytes, target: bytes) -> Resolved:
        """The request target parsed and matched to a handler, cached: clients repeat
        targets (the same state keys, topics and stores) far more often than not."""
        key = (method, target)
        resolved = self._resolved.get(key)
        if resolved is None:
            text = method.decode("latin-1")
            parts, query = split_target(target)
            resolved = Resolved(text, parts, query, paths.find(text, parts))
            if len(self._resolved) >= RESOLVED_CACHE_LIMIT:
                self._resolved.clear()
            self._resolved[key] = resolved
        return resolved

    def runs_inline(self, found: paths.Found, promise: str = "runs_inline") -> bool:
        """Whether the handler may start outside a task: what it waits on needs none (with
        `promise` "answers_at_once": it never waits at all). A name that is no component is
        answered at once, with Dapr's error."""
        if found.waits is not paths.COMPONENT:
            return found.waits is paths.NOTHING
        loaded = self.runtime.components.get(found.args[0])
        return loaded is None or getattr(loaded.instance, promise, False) is True


@dataclass(frozen=True, slots=True)
class Resolved:
    method: str
    parts: list[str]
    query: list[tuple[str, str]]
    found: paths.Found | None
    """None: no API path fits; `found.handler` None: not for this method."""


class RuntimeApiFilter(StreamFilter):
    __slots__ = ("_args", "_body", "_deferred", "_handler", "_inline", "_request", "_size",
                 "_task", "callbacks", "shared")  # fmt: skip

    def __init__(self, shared: ApiShared, callbacks: StreamCallbacks) -> None:
        self.shared = shared
        self.callbacks = callbacks
        self._request: ApiRequest | None = None
        self._handler: paths.Handler | None = None
        self._args: list[str] = []
        self._inline = False
        self._body: list[bytes] = []
        self._size = 0
        self._task: asyncio.Task[None] | None = None
        self._deferred: asyncio.Handle | None = None

    # -- decoding ------------------------------------------------------------------------------

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        if self.shared.internal:
            return self._from_sidecar(request, end_stream)
        path = request.path
        target = request.headers.get(b"dapr-app-id")
        if not path.startswith(API_PREFIX) and target is None:
            return CONTINUE  # not for the API: the listener's own routes
        shared = self.shared
        if shared.token is not None and not self._authorized(request):
            self._reply(ApiError(401, "ERR_UNAUTHORIZED", "invalid api token").answer())
            return STOP
        if shared.api_access is not None and not self._api_allowed(request, target is not None):
            return STOP
        if path.startswith(INVOKE_PREFIX):
            return self._invoke_by_path(request, end_stream)
        if target is not None:
            return self._invoke(request, target.decode("latin-1"), request.path, end_stream)
        resolved = shared.resolve(request.method, path)
        found = resolved.found
        if found is None or found.handler is None:
            status, code = (
                (404, "ERR_NOT_FOUND") if found is None else (405, "ERR_METHOD_NOT_ALLOWED")
            )
            what = "no API" if found is None else "method not allowed"
            message = f"{what}: {resolved.method} {path.decode('latin-1')}"
            self._reply(ApiError(status, code, message).answer())
            return STOP
        self._request = ApiRequest(resolved.method, resolved.parts, resolved.query, request.headers)
        self._handler, self._args = found.handler, found.args
        self._inline = shared.runs_inline(found)
        if end_stream:
            self._start()
        return STOP

    def _api_allowed(self, request: RequestHeaders, by_header: bool) -> bool:
        """The Configuration's API lists (403 past them, as Dapr answers)."""
        access = self.shared.api_access
        assert access is not None
        if by_header or request.path.startswith(INVOKE_PREFIX):
            name, version = "invoke", "v1.0"
        else:
            name, version = http_api(self.shared.resolve(request.method, request.path).parts)
        if access.allows("http", name, version):
            return True
        message = f"API {name} {version} is not allowed for this app (its Configuration)"
        self._reply(ApiError(403, "ERR_API_DENIED", message).answer())
        return False

    def _authorized(self, request: RequestHeaders) -> bool:
        given = request.headers.get(TOKEN_HEADER)
        if given is not None and hmac.compare_digest(given, self.shared.token or b""):
            return True
        found = self.shared.resolve(request.method, request.path).found
        return found is not None and found.handler in paths.UNAUTHENTICATED

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if self._handler is None:
            return CONTINUE  # an invocation (or not for the API): the body goes on
        if self._request is None or self._task is not None:
            return STOP  # answered already (413): the rest of the body is dropped
        self._size += len(data)
        if self._size > self.shared.max_body:
            self._request = None
            limit = self.shared.max_body
            error = ApiError(413, "ERR_REQUEST_TOO_LARGE", f"request body is over {limit} bytes")
            self._reply(error.answer())
            return STOP
        if data:
            self._body.append(data)
        if end_stream:
            self._start()
        return STOP

    def decode_trailers(self, trailers: Headers) -> FilterStatus:
        if self._handler is None:
            return CONTINUE
        if self._request is not None and self._task is None:
            self._start()
        return STOP

    def on_destroy(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._deferred is not None:
            self._deferred.cancel()

    # -- answering ---------------------------------------------------------------------------

    def _start(self) -> None:
        request = self._request
        assert request is not None and self._handler is not None
        if self._body:
            request.body = b"".join(self._body)
            self._body = []
        serving = self._serve(request, self._handler(self.shared.runtime, request, *self._args))
        if self._inline:
            self._task = run_inline(serving)
        else:
            self._task = asyncio.get_running_loop().create_task(serving)

    async def _serve(self, request: ApiRequest, handling: Awaitable[Answer]) -> None:
        try:
            answer = await handling
        except ApiError as error:
            answer = error.answer()
        except Exception:
            log.exception("runtime API %s /%s failed", request.method, "/".join(request.path))
            answer = ApiError(500, "ERR_INTERNAL", "internal error; see mecha's log").answer()
        self._reply(answer)

    def _reply(self, answer: Answer) -> None:
        shared = self.shared
        if shared.replying >= NESTED_REPLIES:
            self._deferred = asyncio.get_running_loop().call_soon(self._reply, answer)
            return
        shared.replying += 1
        try:
            self._send(answer)
        finally:
            shared.replying -= 1

    def _send(self, answer: Answer) -> None:
        callbacks = self.callbacks
        if callbacks.info.grpc:  # (a gRPC client hears the status as grpc-status)
            headers = Headers(answer.headers)
            if answer.body:
                headers.setdefault(b"content-type", answer.content_type)
            callbacks.send_local_reply(answer.status, answer.body, headers=headers)
            return
        body = answer.body
        head = ResponseHeaders(answer.status, answer.head(), end_stream=not body,
                               content_length=len(body))  # fmt: skip
        callbacks.encode_headers(head, not body)
        if body:
            callbacks.encode_data(body, True)

    # -- invocation --------------------------------------------------------------------------

    def _invoke_by_path(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        split = split_invoke_path(request.path)
        if split is None:
            self._reply(
                ApiError(
                    404,
                    "ERR_DIRECT_INVOKE",
                    "failed getting app id either from the URL path or the header dapr-app-id",
                ).answer()
            )
            return STOP
        return self._invoke(request, *split, end_stream)

    def _from_sidecar(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        """An invocation another sidecar sends this app: its access control applies to the
        caller that sidecar names; the caller stays the one it names."""
        headers, shared = request.headers, self.shared
        callee = headers.get(b"dapr-callee-app-id")
        if callee != shared.app_id:
            what = "no app id" if callee is None else f"app id {callee.decode('latin-1')!r}"
            message = f"{what} is not served here (this is {shared.runtime.config.app_id!r})"
            self._reply(ApiError(404, "ERR_DIRECT_INVOKE", message).answer())
            return STOP
        caller = headers.get(b"dapr-caller-app-id") or b""
        control = shared.runtime.config.access_control
        method, path = request.method.decode("latin-1"), request.path.decode("latin-1")
        if control is not None and not control.allows(caller.decode("latin-1"), path, method):
            message = (f"fail to invoke, id: {callee.decode('latin-1')}, err: access control "
                       f"policy has denied access to id: {caller.decode('latin-1')} operation: "
                       f"{path} verb: {method}")  # fmt: skip
            self._reply(ApiError(403, "ERR_DIRECT_INVOKE", message).answer())
            return STOP
        return self._invoke(request, callee.decode("latin-1"), request.path, end_stream, caller)

    def _invoke(
        self, request: RequestHeaders, app_id: str, path: bytes, end_stream: bool,
        caller: bytes | None = None,
    ) -> FilterStatus:  # fmt: skip
        """`caller`: the app id another sidecar named; None: this app calls."""
        headers = request.headers
        for name in HOP_HEADERS:
            headers.remove(name)
        headers.set(b"dapr-caller-app-id", self.shared.app_id if caller is None else caller)
        headers.set(b"dapr-callee-app-id", app_id.encode("latin-1"))
        if self.shared.app_token is not None and app_id == self.shared.runtime.config.app_id:
            headers.set(TOKEN_HEADER, self.shared.app_token)  # Dapr's APP_API_TOKEN
        request.path = path
        if calls_grpc_app(self.shared.runtime, app_id):
            return self._invoke_grpc_app(request, path, end_stream)
        invoker = self.shared.invoker
        route = invoker.route(app_id)
        if route is not None:
            self.callbacks.set_route(route)
            return CONTINUE
        if not invoker.resolvable(app_id):
            self._reply(
                ApiError(
                    500,
                    "ERR_DIRECT_INVOKE",
                    f"fail to invoke, id: {app_id}, err: no cluster serves app id {app_id!r}",
                ).answer()
            )
            return STOP
        self._task = asyncio.get_running_loop().create_task(self._resolve_then_continue(app_id))
        return STOP

    def _invoke_grpc_app(
        self, request: RequestHeaders, path: bytes, end_stream: bool
    ) -> FilterStatus:
        """Buffered like an API request; `_start` runs the OnInvoke call."""
        target = path.decode("latin-1")
        parts = target.partition("?")[0].split("/")
        method = request.method.decode("latin-1")
        self._request = ApiRequest(method, parts, [], request.headers)
        self._handler, self._args = invoke_grpc_app, [target]
        if end_stream:
            self._start()
        return STOP

    async def _resolve_then_continue(self, app_id: str) -> None:
        route = await self.shared.invoker.resolve(app_id)
        if route is None:
            self._reply(
                ApiError(
                    500,
                    "ERR_DIRECT_INVOKE",
                    f"fail to invoke, id: {app_id}, err: no address found (is it running?)",
                ).answer()
            )
            return
        self.callbacks.set_route(route)
        self.callbacks.continue_decoding()


class RuntimeApiFactory:
    """Makes a RuntimeApiFilter per stream; answers body-less reads without one."""

    __slots__ = ("_targets", "shared")

    def __init__(self, shared: ApiShared) -> None:
        self.shared = shared
        self._targets: dict[bytes, tuple[Resolved | None, object | None]] = {}
        """target -> (what it resolves to, when a GET of it may be answered at once, else
        None; the component instance that decided it, if one did): the decision costs a
        dict lookup for the targets clients repeat."""

    def _learn(self, target: bytes) -> tuple[Resolved | None, object | None]:
        shared = self.shared
        known: tuple[Resolved | None, object | None] = (None, None)
        if not shared.internal and target.startswith(API_PREFIX):
            resolved = shared.resolve(b"GET", target)
            found = resolved.found
            access = shared.api_access
            if (
                not target.startswith(INVOKE_PREFIX)
                and found is not None
                and found.handler is not None
                and shared.runs_inline(found, "answers_at_once")
                and (access is None or access.allows("http", *http_api(resolved.parts)))
            ):
                known = (resolved, self._component(found))
        if len(self._targets) >= RESOLVED_CACHE_LIMIT:
            self._targets.clear()
        self._targets[target] = known
        return known

    def _component(self, found: paths.Found) -> object | None:
        if found.waits is not paths.COMPONENT:
            return None
        loaded = self.shared.runtime.components.get(found.args[0])
        return None if loaded is None else loaded.instance

    def _still(self, known: tuple[Resolved | None, object | None]) -> bool:
        """The component that decided is still the one by that name (not reloaded)."""
        resolved, instance = known
        assert resolved is not None and resolved.found is not None
        return self._component(resolved.found) is instance

    def __call__(self, callbacks: StreamCallbacks) -> StreamFilter:
        return RuntimeApiFilter(self.shared, callbacks)

    def answer_at_once(self, head: RequestHead) -> LocalAnswer | None:
        """A GET whose handler runs to its end in one step (on components that say
        `answers_at_once`, or on nothing: metadata, health, errors), answered from its head.
        Anything else is left to the stream path, before its handler starts."""
        if head.method != b"GET":
            return None
        shared = self.shared
        target = head.target
        known = self._targets.get(target)
        if known is None or (known[1] is not None and not self._still(known)):
            known = self._learn(target)
        resolved = known[0]
        if resolved is None or b"\ndapr-app-id:" in head.lowered:
            return None
        if shared.token is not None:
            given = head.field(TOKEN_HEADER)
            if given is None or not hmac.compare_digest(given, shared.token):
                return None  # (the stream path answers 401, or serves a path with no token)
        found = resolved.found
        assert found is not None and found.handler is not None
        headers, _ = parse_fields(head.block, len(head.block))  # (read_request kept the limit)
        request = ApiRequest(resolved.method, resolved.parts, resolved.query, headers)
        handling = found.handler(shared.runtime, request, *found.args)
        try:
            handling.send(None)
        except StopIteration as done:
            answer: Answer = done.value
        except ApiError as error:
            answer = error.answer()
        except Exception:
            log.exception("runtime API GET %s failed", target.decode("latin-1"))
            answer = ApiError(500, "ERR_INTERNAL", "internal error; see mecha's log").answer()
        else:  # (a component that says `answers_at_once` waited: it must not)
            handling.close()
            log.error("runtime API GET %s waited on a component that answers at once",
                      target.decode("latin-1"))  # fmt: skip
            answer = ApiError(500, "ERR_INTERNAL", "internal error; see mecha's log").answer()
        return answer.status, answer.head().h1_block(), answer.body


def create_factory(config: RuntimeApiConfig, context: HttpFactoryContext) -> StreamFilterFactory:
    runtime = context.runtime
    assert runtime is not None, "parse_config refuses runtime_api without a runtime"
    return RuntimeApiFactory(ApiShared(runtime, context, config.internal))


SPEC = HttpFilterSpec(parse_config, create_factory)
