"""nutcracker.yml (twemproxy) -> the equivalent mecha config: `mecha twemproxy FILE`.

Each Redis pool becomes a listener with a redis_proxy filter and a cluster of its servers,
keeping what decides where a key lives (hash, distribution, hash_tag, server order,
weights and names) and the failure handling (auto_eject_hosts, server_failure_limit,
server_retry_timeout). What mecha does otherwise, or not at all, is reported as a note.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from filters.network.redis_proxy.hashkit import TWEMPROXY_NAMES

SERVER = re.compile(r"^(?P<host>\[[^\]]+\]|[^\s:]+|[^\s]+?):(?P<port>\d+):(?P<weight>\d+)"
                    r"(?:\s+(?P<name>\S+))?$")  # fmt: skip
IGNORED = {
    "backlog": "the listen backlog is the kernel's default",
    "preconnect": "mecha connects to a server on its first command",
    "client_connections": "set max_connections on the listener instead",
    "tcpkeepalive": "not configurable here",
    "redis_db": "",
}


class TwemproxyError(ValueError):
    """The file is not a nutcracker config mecha can stand in for."""


def convert(text: str) -> tuple[dict[str, Any], list[str]]:
    """The mecha config (as a dict) and notes on what did not carry over."""
    try:
        pools = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TwemproxyError(f"not YAML: {error}") from None
    if not isinstance(pools, dict) or not pools:
        raise TwemproxyError("expected a mapping of pool names to pools")
    config: dict[str, Any] = {"listeners": [], "clusters": []}
    notes: list[str] = []
    for name, pool in pools.items():
        if not isinstance(pool, dict):
            raise TwemproxyError(f"pool {name!r}: expected a mapping")
        listener, cluster = _pool(str(name), pool, notes)
        config["listeners"].append(listener)
        config["clusters"].append(cluster)
    return config, notes


def render(config: dict[str, Any], notes: list[str], source: str) -> str:
    head = [f"# mecha config converted from the twemproxy pools of {source}"]
    head += [f"# note: {note}" for note in notes]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=False)


def _pool(name: str, pool: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], ...]:
    if not pool.get("redis", False):
        raise TwemproxyError(f"pool {name!r} is a memcached pool (redis: true is not set); "
                             "mecha proxies Redis only")  # fmt: skip
    proxy: dict[str, Any] = {"cluster": name}
    hash_name = str(pool.get("hash", "fnv1a_64"))
    if hash_name not in TWEMPROXY_NAMES:
        raise TwemproxyError(f"pool {name!r}: unknown hash {hash_name!r}")
    proxy["hash"] = TWEMPROXY_NAMES[hash_name]
    proxy["distribution"] = str(pool.get("distribution", "ketama"))
    if proxy["distribution"] not in ("ketama", "modula", "random"):
        raise TwemproxyError(f"pool {name!r}: unknown distribution {proxy['distribution']!r}")
    tag = str(pool.get("hash_tag", ""))
    if len(tag) not in (0, 2):
        raise TwemproxyError(f"pool {name!r}: hash_tag must be two characters")
    proxy["hash_tag"] = tag
    if "timeout" in pool:
        proxy["timeout"] = f"{int(pool['timeout'])}ms"
    if "redis_auth" in pool:
        proxy["password"] = str(pool["redis_auth"])  # clients AUTH to twemproxy with it too
        proxy["upstream_auth"] = {"password": str(pool["redis_auth"])}
    if "server_connections" in pool:
        proxy["connections_per_endpoint"] = min(int(pool["server_connections"]), 64)
    proxy["auto_eject_hosts"] = bool(pool.get("auto_eject_hosts", False))
    proxy["server_failure_limit"] = int(pool.get("server_failure_limit", 2))
    proxy["server_retry_timeout"] = f"{int(pool.get('server_retry_timeout', 30000))}ms"
    _notes(name, pool, notes)
    listener = {"name": name, "address": _listen(name, pool),
                "filters": [{"name": "redis_proxy", "config": proxy}]}  # fmt: skip
    cluster = {"name": name, "endpoints": [_server(name, s) for s in pool.get("servers") or []]}
    if not cluster["endpoints"]:
        raise TwemproxyError(f"pool {name!r} has no servers")
    return listener, cluster


def _listen(name: str, pool: dict[str, Any]) -> str:
    listen = str(pool.get("listen", ""))
    if not listen or listen.startswith("/"):
        raise TwemproxyError(f"pool {name!r}: listen must be host:port (not {listen!r})")
    return listen


def _server(name: str, line: Any) -> dict[str, Any]:
    match = SERVER.match(str(line).strip())
    if match is None:
        raise TwemproxyError(f"pool {name!r}: server {line!r} is not host:port:weight [name]")
    endpoint: dict[str, Any] = {"address": f"{match['host']}:{match['port']}",
                                "weight": int(match["weight"])}  # fmt: skip
    if match["name"]:
        endpoint["name"] = match["name"]
    return endpoint


def _notes(name: str, pool: dict[str, Any], notes: list[str]) -> None:
    if int(pool.get("redis_db", 0) or 0):
        raise TwemproxyError(f"pool {name!r}: redis_db {pool['redis_db']}: mecha serves "
                             "database 0 only")  # fmt: skip
    for key, why in IGNORED.items():
        if key in pool and why:
            notes.append(f"pool {name!r}: {key} is not carried over: {why}")
