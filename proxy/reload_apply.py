"""Carrying out a ConfigDiff on a running Server: prepare, swap, retire.

`prepare` does everything that can fail — starts new clusters and components, binds new
listening sockets — and undoes it on failure, so a rejected reload leaves the running config
untouched. `swap` does not await: no connection or request sees half a config. A listener
whose address stays keeps its socket and only gets new filter chains (open connections keep
the filters they started with); one that moves, or is removed, stops accepting once its
successor accepts, and drains. What was replaced is retired in the background.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.config.model import ClusterConfig, Config, ListenerConfig
from proxy.config_diff import ConfigDiff
from proxy.listener import BindError, Listener, bind_socket
from proxy.upstream.cluster import Cluster
from runtime import reconfigure
from runtime.runtime import LoadedComponent, RuntimeStartError

if TYPE_CHECKING:
    from proxy.server import Server

log = logging.getLogger("mecha.reload")

CLUSTER_WARMING_TIMEOUT = 10.0
COMPONENT_GRACE = 10.0
"""At most this long (and at most drain_timeout) before a replaced component is closed."""
IDLE_POLL = 0.1


class ApplyError(Exception):
    """The new config validated but cannot be put in place (a port is taken, a component
    does not start); nothing was changed."""


@dataclass
class Prepared:
    config: Config
    diff: ConfigDiff
    clusters: dict[str, Cluster] = field(default_factory=dict)
    components: dict[str, LoadedComponent] = field(default_factory=dict)
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    """New listening sockets, by listener name (added listeners and moved ones)."""


@dataclass
class Swapped:
    """What the swap took out of service, to retire."""

    listeners: list[Listener] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    components: list[LoadedComponent] = field(default_factory=list)
    starting: list[tuple[Listener, socket.socket]] = field(default_factory=list)


# -- prepare --------------------------------------------------------------------------------


async def prepare(server: Server, config: Config, diff: ConfigDiff) -> Prepared:
    prepared = Prepared(config, diff)
    try:
        prepared.sockets = new_sockets(server, config, diff)
        wanted = set(diff.clusters.added) | set(diff.clusters.changed)
        prepared.clusters = await start_clusters(c for c in config.clusters if c.name in wanted)
        prepared.components = await _start_components(server, config, diff)
    except BaseException:
        await discard(prepared)
        raise
    return prepared


def new_sockets(server: Server, config: Config, diff: ConfigDiff) -> dict[str, socket.socket]:
    """Bind what added and moved listeners need; an address a leaving listener holds is
    shared with it (a dup of its socket), so nothing is refused in between."""
    running = {li.name: li for li in server.listeners}
    leaving = {running[n].config.address: running[n] for n in diff.listeners.removed}
    wanted = []
    for lc in config.listeners:
        current = running.get(lc.name)
        if current is None:
            wanted.append(lc)
        elif current.config.address != lc.address:
            leaving[current.config.address] = current
            wanted.append(lc)
    sockets: dict[str, socket.socket] = {}
    try:
        for lc in wanted:
            sockets[lc.name] = _listening_socket(lc, leaving.get(lc.address))
    except BindError as error:
        for sock in sockets.values():
            sock.close()
        raise ApplyError(str(error)) from None
    return sockets


def _listening_socket(config: ListenerConfig, leaving: Listener | None) -> socket.socket:
    held = leaving.socket if leaving is not None else None
    if held is not None and config.address.port and held.fileno() >= 0:
        return held.dup()
    owner = f"listener {config.name!r}"
    return bind_socket(config.address, owner, config.backlog, config.reuse_port)


async def start_clusters(configs: Iterable[ClusterConfig]) -> dict[str, Cluster]:
    """Warm new clusters (DNS, health checks) as start-up does; a slow one starts anyway."""
    clusters = {c.name: Cluster(c) for c in configs}
    try:
        async with asyncio.timeout(CLUSTER_WARMING_TIMEOUT):
            await asyncio.gather(*(c.start() for c in clusters.values()))
    except TimeoutError:
        log.warning("new clusters still warming after %.1fs; applying anyway",
                    CLUSTER_WARMING_TIMEOUT)  # fmt: skip
    return clusters


async def _start_components(
    server: Server, config: Config, diff: ConfigDiff
) -> dict[str, LoadedComponent]:
    if server.runtime is None or config.runtime is None:
        return {}
    wanted = set(diff.components.added) | set(diff.components.changed)
    specs = [s for s in config.runtime.components if s.name in wanted]
    try:
        return await reconfigure.start_components(server.runtime, specs)
    except RuntimeStartError as error:
        raise ApplyError(str(error)) from None


async def discard(prepared: Prepared) -> None:
    """Undo a prepare that will not be applied."""
    for sock in prepared.sockets.values():
        sock.close()
    await asyncio.gather(*(c.stop() for c in prepared.clusters.values()))
    await reconfigure.close_components(prepared.components.values())


# -- swap -----------------------------------------------------------------------------------


def swap(server: Server, prepared: Prepared) -> Swapped:
    """Put the prepared config in force. Does not await."""
    from proxy.server import config_version  # proxy.server imports this module

    swapped = Swapped()
    swapped.clusters = _swap_clusters(server, prepared)
    if server.runtime is not None:
        removed = prepared.diff.components.removed
        swapped.components = reconfigure.swap_components(
            server.runtime, prepared.components, removed
        )
    server.config = prepared.config
    server.version = config_version(prepared.config.document)
    server.loaded_at = time.time()
    _swap_listeners(server, prepared, swapped)
    return swapped


def _swap_clusters(server: Server, prepared: Prepared) -> list[Cluster]:
    clusters = server.cluster_manager.clusters
    replaced = [clusters.pop(name) for name in prepared.diff.clusters.removed if name in clusters]
    for name, cluster in prepared.clusters.items():
        previous = clusters.get(name)
        if previous is not None:
            replaced.append(previous)
        clusters[name] = cluster
    return replaced


def _swap_listeners(server: Server, prepared: Prepared, swapped: Swapped) -> None:
    diff = prepared.diff
    refresh = set(diff.listeners.changed) | set(diff.rebuilt)
    running = {li.name: li for li in server.listeners}
    result = []
    for lc in prepared.config.listeners:
        current = running.pop(lc.name, None)
        sock = prepared.sockets.get(lc.name)
        if sock is not None:
            stale = _filter_stats(server, lc.name)
            fresh = server._listener(lc)
            _forget_stats(server, stale)
            swapped.starting.append((fresh, sock))
            result.append(fresh)
            if current is not None:
                swapped.listeners.append(current)
        elif current is not None:
            if lc.name in refresh:
                rebuild_in_place(server, current, lc)
            result.append(current)
    for gone in running.values():
        _forget_stats(server, _filter_stats(server, gone.name))
        swapped.listeners.append(gone)
    server.listeners = result


def rebuild_in_place(server: Server, listener: Listener, config: ListenerConfig) -> None:
    """New filter chains on the same socket: new connections get them, open ones keep theirs."""
    for setting in ("backlog", "reuse_port"):
        if getattr(listener.config, setting) != getattr(config, setting):
            log.warning("listener %r: %s applies when the socket is next bound (restart)",
                        config.name, setting)  # fmt: skip
    stale = _filter_stats(server, config.name)
    fresh = server._listener(config)
    _forget_stats(server, stale)
    listener.reconfigure(config, fresh.chains, fresh.listener_filters, fresh.generation)


def _stats_lists(server: Server) -> Iterator[list[Any]]:
    """The per-listener stats lists filters share through singleton collectors."""
    for shared in server.singletons.values():
        stats = getattr(shared, "stats", None)
        if isinstance(stats, list):
            yield stats


def _filter_stats(server: Server, listener: str) -> list[Any]:
    return [
        entry
        for stats in _stats_lists(server)
        for entry in stats
        if getattr(entry, "listener", None) == listener
    ]


def _forget_stats(server: Server, entries: list[Any]) -> None:
    """Rebuilt filters count afresh; the old entries would repeat the same labels."""
    if not entries:
        return
    gone = {id(entry) for entry in entries}
    for stats in _stats_lists(server):
        stats[:] = [entry for entry in stats if id(entry) not in gone]


# -- after the swap -------------------------------------------------------------------------


async def start_listeners(swapped: Swapped) -> None:
    """New listeners accept first; the ones they replace stop accepting after."""
    for listener, sock in swapped.starting:
        await listener.start(sock)
    for listener in swapped.listeners:
        listener.stop_accepting()


async def retire_listener(listener: Listener, grace: float) -> None:
    """Stop accepting, let open connections wind down for up to `grace`, close the rest."""
    listener.drain()
    try:
        async with asyncio.timeout(grace):
            await listener.wait_empty()
    except TimeoutError:
        log.warning("listener %r: drain timeout, closing %d connections",
                    listener.name, len(listener.connections))  # fmt: skip
    finally:
        listener.close_connections()


async def retire_cluster(cluster: Cluster, grace: float) -> None:
    """Health checks and discovery stop now; requests in flight finish for up to `grace`."""
    try:
        await _stop_discovery(cluster)
        async with asyncio.timeout(grace):
            await _idle(cluster)
    except TimeoutError:
        log.warning("cluster %r: still in use after %.0fs (%d requests in flight); closing "
                    "its pools", cluster.name, grace, cluster.rq_active)  # fmt: skip
    finally:
        await cluster.stop()


async def _idle(cluster: Cluster) -> None:
    """Polled: requests end in the pools, and leases end with connections on old filter
    chains; none of them has a hook for this rare wait."""
    while True:
        if not cluster.busy:
            return
        await asyncio.sleep(IDLE_POLL)


async def _stop_discovery(cluster: Cluster) -> None:
    for part in (cluster.health_checker, cluster.dns, cluster.slot_map):
        if part is not None:
            await part.stop()
    if cluster.outlier is not None:
        cluster.outlier.stop()


def component_grace(config: Config) -> float:
    return min(config.drain_timeout, COMPONENT_GRACE)
