"""original_dst: where a connection was going before iptables redirected it to mecha.

Reads SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) from the accepted socket into
`metadata.original_destination`, so filter chains can match on the destination port and an
`original_dst` cluster forwards to it (Envoy's listener filter of the same name).

A connection without a usable original destination is closed (`on_missing: close`, the
default) or handed to the chains without one (`continue`), and is logged and counted on
`mecha_listener_filter_events_total{event=...}`:
- `original_dst_missing`: the kernel has no NAT entry for it (not redirected);
- `original_dst_loop`: the destination is this listener itself (a client addressed mecha's
  port directly, or traffic from mecha's own uid was redirected): forwarding would loop;
- `original_dst_error`: the socket option could not be read.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import time
from dataclasses import dataclass

from filters.listener.api import (
    CLOSE,
    CONTINUE,
    ConnectionMetadata,
    ListenerFilter,
    ListenerFilterFactory,
    ListenerFilterStatus,
    SocketOptions,
)
from filters.listener.registry import ListenerFilterSpec
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.config.units import Address

log = logging.getLogger("mecha.original_dst")

SO_ORIGINAL_DST = 80
"""linux/netfilter_ipv4.h, read at SOL_IP."""
IP6T_SO_ORIGINAL_DST = 80
"""linux/netfilter_ipv6/ip6_tables.h, read at SOL_IPV6."""
SOL_IP = getattr(socket, "SOL_IP", 0)
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)
_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28
_LOG_EVERY = 10.0
"""At most one warning per this many seconds per listener; the counters see every case."""


@dataclass(frozen=True, slots=True)
class OriginalDstConfig:
    close_on_missing: bool = True


def parse_config(node: Node, context: ParseContext) -> OriginalDstConfig:
    node.only("on_missing")
    return OriginalDstConfig(node.choice("on_missing", ("close", "continue"), "close") == "close")


def parse_sockaddr(raw: bytes) -> Address:
    """A `struct sockaddr_in` / `sockaddr_in6` as the kernel returns it (family in host
    byte order, port in network order); IPv4-mapped IPv6 addresses become IPv4."""
    if len(raw) < 4:
        raise ValueError(f"sockaddr too short ({len(raw)} bytes)")
    (family,) = struct.unpack("=H", raw[:2])
    (port,) = struct.unpack("!H", raw[2:4])
    if family == socket.AF_INET and len(raw) >= 8:
        return Address(socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if family == socket.AF_INET6 and len(raw) >= 24:
        ip = ipaddress.IPv6Address(raw[8:24])
        return Address(str(ip.ipv4_mapped or ip), port)
    raise ValueError(f"unexpected address family {family}")


def read_original_dst(sock: SocketOptions, local: Address | None) -> Address:
    """The pre-NAT destination of an accepted socket; OSError when there is none."""
    host = local.host if local is not None else ""
    if ":" not in host:
        return parse_sockaddr(sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN))
    try:
        return parse_sockaddr(sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6))
    except OSError:
        if not host.lower().startswith("::ffff:"):
            raise
    # An IPv4 client on a dual-stack socket: conntrack keeps the IPv4 tuple.
    return parse_sockaddr(sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN))


def is_own_address(destination: Address, local: Address | None) -> bool:
    """Would connecting to `destination` reach this listener again?"""
    if local is None:
        return False
    if destination == local:
        return True
    if destination.port != local.port:
        return False
    try:
        return ipaddress.ip_address(destination.host).is_loopback
    except ValueError:
        return False


class _Warnings:
    """Rate-limited warnings shared by one listener's filter instances."""

    __slots__ = ("_last", "_suppressed")

    def __init__(self) -> None:
        self._last = -_LOG_EVERY
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < _LOG_EVERY:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last warning)" if self._suppressed else ""
        log.warning(message + more, *args)
        self._last = now
        self._suppressed = 0


class OriginalDst(ListenerFilter):
    __slots__ = ("_config", "_warnings")

    def __init__(self, config: OriginalDstConfig, warnings: _Warnings) -> None:
        self._config = config
        self._warnings = warnings

    def on_accept(self, metadata: ConnectionMetadata) -> ListenerFilterStatus:
        if metadata.sock is None:
            return self._missing(metadata, "original_dst_error", "no socket to read")
        try:
            destination = read_original_dst(metadata.sock, metadata.local)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return self._missing(metadata, "original_dst_missing", "not redirected")
            return self._missing(metadata, "original_dst_error", exc.strerror or str(exc))
        except ValueError as exc:
            return self._missing(metadata, "original_dst_error", str(exc))
        if is_own_address(destination, metadata.local):
            return self._missing(
                metadata, "original_dst_loop", f"destination {destination} is this listener"
            )
        metadata.original_destination = destination
        return CONTINUE

    def _missing(
        self, metadata: ConnectionMetadata, event: str, reason: str
    ) -> ListenerFilterStatus:
        metadata.count(event)
        action = "closing" if self._config.close_on_missing else "continuing without it"
        self._warnings.warn(
            "original_dst: no original destination for %s on %s (%s); %s",
            metadata.remote, metadata.local, reason, action,
        )  # fmt: skip
        return CLOSE if self._config.close_on_missing else CONTINUE


def create_factory(config: OriginalDstConfig) -> ListenerFilterFactory:
    warnings = _Warnings()
    return lambda: OriginalDst(config, warnings)


SPEC = ListenerFilterSpec(parse_config, create_factory)
