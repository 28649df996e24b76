"""The admin endpoint: a small HTTP/1.1 server (h11) for operators and probes.

/ready, /metrics, /config_dump, /clusters, /listeners. Views only read state, so they
run inline on the event loop; the few that change something (POST /reload) answer only
peers on loopback or in `admin.allow_mutations_from`, since the admin may be reachable from
further away than its operator meant. The same server serves the health listener: a
read-only pair of probe paths, for an address the kubelet can reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import h11

from proxy.config.units import Address
from proxy.listener import bind_socket
from proxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from proxy.config.model import Config
    from proxy.server import Server
    from proxy.upstream.cluster import Cluster

log = logging.getLogger("mecha.admin")

_MAX_REQUEST = 64 * 1024
MUTATING = frozenset({"/reload"})
"""Views that change something: POST only, from loopback or `admin.allow_mutations_from`."""
Networks = tuple[IPv4Network | IPv6Network, ...]
_RELOAD_STATUS = {"applied": 200, "unchanged": 200, "rejected": 400}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        body = json.dumps(value, indent=2, default=str).encode() + b"\n"
        return cls(status, body, "application/json")


View = Callable[[dict[str, list[str]]], Response | Awaitable[Response]]
"""A view answers at once, or awaits (the workers' supervisor asks its workers)."""


class AdminViews:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.routes: dict[str, tuple[str, View]] = {
            "/": ("this list", self.index),
            "/ready": ("200 once serving, 503 while starting or draining", self.ready),
            "/metrics": ("Prometheus metrics", self.metrics),
            "/config_dump": ("the config in force, with its version", self.config_dump),
            "/clusters": ("endpoints with health (?format=json)", self.clusters),
            "/listeners": ("listeners and the addresses they are bound to", self.listeners),
            "/reload": ("POST: reload the config file now, as SIGHUP does", self.reload),
        }

    def index(self, query: dict[str, list[str]]) -> Response:
        lines = [f"{path:14} {text}" for path, (text, _) in self.routes.items()]
        return Response(200, ("\n".join(lines) + "\n").encode())

    def ready(self, query: dict[str, list[str]]) -> Response:
        state = self.server.state
        return Response(200 if state == "live" else 503, f"{state.upper()}\n".encode())

    def metrics(self, query: dict[str, list[str]]) -> Response:
        return Response(200, self.server.metrics.exposition(), METRICS_CONTENT_TYPE)

    def config_dump(self, query: dict[str, list[str]]) -> Response:
        return Response.json(self.server.config_dump())

    def listeners(self, query: dict[str, list[str]]) -> Response:
        return Response.json([
            {"name": li.name, "address": str(li.config.address),
             "bound": str(li.bound) if li.bound else None,
             "connections": len(li.connections)}
            for li in self.server.listeners
        ])  # fmt: skip

    async def reload(self, query: dict[str, list[str]]) -> Response:
        if self.server.state != "live":
            return Response(503, f"not reloading while {self.server.state}\n".encode())
        outcome = await self.server.reloader.reload("admin")
        return Response.json(outcome.as_dict(), _RELOAD_STATUS.get(outcome.result, 500))

    def clusters(self, query: dict[str, list[str]]) -> Response:
        described = [_describe_cluster(c) for c in self.server.cluster_manager]
        if query.get("format") == ["json"]:
            return Response.json({"clusters": described})
        # Envoy's text layout: cluster::endpoint::field::value
        lines = [
            f"{cluster['name']}::{endpoint['address']}::{key}::{value}"
            for cluster in described
            for endpoint in cluster["endpoints"]
            for key, value in endpoint.items()
            if key != "address"
        ]
        return Response(200, ("\n".join(lines) + "\n").encode())


def _describe_cluster(cluster: Cluster) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "type": cluster.config.type,
        "lb_policy": cluster.config.lb_policy,
        "endpoints": [
            {
                "address": str(e.address),
                "hostname": e.hostname,
                "health": e.health.value,
                "ejected": e.ejected,
                "weight": e.weight,
                "cx_active": e.cx_active,
                "cx_total": e.cx_total,
                "cx_connect_fail": e.cx_connect_fail,
                "rq_active": e.rq_active,
            }
            for e in cluster.endpoints
        ],
    }


class HealthViews:
    """The health listener's views: only what probes ask, nothing to read or change."""

    def __init__(self, ready: View) -> None:
        self.routes: dict[str, tuple[str, View]] = {
            "/healthz/ready": ("200 once serving, 503 while starting or draining", ready),
            "/healthz/live": ("200 while the process answers", self.live),
        }

    def live(self, query: dict[str, list[str]]) -> Response:
        return Response(200, b"LIVE\n")


class Routes(Protocol):
    """Any set of admin views: path -> (what it shows, view)."""

    routes: dict[str, tuple[str, View]]


