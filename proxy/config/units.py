"""Scalar value grammars used in config files: durations, byte sizes, addresses."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string such as '250ms', '5s', '1m', '2h'."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s or 250ms")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 5s or 250ms, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or a string such as '64KiB', '1MB', '16M' (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64KiB or 1MiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        unit = (match.group(2) or "").upper()[:1]
        return int(match.group(1)) * _SIZE_UNITS[unit]
    raise ValueError(f"expected a size such as 64KiB or 1MiB, got {value!r}")


@dataclass(frozen=True, slots=True)
class Address:
    """host:port where host is an IP literal or a DNS name."""

    host: str
    port: int

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
# Dots between labels are mandatory: an optional separator made matching exponential.
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


def parse_address(value: object) -> Address:
    """'127.0.0.1:80', '[::1]:80' or 'redis.internal:6379'."""
    if not isinstance(value, str):
        raise ValueError(f"expected host:port, got {value!r}")
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or ":" not in host:
            raise ValueError(f"expected [ipv6]:port, got {value!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"expected host:port, got {value!r}")
    if not _PORT.fullmatch(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be 0-65535 in {value!r}")
    address = Address(host, int(port))
    if not address.is_ip and not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
    return address
