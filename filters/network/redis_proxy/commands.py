"""What the proxy knows about Redis commands: where the keys are, and what it cannot do.

A command is one of:
- LOCAL: answered by the proxy (PING, ECHO, SELECT 0, AUTH, HELLO, CLIENT ..., QUIT, INFO);
- ANY: sent to any one shard (COMMAND, TIME, ...), the answer being the same everywhere;
- keyed: its keys sit at (first, last, step) like Redis's own key specs; all keys must
  live on one shard, except for the commands the proxy splits and merges (SPLIT);
- REFUSED: cannot work across shards or on a shared connection; answered with -ERR and
  the reason, never forwarded.
Commands that are in none of the tables are refused as unknown: forwarding a command
whose keys the proxy cannot see could send it to the wrong shard.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(enum.Enum):
    LOCAL = "local"
    ANY = "any"
    KEYED = "keyed"
    SPLIT = "split"
    EVAL = "eval"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Spec:
    name: bytes
    """The canonical (upper-case) name, also the stats label."""
    kind: Kind
    first: int = 1
    last: int = 1
    """-1: every argument from `first` to the end."""
    step: int = 1
    reason: str = ""
    single_key: bool = field(default=False, init=False)
    """The common case, routed without slicing: exactly one key, at index 1."""

    def __post_init__(self) -> None:
        single = self.kind is Kind.KEYED and self.first == self.last == 1
        object.__setattr__(self, "single_key", single)


LOCAL = ("PING", "ECHO", "SELECT", "AUTH", "HELLO", "CLIENT", "QUIT", "INFO", "RESET")
ANY = ("COMMAND", "TIME", "LOLWUT")

SINGLE_KEY = [
    "GET",
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "APPEND",
    "STRLEN",
    "SETRANGE",
    "GETRANGE",
    "SUBSTR",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "EXPIRETIME",
    "PEXPIRETIME",
    "TTL",
    "PTTL",
    "PERSIST",
    "TYPE",
    "DUMP",
    "RESTORE",
    "SORT",
    "SORT_RO",
    "GETBIT",
    "SETBIT",
    "BITCOUNT",
    "BITPOS",
    "BITFIELD",
    "BITFIELD_RO",
    "HSET",
    "HSETNX",
    "HGET",
    "HMSET",
    "HMGET",
    "HDEL",
    "HLEN",
    "HSTRLEN",
    "HEXISTS",
    "HKEYS",
    "HVALS",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HSCAN",
    "HRANDFIELD",
    "LPUSH",
    "LPUSHX",
    "RPUSH",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LLEN",
    "LINDEX",
    "LSET",
    "LRANGE",
    "LTRIM",
    "LREM",
    "LINSERT",
    "LPOS",
    "SADD",
    "SREM",
    "SCARD",
    "SISMEMBER",
    "SMISMEMBER",
    "SMEMBERS",
    "SRANDMEMBER",
    "SPOP",
    "SSCAN",
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZCARD",
    "ZCOUNT",
    "ZSCORE",
    "ZMSCORE",
    "ZRANK",
    "ZREVRANK",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGEBYLEX",
    "ZLEXCOUNT",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "ZSCAN",
    "ZRANDMEMBER",
    "PFADD",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS_RO",
    "GEORADIUSBYMEMBER_RO",
    "GEOSEARCH",
    "XADD",
    "XLEN",
    "XRANGE",
    "XREVRANGE",
    "XDEL",
    "XTRIM",
    "XACK",
    "XCLAIM",
    "XAUTOCLAIM",
    "XPENDING",
    "XSETID",
]

SAME_SHARD = {
    # all keys must hash to one shard
    "RENAME": (1, 2, 1), "RENAMENX": (1, 2, 1), "COPY": (1, 2, 1), "SMOVE": (1, 2, 1),
    "RPOPLPUSH": (1, 2, 1), "LMOVE": (1, 2, 1), "LCS": (1, 2, 1),
    "SINTER": (1, -1, 1), "SUNION": (1, -1, 1), "SDIFF": (1, -1, 1),
    "SINTERSTORE": (1, -1, 1), "SUNIONSTORE": (1, -1, 1), "SDIFFSTORE": (1, -1, 1),
    "PFCOUNT": (1, -1, 1), "PFMERGE": (1, -1, 1), "MSETNX": (1, -1, 2),
    "ZRANGESTORE": (1, 2, 1), "GEOSEARCHSTORE": (1, 2, 1),
}  # fmt: skip
SPLIT = {"MGET": (1, -1, 1), "MSET": (1, -1, 2), "DEL": (1, -1, 1), "UNLINK": (1, -1, 1),
         "EXISTS": (1, -1, 1), "TOUCH": (1, -1, 1)}  # fmt: skip
EVAL = ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO")

_SHARED = "it would block or change the shared upstream connection"
_CROSS = "it spans every shard"
REFUSED = {
    **dict.fromkeys(("MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"),
                    "transactions need one connection and one shard"),
    **dict.fromkeys(("BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
                     "BZMPOP", "XREAD", "XREADGROUP", "WAIT", "WAITAOF"), _SHARED),
    **dict.fromkeys(("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                     "SUNSUBSCRIBE", "MONITOR"), _SHARED),
    **dict.fromkeys(("KEYS", "SCAN", "FLUSHALL", "FLUSHDB", "DBSIZE", "RANDOMKEY", "SWAPDB",
                     "PUBLISH", "SPUBLISH", "SCRIPT", "FUNCTION"), _CROSS),
    **dict.fromkeys(("CONFIG", "SAVE", "BGSAVE", "BGREWRITEAOF", "SHUTDOWN", "DEBUG", "SLAVEOF",
                     "REPLICAOF", "CLUSTER", "MIGRATE", "MOVE", "OBJECT", "MEMORY", "LATENCY",
                     "SLOWLOG", "ACL", "FAILOVER", "MODULE", "SYNC", "PSYNC", "LASTSAVE",
                     "READONLY", "READWRITE", "ASKING"), "it is an administrative command"),
}  # fmt: skip


def _table() -> dict[bytes, Spec]:
    specs: list[Spec] = [
        *(Spec(n.encode(), Kind.LOCAL) for n in LOCAL),
        *(Spec(n.encode(), Kind.ANY) for n in ANY),
        *(Spec(n.encode(), Kind.KEYED) for n in SINGLE_KEY),
        *(Spec(n.encode(), Kind.KEYED, *keys) for n, keys in SAME_SHARD.items()),
        *(Spec(n.encode(), Kind.SPLIT, *keys) for n, keys in SPLIT.items()),
        *(Spec(n.encode(), Kind.EVAL) for n in EVAL),
        *(Spec(n.encode(), Kind.REFUSED, reason=why) for n, why in REFUSED.items()),
    ]
    table = {spec.name: spec for spec in specs}
    # Clients usually send lower case: index that spelling too, to skip upper() per command.
    table.update({spec.name.lower(): spec for spec in specs})
    return table


TABLE = _table()


def lookup(name: bytes) -> Spec | None:
    spec = TABLE.get(name)
    return spec if spec is not None else TABLE.get(name.upper())


def keys_of(spec: Spec, args: list[bytes]) -> list[bytes]:
    """The key arguments of a keyed command (empty when it has too few arguments)."""
    if spec.kind is Kind.EVAL:
        if len(args) < 3 or not args[2].isdigit():
            return []
        return args[3 : 3 + int(args[2])]
    last = len(args) - 1 if spec.last < 0 else min(spec.last, len(args) - 1)
    return args[spec.first : last + 1 : spec.step]


def hash_tag(key: bytes) -> bytes:
    """The part of a key that decides its shard: the first non-empty `{...}`, as Redis does."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key
