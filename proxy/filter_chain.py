"""A listener's filter chains, and choosing one for a connection from its metadata."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from filters.listener.api import ConnectionMetadata
from filters.network.api import FilterFactory
from proxy.config.model import FilterChainMatch
from proxy.config.tls import DownstreamTls


@dataclass(frozen=True, slots=True)
class FilterChain:
    name: str
    match: FilterChainMatch
    factories: tuple[FilterFactory, ...]
    tls: DownstreamTls | None = None
    """Terminate TLS (the handshake runs after the chain is chosen, before its filters)."""


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
