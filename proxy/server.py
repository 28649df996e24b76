"""The server: builds clusters, listeners and admin from a Config, runs them, drains them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from prometheus_client.registry import Collector

from filters.listener import registry as listener_registry
from filters.network import registry
from filters.network.api import FilterFactory
from proxy import heap
from proxy.accesslog import AccessLogs
from proxy.admin import AdminViews, admin_servers
from proxy.config.model import Config, FilterChainConfig, FilterConfig, ListenerConfig
from proxy.filter_chain import ChainGeneration, FilterChain
from proxy.listener import Listener
from proxy.metrics import Metrics, ServerCollector
from proxy.overload import OverloadCollector, OverloadManager, OverloadState
from proxy.redact import redact
from proxy.reload import ReloadCollector, Reloader, config_path
from proxy.upstream.cluster import ClusterManager
from runtime.runtime import Runtime

log = logging.getLogger("mecha.server")


CLUSTER_WARMING_TIMEOUT = 10.0
T = TypeVar("T")


class Server:
    def __init__(self, config: Config, source: str | None = None) -> None:
        self.config = config
        self.source = source
        self.state = "initializing"
        self.loaded_at = time.time()
        self.version = config_version(config.document)
        self.metrics = Metrics()
        self.cluster_manager = ClusterManager(config.clusters)
        self.runtime = Runtime(config.runtime, self.cluster_manager) if config.runtime else None
        if self.runtime is not None:
            self.runtime.on_shutdown = lambda: self.request_stop("shutdown API")
        self.access_logs = AccessLogs()
        self.singletons: dict[str, object] = {}
        self.overload = (
            OverloadManager(config.overload, lambda: self.listeners) if config.overload else None
        )
        self.overload_state = self.overload.state if self.overload else OverloadState()
        self.listeners = [self._listener(lc) for lc in config.listeners]
        views = AdminViews(self)
        self.admin, self.health = admin_servers(config, views, views.ready)
        self.metrics.add(ServerCollector(lambda: self.listeners, lambda: self.cluster_manager))
        self.reloader = Reloader(self, config_path(source))
        self.metrics.add(ReloadCollector(self.reloader))
        if self.overload is not None:
            self.metrics.add(OverloadCollector(self.overload))
        self._stopping: asyncio.Event | None = None
        self.inherited: dict[str, socket.socket] = {}
        """Listening sockets a hot restart handed over, by listener name."""
        self.live = asyncio.Event()

    def _listener(self, config: ListenerConfig) -> Listener:
        generation = ChainGeneration()
        context = ListenerContext(self, config.name, generation)
        try:
            chains = [self._chain(chain, context) for chain in config.filter_chains]
        except BaseException:
            generation.retire()  # what the factories built so far had leased
            raise
        listener_filters = []
        for entry in config.listener_filters:
            spec = listener_registry.lookup(entry.name)
            assert spec is not None, "validated at parse time"
            listener_filters.append(spec.create_factory(entry.config))
        return Listener(config, chains, listener_filters, generation)

    def _chain(self, config: FilterChainConfig, context: ListenerContext) -> FilterChain:
        factories = self._factories(config.filters, context)
        return FilterChain(config.name, config.match, factories, config.tls)

    @staticmethod
    def _factories(
        filters: tuple[FilterConfig, ...], context: ListenerContext
    ) -> tuple[FilterFactory, ...]:
        factories = []
        for entry in filters:
            spec = registry.lookup(entry.name)
            assert spec is not None, "validated at parse time"
            factories.append(spec.create_factory(entry.config, context))
        return tuple(factories)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Admin and health first (so /ready answers while warming), then clusters, the
        runtime's components, then listeners."""
        try:
            self.access_logs.open()
            for endpoint in (self.admin, self.health):
                if endpoint is not None:
                    await endpoint.start()
            await self.cluster_manager.start(CLUSTER_WARMING_TIMEOUT)
            if self.runtime is not None:
                await self.runtime.start()
            for listener in self.listeners:
                await listener.start(self.inherited.pop(listener.name, None))
            if self.overload is not None:
                self.overload.start()
        except BaseException:
            await self.stop()
            raise
        self.state = "live"
        self.live.set()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.reloader.request, "SIGHUP")
        await self.start()
        heap.settle()
        self.reloader.watch()
        await self._stopping.wait()
        grace = self.config.drain_timeout
        await asyncio.gather(self.drain(grace), self.reloader.stop(grace))
        await self.stop()

    def request_stop(self, why: str = "request") -> None:
        log.info("%s: draining (up to %.0fs)", why, self.config.drain_timeout)
        if self._stopping is not None:
            self._stopping.set()

    async def drain(self, grace: float) -> None:
        """Stop accepting, let open connections finish, close what is left after `grace`."""
        self.state = "draining"
        for listener in self.listeners:
            listener.drain()
        waiting = asyncio.gather(*(listener.wait_empty() for listener in self.listeners))
        try:
            async with asyncio.timeout(grace):
                await waiting
        except TimeoutError:
            left = sum(len(listener.connections) for listener in self.listeners)
            log.warning("drain timeout: closing %d connections", left)
            for listener in self.listeners:
                listener.close_connections()

    async def stop(self) -> None:
        if self.overload is not None:
            self.overload.stop()
        await self.reloader.stop(0.0)  # what a reload still retires is cut short
        for listener in self.listeners:
            listener.stop_accepting()
        if self.runtime is not None:
            await self.runtime.stop()
        await self.cluster_manager.stop()
        for endpoint in (self.admin, self.health):
            if endpoint is not None:
                await endpoint.stop()
        self.access_logs.close()
        self.state = "stopped"

    # -- introspection ------------------------------------------------------------------------

    def config_dump(self) -> dict[str, Any]:
        """The config in force, its secrets redacted (tokens, passwords, URL userinfo, and
        whatever a `secretKeyRef` resolved to)."""
        loaded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))
        secrets = self.runtime.resolved_secrets if self.runtime is not None else ()
        dump = {
            "version": self.version,
            "loaded_at": loaded,
            "source": self.source,
            "config": self.config.document,
            "reload": self.reloader.status(),
        }
        redacted: dict[str, Any] = redact(dump, secrets)
        return redacted


class ListenerContext:
    """The FactoryContext filters of one listener are built with."""

    def __init__(self, server: Server, listener_name: str, generation: ChainGeneration) -> None:
        self._server = server
        self.listener_name = listener_name
        self._generation = generation

    @property
    def cluster_manager(self) -> ClusterManager:
        return self._server.cluster_manager

    @property
    def runtime(self) -> Runtime | None:
        return self._server.runtime

    @property
    def overload(self) -> OverloadState:
        return self._server.overload_state

    def access_log(self, path: str | None) -> Callable[[str], None]:
        return self._server.access_logs.sink(path or "stdout").write

    def add_collector(self, collector: Collector) -> None:
        self._server.metrics.add(collector)

    def singleton(self, key: str, make: Callable[[], T]) -> T:
        shared = self._server.singletons
        if key not in shared:
            shared[key] = make()
        return cast(T, shared[key])

    def on_retire(self, release: Callable[[], None]) -> None:
        self._generation.on_retire(release)


def config_version(document: Any) -> str:
    """A short, stable digest of the expanded config."""
    canonical = json.dumps(document, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:12]