def may_mutate(peer: object, allowed: Networks) -> bool:
    """A peer on loopback (or a unix socket: a worker's private admin), or an allowed one."""
    if not isinstance(peer, tuple):
        return True
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in network for network in allowed)


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, views: Routes, allowed: Networks = ()) -> None:
        self.views = views
        self.allowed = allowed
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
        self.transport: asyncio.Transport | None = None
        self.request: h11.Request | None = None
        self.pending: asyncio.Task[Response] | None = None
        self.peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        self._process()
        return False

    def _process(self) -> None:
        try:
            while self.transport is not None and not self.transport.is_closing():
                if self.pending is not None:
                    return
                event = self.h11.next_event()
                if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                    return
                if event is h11.PAUSED:
                    self.h11.start_next_cycle()
                    continue
                if isinstance(event, h11.Request):
                    self.request = event
                elif isinstance(event, h11.EndOfMessage) and self.request is not None:
                    self._respond(self.request)
        except h11.RemoteProtocolError as exc:
            self._send(Response(exc.error_status_hint, f"{exc}\n".encode()), head=False)
            self._close()

    def _respond(self, request: h11.Request) -> None:
        url = urlsplit(request.target.decode("ascii", "replace"))
        method = request.method.decode()
        route = self.views.routes.get(url.path)
        mutating = url.path in MUTATING
        if route is None:
            listed = "/" in self.views.routes  # the health listener keeps its paths to itself
            response = Response(404, b"not found; GET / lists the admin endpoints\n" if listed
                                else b"not found\n")  # fmt: skip
        elif method not in (("POST",) if mutating else ("GET", "HEAD")):
            response = Response(405, b"method not allowed\n")
        elif mutating and not may_mutate(self.peer, self.allowed):
            log.warning("admin: refused %s %s from %s", method, url.path, self.peer)
            response = Response(403, b"only from loopback or admin.allow_mutations_from\n")
        else:
            answer = route[1](parse_qs(url.query))
            if not isinstance(answer, Response):
                self._await(answer, head=method == "HEAD")
                return
            response = answer
        self._send(response, head=method == "HEAD")

    def _await(self, answer: Awaitable[Response], head: bool) -> None:
        async def wait() -> Response:
            return await answer

        def done(task: asyncio.Task[Response]) -> None:
            self.pending = None
            if self.transport is None or self.transport.is_closing():
                return
            error = task.exception() if not task.cancelled() else None
            if task.cancelled() or error is not None:
                log.warning("admin view failed: %r", error)
                self._send(Response(500, b"admin view failed\n"), head)
            else:
                self._send(task.result(), head)
            self._process()

        self.pending = asyncio.get_running_loop().create_task(wait(), name="admin-view")
        self.pending.add_done_callback(done)

    def _send(self, response: Response, head: bool) -> None:
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
        ]
        try:
            parts = [self.h11.send(h11.Response(status_code=response.status, headers=headers))]
            if response.body and not head:
                parts.append(self.h11.send(h11.Data(data=response.body)))
            parts.append(self.h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            self._close()
            return
        assert self.transport is not None
        self.transport.write(b"".join(part for part in parts if part))
        if self.h11.our_state is h11.MUST_CLOSE:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def admin_servers(
    config: Config, views: Routes, ready: View
) -> tuple[AdminServer | None, AdminServer | None]:
    """The admin endpoint and the read-only health listener a config asks for."""
    admin = config.admin
    health = config.health
    return (
        AdminServer(admin.address, views, admin.allow_mutations_from) if admin else None,
        AdminServer(health.address, HealthViews(ready), name="health listener") if health else None,
    )


class AdminServer:
    def __init__(self, address: Address, views: Routes, allow_mutations_from: Networks = (),
                 name: str = "admin") -> None:  # fmt: skip
        self.address = address
        self.views = views
        self.allowed = allow_mutations_from
        self.name = name
        self.bound: Address | None = None
        self.socket: socket.socket | None = None
        self._server: asyncio.Server | None = None

    async def start(self, inherited: socket.socket | None = None) -> None:
        """Bind the address, or serve on `inherited` (a hot restart's socket)."""
        loop = asyncio.get_running_loop()
        self.socket = sock = inherited or bind_socket(self.address, self.name)
        self._server = await loop.create_server(self._protocol, sock=sock)
        host, port = sock.getsockname()[:2]
        self.bound = Address(host, port)
        log.info("%s listening on %s", self.name, self.bound)

    def _protocol(self) -> _AdminProtocol:
        return _AdminProtocol(self.views, self.allowed)

    async def start_unix(self, path: str) -> None:
        """Serve on a unix socket (a worker's private admin, read by its supervisor)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._protocol, path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
