"""twemproxy compatibility without sockets: hashes, distributions, the config converter.

The integration test holds every hash and distribution to a real nutcracker; here are the
published check values, the arithmetic of ketama's weights, the server order, ejection,
and what the converter refuses.
"""

from __future__ import annotations

import time

import pytest
import yaml

from filters.network.redis_proxy import hashkit
from filters.network.redis_proxy.config import RedisProxyConfig
from filters.network.redis_proxy.distribution import Distribution, Ejection, Server, ketama_name
from filters.network.redis_proxy.twemproxy import TwemproxyError, convert, render
from proxy.config.parse import parse_config
from proxy.config.reader import ConfigError
from proxy.config.units import Address
from proxy.upstream.endpoint import Endpoint


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("fnv1a_32", b"", 0x811C9DC5),
        ("fnv1a_32", b"a", 0xE40C292C),
        ("fnv1_32", b"a", 0x050C5D7E),
        ("fnv1_64", b"a", 0xAF63BD4C8601B7BE & 0xFFFFFFFF),
        ("one_at_a_time", b"a", 0xCA2E9442),
        ("crc32", b"123456789", 0xCBF43926),
        ("crc32_twemproxy", b"123456789", (0xCBF43926 >> 16) & 0x7FFF),
        ("md5", b"", 0xD98C1DD4),
        ("jenkins", b"", 0xDEADBEFC),
    ],
)
def test_check_values(name: str, key: bytes, value: int) -> None:
    assert hashkit.HASHES[name](key) == value


def test_bytes_above_0x7f_are_signed_as_twemproxy_widens_them() -> None:
    # one_at_a_time adds each byte as a signed char: 0xff is -1, not 255.
    assert hashkit.one_at_a_time(b"\xff") != hashkit.one_at_a_time(b"\x7f")
    assert hashkit.fnv1a_32(b"\x80") == ((0x811C9DC5 ^ 0xFFFFFF80) * 16777619) & 0xFFFFFFFF


@pytest.mark.parametrize("name", sorted(hashkit.HASHES))
def test_every_hash_is_32_bits_for_any_length(name: str) -> None:
    for length in range(40):
        key = bytes(range(200, 200 + length % 50)) + b"k" * length
        assert 0 <= hashkit.HASHES[name](key[:length]) <= 0xFFFFFFFF


def endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(Address("127.0.0.1", 7000 + i)) for i in range(count)]


def test_ketama_points_follow_weights_as_twemproxy_rounds_them() -> None:
    eps = endpoints(3)
    ring = Distribution(
        "ketama", [Server(e, str(e.address), w) for e, w in zip(eps, (1, 2, 3), strict=True)]
    )
    owners = ring._owners
    # floor(w/6 * 40 * 3) groups of 4: 20, 40 and 60 groups.
    assert [owners.count(e) for e in eps] == [80, 160, 240]
    assert ring._points == sorted(ring._points)


def test_modula_counts_servers_in_name_order_by_weight() -> None:
    a, b = endpoints(2)
    ring = Distribution("modula", [Server(a, "zz", 1), Server(b, "b", 2)])
    assert [ring.choose_hash(h) for h in range(3)] == [b, b, a]  # "b" sorts first


def test_names_as_twemproxy_makes_them() -> None:
    assert ketama_name(Endpoint(Address("10.0.0.1", 11211)), None) == "10.0.0.1"
    assert ketama_name(Endpoint(Address("10.0.0.1", 6379)), None) == "10.0.0.1:6379"
    assert ketama_name(Endpoint(Address("10.0.0.1", 6379)), "server1") == "server1"


def test_a_failing_server_is_left_out_then_let_in_again() -> None:
    a, b = endpoints(2)
    failures = {a: 0, b: 0}
    ejection = Ejection(2, 0.05, failures.__getitem__, lambda e: failures.__setitem__(e, 0))
    ring = Distribution("modula", [Server(a, "a", 1), Server(b, "b", 1)], ejection)
    assert ring.choose_hash(0) is a
    failures[a] = 2
    assert ring.choose_hash(0) is b and ring.ejected == [a] and failures[a] == 0
    assert ring.choose_hash(1) is b
    time.sleep(0.06)
    assert ring.choose_hash(0) is a and ring.ejected == []


