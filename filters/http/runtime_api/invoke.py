"""Service invocation: `/v1.0/invoke/{app id}/method/{method}` and the `dapr-app-id` header.

The request is not answered here: it gets a route to the cluster that serves the app id and
goes on to the router, so invocations have the mesh's load balancing, health checks,
outlier detection, timeouts and retries, and stream their bodies. An app id is served by:
this app's own id -> the app channel cluster; `runtime.invoke.clusters[id]`; a cluster
named like the id; else, with `runtime.invoke.registry`, the sidecars the machine's registry
lists for it (their internal listeners, as Dapr's SQLite resolver finds them), or with
`runtime.invoke.dns`, a DNS cluster made on first use.

Except for this app when it speaks gRPC (`app_protocol: grpc`): the filter buffers the body
and `invoke_grpc_app` calls the app's OnInvoke, as Dapr does; the app's status becomes an
HTTP status with Dapr's table and an ERR_DIRECT_INVOKE body.
"""

from __future__ import annotations

import asyncio
import logging

from dapr.proto.common.v1 import common_pb2
from google.protobuf import any_pb2

from filters.http.route import RetryPolicy, Route, RouteAction, RouteMatch
from filters.http.runtime_api.base import Answer, ApiError, ApiRequest
from protocols.grpc.status import http_status
from protocols.http.headers import Headers
from proxy.config.model import ClusterConfig, EndpointConfig
from proxy.config.units import Address, parse_address
from proxy.upstream.cluster import ClusterManager
from runtime.app_callback import on_invoke
from runtime.app_channel import AppCallError, AppUnavailable, NoAnswer
from runtime.local_registry import Registry, RegistryError
from runtime.runtime import APP_CLUSTER, Runtime

log = logging.getLogger("mecha.invoke")

INVOKE_PREFIX = b"/v1.0/invoke/"
NEVER_SENT = frozenset({"connect-failure", "refused-stream"})
DNS_CLUSTER = "invoke-dns:{}"
REGISTRY_CLUSTER = "invoke-local:{}"
REGISTRY_ROUTE = "invoke-local:"
REFRESH = 2.0
"""Seconds between two reads of the registry for an app id that is being called."""
OCTET_STREAM = b"application/octet-stream"


def split_invoke_path(path: bytes) -> tuple[str, bytes] | None:
    """(app id, the app's own path) of `/v1.0/invoke/{id}/method/{method}`, None if malformed."""
    app_id, _, rest = path[len(INVOKE_PREFIX) :].partition(b"/")
    if not app_id or not rest.startswith(b"method/"):
        return None
    method = rest[7:]
    if not method or method.startswith((b"?", b"#")):
        return None
    return app_id.decode("latin-1"), b"/" + method


