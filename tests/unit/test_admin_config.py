"""The admin's exposure settings: who may use the views that change something, and the
health listener's address."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from proxy.admin import may_mutate
from proxy.config.parse import parse_config
from proxy.config.reader import ConfigError
from proxy.config.units import Address
from proxy.config_diff import restart_needed


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return [str(problem) for problem in caught.value.problems]


def test_mutations_from_takes_addresses_and_cidrs() -> None:
    config = parse_config({"admin": {"allow_mutations_from": ["10.0.0.0/8", "fd00::1"]}})
    assert config.admin is not None
    assert config.admin.allow_mutations_from == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::1/128"),
    )  # fmt: skip
    assert problems({"admin": {"allow_mutations_from": ["10.0.0.0/8", "nope"]}}) == [
        "admin.allow_mutations_from[1]: expected an address or a CIDR, got 'nope'"
    ]


def test_health_listener_defaults_and_clashes() -> None:
    assert parse_config({}).health is None
    health = parse_config({"health": {}}).health
    assert health is not None and health.address == Address("0.0.0.0", 15021)
    assert problems({"admin": {"address": "127.0.0.1:9000"},
                     "health": {"address": "127.0.0.1:9000"}}) == [
        "health.address: 127.0.0.1:9000 is already used by the admin"
    ]  # fmt: skip
    listener = {"name": "web", "address": "0.0.0.0:15021",
                "filters": [{"name": "tcp_proxy", "config": {"cluster": "c"}}]}  # fmt: skip
    clusters = [{"name": "c", "endpoints": ["127.0.0.1:1"]}]
    assert problems({"health": {}, "listeners": [listener], "clusters": clusters}) == [
        "listeners[0].address: 0.0.0.0:15021 is already used by the health listener"
    ]


def test_a_changed_health_listener_waits_for_a_restart() -> None:
    before = parse_config({"health": {"address": "0.0.0.0:15021"}})
    after = parse_config({"health": {"address": "0.0.0.0:15022"}})
    assert restart_needed(before, after) == ("health",)


ALLOWED = (ipaddress.ip_network("10.1.0.0/16"),)


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        ("", True),  # a unix socket: a worker's private admin, asked by its supervisor
        (("10.1.2.3", 5000), True),
        (("::ffff:10.1.2.3", 5000, 0, 0), True),
        (("10.2.0.1", 5000), False),
        (("192.0.2.7", 5000), False),
        (("fe80::1%eth0", 5000, 0, 2), False),
        (("not an address", 1), False),
    ],
)
def test_who_may_use_the_views_that_change_something(peer: object, allowed: bool) -> None:
    assert may_mutate(peer, ALLOWED) is allowed