NUTCRACKER = """
beta:
  listen: 127.0.0.1:22122
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: modula
  redis: true
  redis_auth: s3cret
  timeout: 400
  backlog: 1024
  server_connections: 2
  servers:
   - 127.0.0.1:6379:1 one
   - 10.0.0.2:6380:3
"""


def test_the_converter_keeps_what_places_keys() -> None:
    config, notes = convert(NUTCRACKER)
    proxy = config["listeners"][0]["filters"][0]["config"]
    assert proxy == {
        "cluster": "beta", "hash": "fnv1a_64", "distribution": "modula", "hash_tag": "{}",
        "timeout": "400ms", "password": "s3cret", "upstream_auth": {"password": "s3cret"},
        "connections_per_endpoint": 2, "auto_eject_hosts": False, "server_failure_limit": 2,
        "server_retry_timeout": "30000ms",
    }  # fmt: skip
    assert config["clusters"][0]["endpoints"] == [
        {"address": "127.0.0.1:6379", "weight": 1, "name": "one"},
        {"address": "10.0.0.2:6380", "weight": 3},
    ]
    assert notes == ["pool 'beta': backlog is not carried over: the listen backlog is the "
                     "kernel's default"]  # fmt: skip
    assert yaml.safe_load(render(config, notes, "x.yml")) == config


def test_twemproxy_crc32_is_its_15_bit_variant() -> None:
    config, _ = convert(NUTCRACKER.replace("fnv1a_64", "crc32"))
    assert config["listeners"][0]["filters"][0]["config"]["hash"] == "crc32_twemproxy"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("redis: true", "redis: false"), "memcached pool"),
        (("redis: true", "redis: true\n  redis_db: 2"), "database 0 only"),
        (("hash: fnv1a_64", "hash: sha1"), "unknown hash"),
        (("distribution: modula", "distribution: vnode"), "unknown distribution"),
        (("10.0.0.2:6380:3", "10.0.0.2:6380"), "host:port:weight"),
        (("listen: 127.0.0.1:22122", "listen: /tmp/sock 0666"), "listen must be host:port"),
        (('hash_tag: "{}"', 'hash_tag: "{"'), "two characters"),
    ],
)
def test_the_converter_refuses_what_mecha_cannot_stand_in_for(
    change: tuple[str, str], message: str
) -> None:
    with pytest.raises(TwemproxyError, match=message):
        convert(NUTCRACKER.replace(*change))


def redis_document(proxy: dict[str, object], cluster: dict[str, object]) -> dict[str, object]:
    return {
        "listeners": [{"name": "r", "address": "127.0.0.1:0", "filters": [
            {"name": "redis_proxy", "config": {"cluster": "c", **proxy}}]}],
        "clusters": [{"name": "c", "endpoints": [
            {"address": "127.0.0.1:6379", "weight": 2, "name": "one"}], **cluster}],
    }  # fmt: skip


def test_the_config_takes_twemproxy_settings_and_endpoint_names() -> None:
    settings = {"hash": "murmur", "distribution": "ketama", "hash_tag": "[]",
                "auto_eject_hosts": True, "server_retry_timeout": "2s"}  # fmt: skip
    document = redis_document(settings, {})
    config = parse_config(document)
    proxy = config.listeners[0].filter_chains[0].filters[0].config
    assert isinstance(proxy, RedisProxyConfig)
    assert (proxy.hash, proxy.distribution, proxy.hash_tag) == ("murmur", "ketama", b"[]")
    assert proxy.auto_eject_hosts and proxy.server_retry_timeout == 2.0
    assert config.clusters[0].endpoints[0].name == "one"


@pytest.mark.parametrize(
    ("proxy", "cluster", "message"),
    [
        ({"distribution": "vnode"}, {}, "unknown value 'vnode'"),
        ({"hash_tag": "{"}, {"lb_policy": "ketama"}, "two characters"),
        ({"distribution": "modula"}, {"type": "strict_dns"}, "needs a static cluster"),
        ({}, {}, "must use lb_policy ketama or maglev"),
    ],
)
def test_the_config_refuses(
    proxy: dict[str, object], cluster: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(redis_document(proxy, cluster))
    assert any(message in str(problem) for problem in caught.value.problems), caught.value