class Invoker:
    """App id -> the route that reaches it; one per runtime API filter factory."""

    def __init__(self, runtime: Runtime, clusters: ClusterManager) -> None:
        self.runtime = runtime
        self.clusters = clusters
        config = runtime.config
        self._retry = (
            RetryPolicy(NEVER_SENT, num_retries=config.invoke_retries)
            if config.invoke_retries
            else None
        )
        self._routes: dict[str, Route] = {}
        self._resolving: dict[str, asyncio.Task[str | None]] = {}
        self._registry = Registry(config.invoke_registry) if config.invoke_registry else None
        self._refreshed: dict[str, float] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def route(self, app_id: str) -> Route | None:
        """The route for `app_id` when its cluster exists now."""
        route = self._routes.get(app_id)
        if route is None:
            cluster = self._cluster_name(app_id)
            if cluster is None or cluster not in self.clusters.clusters:
                return None
            route = self._routes[app_id] = self._make_route(app_id, cluster)
        if self._registry is not None and route.name.startswith(REGISTRY_ROUTE):
            self._refresh_soon(app_id, REGISTRY_CLUSTER.format(app_id))
        return route

    def resolvable(self, app_id: str) -> bool:
        config = self.runtime.config
        if config.invoke_registry is not None:
            return bool(app_id) and "." not in app_id  # Dapr's rule for app ids
        return config.invoke_dns is not None and _valid_host_label(app_id)

    async def resolve(self, app_id: str) -> Route | None:
        """Make (once) and warm the DNS cluster of `app_id`; None when DNS finds nothing."""
        task = self._resolving.get(app_id)
        if task is None:
            make = self._registry_cluster if self._registry else self._dns_cluster
            task = asyncio.get_running_loop().create_task(make(app_id), name=f"resolve:{app_id}")
            self._resolving[app_id] = task
        name = await asyncio.shield(task)
        if name is None:
            self._resolving.pop(app_id, None)  # try again next time
            return None
        route = self._routes[app_id] = self._make_route(app_id, name)
        return route

    async def _dns_cluster(self, app_id: str) -> str | None:
        template = self.runtime.config.invoke_dns
        assert template is not None
        host, _, port = template.replace("{app_id}", app_id).rpartition(":")
        name = DNS_CLUSTER.format(app_id)
        endpoint = EndpointConfig(Address(host, int(port)))
        cluster = self.clusters.add(ClusterConfig(name, (endpoint,), type="strict_dns"))
        await cluster.start()
        if not cluster.endpoints:
            log.warning("invoke: %s:%s (app id %r) resolves to nothing", host, port, app_id)
            await cluster.stop()
            del self.clusters.clusters[name]
            return None
        return name

    async def _registry_cluster(self, app_id: str) -> str | None:
        """The sidecars the machine's registry lists for `app_id`, as a cluster kept in step
        with the registry while it is used (see `route`)."""
        addresses = await self._registered(app_id)
        if not addresses:
            log.warning("invoke: app id %r is not running on this machine", app_id)
            return None
        name = REGISTRY_CLUSTER.format(app_id)
        endpoints = tuple(EndpointConfig(address) for address in addresses)
        self.clusters.add(ClusterConfig(name, endpoints, protocol="http2", connect_timeout=2.0))
        self._refreshed[app_id] = asyncio.get_running_loop().time()
        return name

    async def _registered(self, app_id: str) -> list[Address]:
        assert self._registry is not None
        try:
            found = await asyncio.to_thread(self._registry.instances, app_id)
        except RegistryError as error:
            log.warning("invoke: %s", error)
            return []
        return [parse_address(i.internal_address) for i in found if i.internal_address]

    def _refresh_soon(self, app_id: str, cluster: str) -> None:
        """Members come and go: the registry is read again at most every REFRESH seconds."""
        now = asyncio.get_running_loop().time()
        if now - self._refreshed.get(app_id, now) < REFRESH or app_id in self._refreshing:
            return
        self._refreshed[app_id] = now
        task = asyncio.get_running_loop().create_task(self._refresh(app_id, cluster))
        self._refreshing[app_id] = task
        task.add_done_callback(lambda _: self._refreshing.pop(app_id, None))

    async def _refresh(self, app_id: str, name: str) -> None:
        cluster = self.clusters.clusters.get(name)
        if cluster is not None:
            cluster.set_endpoints((address, 1, None) for address in await self._registered(app_id))

    def _cluster_name(self, app_id: str) -> str | None:
        config = self.runtime.config
        if app_id == config.app_id:
            return APP_CLUSTER if self.runtime.app is not None else None
        if app_id in config.invoke_clusters:
            return config.invoke_clusters[app_id]
        if app_id in self.clusters.clusters:
            return app_id
        for made in (DNS_CLUSTER, REGISTRY_CLUSTER):  # by another API's Invoker (HTTP, gRPC)
            name = made.format(app_id)
            if name in self.clusters.clusters:
                return name
        return None

    def _make_route(self, app_id: str, cluster: str) -> Route:
        action = RouteAction(
            (cluster,), timeout=self.runtime.config.invoke_timeout, retry_policy=self._retry
        )
        local = cluster == REGISTRY_CLUSTER.format(app_id)
        return Route(f"{REGISTRY_ROUTE if local else 'invoke:'}{app_id}", RouteMatch(prefix=b"/"),
                     action)  # fmt: skip


def _valid_host_label(app_id: str) -> bool:
    labels = app_id.split(".")
    return all(0 < len(label) <= 63 and label.replace("-", "").isalnum() for label in labels)


# -- this app, when it speaks gRPC -------------------------------------------------------------


def calls_grpc_app(runtime: Runtime, app_id: str) -> bool:
    config = runtime.config
    return app_id == config.app_id and config.app_protocol == "grpc" and runtime.app is not None


async def invoke_grpc_app(runtime: Runtime, request: ApiRequest, target: str) -> Answer:
    """The runtime API handler of an invocation of this app, `target` its method path (and
    query string): OnInvoke with the buffered body, the answer's data as the body."""
    app, app_id = runtime.app, runtime.config.app_id
    assert app is not None, "only routed here when the app channel exists"
    try:
        invoked = await on_invoke(
            app, invoke_request(request, target), request.headers, app_id,
            runtime.config.invoke_timeout, request.header(b"dapr-caller-app-id"),
        )  # fmt: skip
    except AppCallError as error:
        raise _invoke_error(http_status(error.code), app_id, str(error)) from None
    except NoAnswer as error:
        raise _invoke_error(504, app_id, str(error)) from None
    except AppUnavailable as error:
        raise _invoke_error(500, app_id, str(error)) from None
    response = invoked.response
    return Answer(200, response.data.value, Headers(invoked.metadata),
                  _content_type(response.content_type))  # fmt: skip


def invoke_request(request: ApiRequest, target: str) -> common_pb2.InvokeRequest:
    """InvokeRequest of an HTTP invocation: the method path, verb, query string, body."""
    method, _, query = target.partition("?")
    return common_pb2.InvokeRequest(
        method=method.lstrip("/"),
        data=any_pb2.Any(value=request.body),
        content_type=request.header(b"content-type") or "",
        http_extension=common_pb2.HTTPExtension(verb=_verb(request.method), querystring=query),
    )


def _verb(method: str) -> common_pb2.HTTPExtension.Verb.ValueType:
    try:
        return common_pb2.HTTPExtension.Verb.Value(method)
    except ValueError:  # a method Dapr's enum does not name
        return common_pb2.HTTPExtension.NONE


def _invoke_error(status: int, app_id: str, why: str) -> ApiError:
    return ApiError(status, "ERR_DIRECT_INVOKE", f"fail to invoke, id: {app_id}, err: {why}")


def _content_type(value: str) -> bytes:
    """The app's content type as a header value; one that cannot be (control characters,
    not ASCII) or none at all: octet-stream."""
    if not value or not value.isascii() or not value.isprintable():
        return OCTET_STREAM
    return value.encode()
