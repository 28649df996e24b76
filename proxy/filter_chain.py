"""A listener's filter chains, choosing one for a connection from its metadata, and when
what the chains' factories hold is given back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from filters.listener.api import ConnectionMetadata
from filters.network.api import FilterFactory
from proxy.config.model import FilterChainMatch
from proxy.config.tls import DownstreamTls

log = logging.getLogger("mecha.listener")


@dataclass(frozen=True, slots=True)
class FilterChain:
    name: str
    match: FilterChainMatch
    factories: tuple[FilterFactory, ...]
    tls: DownstreamTls | None = None
    """Terminate TLS (the handshake runs after the chain is chosen, before its filters)."""


class ChainGeneration:
    """One build of a listener's filter chains, and what their factories hold (pools leased
    from clusters). A reload that rebuilds the listener, or removes it, retires the build;
    what it holds is released once it is retired and its last connection has closed, so
    established connections keep working with the filters they started with."""

    __slots__ = ("_releases", "connections", "retired")

    def __init__(self) -> None:
        self.connections = 0
        self.retired = False
        self._releases: list[Callable[[], None]] = []

    def on_retire(self, release: Callable[[], None]) -> None:
        self._releases.append(release)

    def attach(self) -> None:
        """A connection started on one of these chains."""
        self.connections += 1

    def detach(self) -> None:
        self.connections -= 1
        if self.retired and not self.connections:
            self._release()

    def retire(self) -> None:
        """No new connection will use these chains."""
        if not self.retired:
            self.retired = True
            if not self.connections:
                self._release()

    def _release(self) -> None:
        releases, self._releases = self._releases, []
        for release in releases:
            try:
                release()
            except Exception:
                log.exception("releasing what a retired filter chain held failed")


def matches(match: FilterChainMatch, metadata: ConnectionMetadata) -> bool:
    if match.protocols is not None and metadata.protocol not in match.protocols:
        return False
    if match.alpn is not None and not match.alpn.intersection(metadata.alpn):
        return False
    if match.server_names is not None and not _name_matches(match.server_names, metadata):
        return False
    if match.destination_ports is not None:
        destination = metadata.original_destination or metadata.local
        if destination is None or destination.port not in match.destination_ports:
            return False
    return True


def _name_matches(patterns: tuple[str, ...], metadata: ConnectionMetadata) -> bool:
    name = metadata.server_name
    if name is None:
        return False
    for pattern in patterns:
        if pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def select(chains: Sequence[FilterChain], metadata: ConnectionMetadata) -> FilterChain | None:
    """The first chain with conditions that all hold, else the default chain, else None."""
    default = None
    for chain in chains:
        if chain.match.is_default:
            default = default or chain
        elif matches(chain.match, metadata):
            return chain
    return default
