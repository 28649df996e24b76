"""Scalar grammars of config files: durations, byte sizes and host:port addresses."""

from __future__ import annotations

import time

import pytest

from proxy.config.units import Address, parse_address, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        ("0", 0.0),
        ("5", 5.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("5s", 5.0),
        ("1m", 60.0),
        ("2h", 7200.0),
        (" 10 s ", 10.0),
        ("0ms", 0.0),
    ],
)
def test_parse_duration_valid(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a duration"),
        (False, "expected a duration"),
        (-1, "cannot be negative"),
        (-0.5, "cannot be negative"),
        ("-5s", "expected a duration"),
        ("5d", "expected a duration"),
        ("5 sec", "expected a duration"),
        ("s", "expected a duration"),
        ("", "expected a duration"),
        (".5s", "expected a duration"),
        ("1e3", "expected a duration"),
        (None, "expected a duration"),
        ([5], "expected a duration"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        pytest.param(10**400, "finite", id="int-too-large-for-float"),
        pytest.param("1" * 400 + "s", "finite", id="overflows-to-inf"),
    ],
)
def test_parse_duration_invalid(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("100", 100),
        ("10B", 10),
        ("64KiB", 64 * 1024),
        ("64KB", 64 * 1024),
        ("64K", 64 * 1024),
        ("64k", 64 * 1024),
        ("1MiB", 1 << 20),
        ("16M", 16 << 20),
        ("2GiB", 2 << 30),
        (" 8 mib ", 8 << 20),
    ],
)
def test_parse_size_valid(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a size"),
        (-1, "cannot be negative"),
        (1.5, "expected a size"),
        ("1.5MiB", "expected a size"),
        ("-1K", "expected a size"),
        ("10TB", "expected a size"),
        ("KiB", "expected a size"),
        ("", "expected a size"),
        (None, "expected a size"),
    ],
)
def test_parse_size_invalid(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(value)


@pytest.mark.parametrize(
    ("text", "host", "port", "is_ip"),
    [
        ("127.0.0.1:80", "127.0.0.1", 80, True),
        ("0.0.0.0:0", "0.0.0.0", 0, True),
        (" 10.0.0.1:65535 ", "10.0.0.1", 65535, True),
        ("[::1]:80", "::1", 80, True),
        ("[2001:db8::1]:6379", "2001:db8::1", 6379, True),
        ("localhost:6379", "localhost", 6379, False),
        ("redis.internal:6379", "redis.internal", 6379, False),
        ("redis.internal.:6379", "redis.internal.", 6379, False),
        ("my-svc_1.ns.svc.cluster.local:8080", "my-svc_1.ns.svc.cluster.local", 8080, False),
        ("a:1", "a", 1, False),
    ],
)
def test_parse_address_valid(text: str, host: str, port: int, is_ip: bool) -> None:
    address = parse_address(text)
    assert address == Address(host, port)
    assert address.is_ip is is_ip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected host:port"),
        (80, "expected host:port"),
        (None, "expected host:port"),
        ("127.0.0.1", "expected host:port"),
        ("localhost", "expected host:port"),
        ("::1:80", "expected host:port"),
        ("[::1]", r"expected \[ipv6\]:port"),
        ("[::1]80", r"expected \[ipv6\]:port"),
        ("127.0.0.1:", "port must be"),
        ("127.0.0.1:65536", "port must be"),
        ("127.0.0.1:-1", "port must be"),
        ("127.0.0.1:http", "port must be"),
        ("127.0.0.1: 80", "port must be"),
        (":80", "neither an IP address nor a DNS name"),
        ("-bad.example:80", "neither an IP address nor a DNS name"),
        ("bad-.example:80", "neither an IP address nor a DNS name"),
        ("a..b:80", "neither an IP address nor a DNS name"),
        ("ex ample.com:80", "neither an IP address nor a DNS name"),
        pytest.param("a" * 64 + ".x:80", "neither an IP", id="label-over-63"),
        pytest.param("a" * 254 + ":80", "neither an IP", id="name-over-253"),
    ],
)
def test_parse_address_invalid(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_address(value)


def test_parse_address_rejects_long_bad_hostname_quickly() -> None:
    # The hostname pattern once backtracked exponentially (28 letters took ~17s).
    started = time.perf_counter()
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        parse_address("a" * 28 + "!:80")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("127.0.0.1", 80), "127.0.0.1:80"),
        (Address("::1", 80), "[::1]:80"),
        (Address("redis", 6379), "redis:6379"),
    ],
)
def test_address_str_round_trips(address: Address, text: str) -> None:
    assert str(address) == text
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["[redis]:80", "127.0.0.1:\u0661\u0662", "[127.0.0.1]:80"])
def test_parse_address_rejects_odd_forms(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)
