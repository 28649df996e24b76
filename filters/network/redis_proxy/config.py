"""Configuration of `redis_proxy` (a listener's terminal filter)."""

from __future__ import annotations

from dataclasses import dataclass

from filters.network.redis_proxy.commands import TABLE, Kind
from filters.network.redis_proxy.distribution import DISTRIBUTIONS
from filters.network.redis_proxy.hashkit import HASHES
from protocols.redis.limits import DEFAULT_LIMITS, RespLimits
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.upstream.lb import HASH_BALANCERS


@dataclass(frozen=True, slots=True)
class RedisProxyConfig:
    cluster: str
    password: str | None = None
    """Clients must AUTH with this (and `username`, if set) before anything else."""
    username: str | None = None
    upstream_username: str | None = None
    upstream_password: str | None = None
    upstream_resp3: bool = False
    connections_per_endpoint: int = 1
    timeout: float = 5.0
    hash: str = "crc32"
    allow: frozenset[bytes] | None = None
    deny: frozenset[bytes] = frozenset()
    slow_command_threshold: float | None = 0.1
    limits: RespLimits = DEFAULT_LIMITS
    idle_timeout: float | None = 3600.0
    """No bytes either way for this long (a partial command included): the client is closed."""
    client_output_buffer_limit: int = 64 << 20
    """Replies a client has not taken past the write buffer's high watermark; beyond, it is
    closed, as Redis closes a client past its client-output-buffer-limit (0: no limit)."""
    distribution: str | None = None
    """twemproxy's ketama / modula / random over the cluster's endpoints (names and weights
    as twemproxy reads them); None: the cluster's own ring (its lb_policy)."""
    hash_tag: bytes = b"{}"
    """The two characters around the part of a key that is hashed; empty: the whole key."""
    auto_eject_hosts: bool = False
    server_failure_limit: int = 2
    server_retry_timeout: float = 30.0


def parse_config(node: Node, context: ParseContext) -> RedisProxyConfig:
    node.only("cluster", "password", "username", "upstream_auth", "upstream_resp3",
              "connections_per_endpoint", "timeout", "hash", "commands",
              "slow_command_threshold", "limits", "idle_timeout", "distribution", "hash_tag",
              "auto_eject_hosts", "server_failure_limit", "server_retry_timeout",
              "client_output_buffer_limit")  # fmt: skip
    upstream = node.section("upstream_auth")
    upstream.only("username", "password")
    commands = node.section("commands")
    commands.only("allow", "deny")
    limits = node.section("limits")
    limits.only("max_bulk", "max_array", "max_inline")
    slow = node.duration("slow_command_threshold", 0.1)
    cluster = context.cluster(node)
    distribution = node.choice("distribution", DISTRIBUTIONS, "") or None
    if distribution is None:
        _check_sharding(node, context, cluster)
    else:
        _check_static(node, context, cluster)
    hash_tag = node.text("hash_tag", "{}")
    if len(hash_tag) not in (0, 2):
        node.problem("expected two characters (as {}) or an empty string", "hash_tag")
    return RedisProxyConfig(
        cluster=cluster,
        password=_optional(node, "password"),
        username=_optional(node, "username"),
        upstream_username=_optional(upstream, "username"),
        upstream_password=_optional(upstream, "password"),
        upstream_resp3=node.flag("upstream_resp3", False),
        connections_per_endpoint=node.integer("connections_per_endpoint", 1, minimum=1, maximum=64),
        timeout=node.duration("timeout", 5.0, positive=True),
        hash=node.choice("hash", tuple(HASHES), "crc32"),
        allow=_commands(commands, "allow") or None,
        deny=_commands(commands, "deny"),
        slow_command_threshold=slow or None,
        limits=RespLimits(
            max_bulk=limits.size("max_bulk", 512 << 20, minimum=1),
            max_array=limits.integer("max_array", 1 << 20, minimum=1),
            max_inline=limits.size("max_inline", 64 << 10, minimum=16),
        ),
        idle_timeout=node.duration("idle_timeout", 3600.0) or None,
        client_output_buffer_limit=node.size("client_output_buffer_limit", 64 << 20),
        distribution=distribution,
        hash_tag=hash_tag.encode(),
        auto_eject_hosts=node.flag("auto_eject_hosts", False),
        server_failure_limit=node.integer("server_failure_limit", 2, minimum=1),
        server_retry_timeout=node.duration("server_retry_timeout", 30.0, positive=True),
    )


def _check_sharding(node: Node, context: ParseContext, name: str) -> None:
    cluster = context.cluster_configs.get(name)
    if cluster is None or cluster.type == "redis_cluster":
        return
    if cluster.lb_policy not in HASH_BALANCERS:
        node.problem(
            f"cluster {name!r} must use lb_policy ketama or maglev (keys are sharded by "
            f"consistent hashing), or be of type redis_cluster; it uses {cluster.lb_policy}",
            "cluster",
        )


def _check_static(node: Node, context: ParseContext, name: str) -> None:
    """twemproxy's distributions are built from the listed endpoints, in their order."""
    cluster = context.cluster_configs.get(name)
    if cluster is not None and cluster.type != "static":
        node.problem(f"distribution needs a static cluster (its endpoints listed, as "
                     f"twemproxy's servers are); {name!r} is of type {cluster.type}",
                     "distribution")  # fmt: skip


def _optional(node: Node, key: str) -> str | None:
    return node.text(key) if node.has(key) else None


def _commands(node: Node, key: str) -> frozenset[bytes]:
    names = node.child(key).value or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        node.problem("expected a list of command names", key)
        return frozenset()
    result = frozenset(n.upper().encode() for n in names)
    for name in sorted(result):
        spec = TABLE.get(name)
        if spec is None or spec.kind is Kind.REFUSED:
            node.problem(f"{name.decode()} is not a command the proxy can forward", key)
    return result
