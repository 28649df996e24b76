"""Every command a real redis-server lists in COMMAND, through redis_proxy and direct.

Each keyed command (subcommands included) is sent with keys sharing one hash tag, in one
sequence, to a redis-server directly and through mecha over two others: the replies must
be the same. Every other command must be answered by the proxy itself, forwarded (keyless:
the same reply), or refused on purpose; none may be unknown to the proxy.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hiredis
import pytest

from filters.network.redis_proxy.commands import BUILTIN, Kind, Spec
from protocols.redis.encode import encode_command
from tests.support.mecha import redis_proxy_config, run_mecha
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration

SCRIPT = "return redis.call('get', KEYS[1])"
LIBRARY = (
    "#!lua name=lib\n"
    "redis.register_function('f', function(keys, args) return redis.call('get', keys[1]) end)\n"
    "redis.register_function{function_name='fro', flags={'no-writes'},\n"
    "  callback=function(keys, args) return redis.call('get', keys[1]) end}\n"
)
SHAPE_ONLY = {"object|idletime", "xinfo|consumers", "time", "acl|genpass", "command|list",
              "command", "lolwut"}  # fmt: skip
"""Replies that differ from server to server (clocks, randomness, order): compared by type."""

INVOCATIONS = """
SET {t}s hello
GET {t}s
APPEND {t}s _world
STRLEN {t}s
GETRANGE {t}s 0 4
SUBSTR {t}s 0 4
SETRANGE {t}s 6 World
GETSET {t}s hello
SETNX {t}s2 v
SETEX {t}s3 1000 v
PSETEX {t}s4 1000000 v
GETEX {t}s2 PERSIST
GETDEL {t}s2
SET {t}n 10
INCR {t}n
DECR {t}n
INCRBY {t}n 5
DECRBY {t}n 3
INCRBYFLOAT {t}n 1.5
MSET {t}m1 a {t}m2 b
MGET {t}m1 {t}m2 {t}missing
MSETNX {t}m3 c {t}m4 d
EXISTS {t}m1 {t}m2 {t}nope
TOUCH {t}m1 {t}m2
TYPE {t}s
TTL {t}s
PTTL {t}s
EXPIRE {t}m3 100000
PERSIST {t}m3
PEXPIRE {t}m3 100000000
EXPIREAT {t}m4 4102444800
PEXPIREAT {t}m4 4102444800000
EXPIRETIME {t}m4
PEXPIRETIME {t}m4
COPY {t}s {t}scopy
RENAME {t}scopy {t}scopy2
RENAMENX {t}scopy2 {t}scopy3
DUMP {t}s
RESTORE {t}restored 0 $DUMP
LCS {t}s {t}restored
SETBIT {t}b 7 1
GETBIT {t}b 7
BITCOUNT {t}b
BITPOS {t}b 1
BITFIELD {t}b GET u8 0
BITFIELD_RO {t}b GET u8 0
BITOP OR {t}b2 {t}b {t}b
DEL {t}m1 {t}m2
UNLINK {t}m3
LPUSH {t}l a b c
LPUSHX {t}l d
RPUSH {t}l e
RPUSHX {t}l f
LLEN {t}l
LINDEX {t}l 0
LSET {t}l 0 D
LRANGE {t}l 0 -1
LINSERT {t}l BEFORE e x
LPOS {t}l x
LREM {t}l 1 x
LTRIM {t}l 0 10
LPOP {t}l
RPOP {t}l
RPOPLPUSH {t}l {t}l2
LMOVE {t}l {t}l2 LEFT RIGHT
LMPOP 2 {t}l {t}l2 LEFT
RPUSH {t}sortme 3 1 2
MSET {t}w_1 30 {t}w_2 20 {t}w_3 10
SORT {t}sortme
SORT_RO {t}sortme DESC
SORT {t}sortme STORE {t}sorted
SORT {t}sortme BY {t}w_* GET # GET {t}w_*
HSET {t}h f1 v1 f2 v2
HSETNX {t}h f3 v3
HMSET {t}h f4 v4
HGET {t}h f1
HMGET {t}h f1 f2 nope
HDEL {t}h f4
HLEN {t}h
HSTRLEN {t}h f1
HEXISTS {t}h f1
HKEYS {t}h
HVALS {t}h
HGETALL {t}h
HINCRBY {t}h n 1
HINCRBYFLOAT {t}h fl 1.5
HSCAN {t}h 0
HSET {t}h1 only one
HRANDFIELD {t}h1
SADD {t}S 1 2 3
SADD {t}S2 2 3 4
SREM {t}S 9
SCARD {t}S
SISMEMBER {t}S 1
SMISMEMBER {t}S 1 9
SMEMBERS {t}S
SSCAN {t}S 0
SINTER {t}S {t}S2
SUNION {t}S {t}S2
SDIFF {t}S {t}S2
SINTERSTORE {t}S3 {t}S {t}S2
SUNIONSTORE {t}S4 {t}S {t}S2
SDIFFSTORE {t}S5 {t}S {t}S2
SINTERCARD 2 {t}S {t}S2
SMOVE {t}S {t}S2 1
SADD {t}S1 7
SRANDMEMBER {t}S1
SPOP {t}S1
ZADD {t}z 1 a 2 b 3 c
ZADD {t}z2 1 a 5 d
ZINCRBY {t}z 1 a
ZREM {t}z nope
ZCARD {t}z
ZCOUNT {t}z 0 10
ZSCORE {t}z a
ZMSCORE {t}z a b
ZRANK {t}z b
ZREVRANK {t}z b
ZRANGE {t}z 0 -1 WITHSCORES
ZRANGEBYSCORE {t}z 0 10
ZREVRANGE {t}z 0 -1
ZREVRANGEBYSCORE {t}z 10 0
ZRANGEBYLEX {t}z - +
ZREVRANGEBYLEX {t}z + -
ZLEXCOUNT {t}z - +
ZRANGESTORE {t}z3 {t}z 0 -1
ZUNION 2 {t}z {t}z2
ZINTER 2 {t}z {t}z2
ZDIFF 2 {t}z {t}z2
ZUNIONSTORE {t}z4 2 {t}z {t}z2
ZINTERSTORE {t}z5 2 {t}z {t}z2
ZDIFFSTORE {t}z6 2 {t}z {t}z2
ZINTERCARD 2 {t}z {t}z2
ZSCAN {t}z 0
ZPOPMIN {t}z3
ZPOPMAX {t}z3
ZMPOP 2 {t}z3 {t}z4 MIN
ZREMRANGEBYRANK {t}z4 0 0
ZREMRANGEBYSCORE {t}z4 0 1
ZREMRANGEBYLEX {t}z5 - +
ZADD {t}z1 1 only
ZRANDMEMBER {t}z1
PFADD {t}p a b c
PFADD {t}p2 c d
PFCOUNT {t}p {t}p2
PFMERGE {t}p3 {t}p {t}p2
GEOADD {t}g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
GEODIST {t}g Palermo Catania km
GEOHASH {t}g Palermo
GEOPOS {t}g Palermo
GEORADIUS {t}g 15 37 200 km
GEORADIUS {t}g 15 37 200 km STORE {t}g2
GEORADIUS_RO {t}g 15 37 200 km
GEORADIUSBYMEMBER {t}g Palermo 200 km
GEORADIUSBYMEMBER_RO {t}g Palermo 200 km
GEOSEARCH {t}g FROMMEMBER Palermo BYRADIUS 200 km
GEOSEARCHSTORE {t}g3 {t}g FROMMEMBER Palermo BYRADIUS 200 km
XADD {t}x 1-1 f v
XADD {t}x 1-2 f v2
XLEN {t}x
XRANGE {t}x - +
XREVRANGE {t}x + -
XGROUP CREATE {t}x grp 0
XGROUP CREATECONSUMER {t}x grp c1
XGROUP SETID {t}x grp 0
XREADGROUP GROUP grp c1 COUNT 10 STREAMS {t}x >
XPENDING {t}x grp
XACK {t}x grp 1-1
XCLAIM {t}x grp c2 0 1-2 JUSTID
XAUTOCLAIM {t}x grp c3 0 0-0 JUSTID
XINFO STREAM {t}x
XINFO GROUPS {t}x
XINFO CONSUMERS {t}x grp
XGROUP DELCONSUMER {t}x grp c3
XREAD COUNT 1 STREAMS {t}x 0
XDEL {t}x 1-1
XTRIM {t}x MAXLEN 10
XSETID {t}x 1-5
XGROUP DESTROY {t}x grp
OBJECT ENCODING {t}s
OBJECT FREQ {t}s
OBJECT IDLETIME {t}s
OBJECT REFCOUNT {t}s
MEMORY USAGE {t}s
EVAL $SCRIPT 1 {t}s
EVAL_RO $SCRIPT 1 {t}s
EVAL $RETURN1 0
EVALSHA $SHA 1 {t}s
EVALSHA_RO $SHA 1 {t}s
FCALL f 1 {t}s
FCALL_RO fro 1 {t}s
MULTI
SET {t}tx 1
INCR {t}tx
PING
EXEC
WATCH {t}tx
GET {t}tx
MULTI
INCR {t}tx
EXEC
WATCH {t}tx
UNWATCH
MULTI
DISCARD
RPUSH {t}bl a b c d e f
BLPOP {t}bl 0
BRPOP {t}bl 0
BLMOVE {t}bl {t}bl2 LEFT RIGHT 0
BRPOPLPUSH {t}bl {t}bl2 0
BLMPOP 0 1 {t}bl LEFT
ZADD {t}bz 1 a 2 b 3 c
BZPOPMIN {t}bz 0
BZPOPMAX {t}bz 0
BZMPOP 0 1 {t}bz MIN
XADD {t}x2 1-1 f v
XGROUP CREATE {t}x2 g2 0
XREAD BLOCK 0 STREAMS {t}x2 0
XREADGROUP GROUP g2 c BLOCK 0 STREAMS {t}x2 >
PUBLISH {t}chan hello
SPUBLISH {t}chan hello
COMMAND
COMMAND COUNT
COMMAND INFO get
COMMAND DOCS get
COMMAND GETKEYS set a b
COMMAND GETKEYSANDFLAGS set a b
COMMAND LIST
COMMAND HELP
CONFIG HELP
LATENCY HELP
MEMORY HELP
MODULE HELP
PUBSUB HELP
SLOWLOG HELP
XGROUP HELP
XINFO HELP
OBJECT HELP
ACL CAT
ACL GENPASS
ACL HELP
ACL WHOAMI
LOLWUT
TIME
PING
ECHO hi
SELECT 0
"""
"""Valid invocations, in order (later ones use what earlier ones made)."""


class Raw:
    """One connection; replies decoded by hiredis, errors as ("error", text)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def call(self, *args: bytes) -> Any:
        self.sock.sendall(encode_command(args))
        while (reply := self.reader.gets()) is False:
            data = self.sock.recv(1 << 16)
            assert data, "connection closed"
            self.reader.feed(data)
        return ("error", str(reply)) if isinstance(reply, hiredis.ReplyError) else reply


def full_name(args: list[bytes]) -> str:
    spec = BUILTIN.lookup(args[0])
    name = args[0].decode().lower()
    if spec is not None and spec.kind is Kind.CONTAINER and len(args) > 1:
        return f"{name}|{args[1].decode().lower()}"
    return name


def shape(reply: Any) -> Any:
    return type(reply).__name__ if not isinstance(reply, tuple) else reply


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports = []
        for i in range(3):
            (tmp_path / f"s{i}").mkdir()
            ports.append(stack.enter_context(redis_server(tmp_path / f"s{i}")))
        yield ports


def listed_commands(port: int) -> dict[str, list[str]]:
    """COMMAND's names: each command, and its subcommands' full names."""
    with Raw(port) as raw:
        reply = raw.call(b"COMMAND")
    return {entry[0].decode(): sorted(s[0].decode() for s in entry[9]) for entry in reply}


def effective(name: str) -> Spec:
    container, _, sub = name.partition("|")
    spec = BUILTIN.lookup(container.encode())
    assert spec is not None, f"{name}: unknown to the proxy"
    if sub and spec.kind is Kind.CONTAINER:
        found = spec.subcommands.get(sub.encode())
        assert found is not None, f"{name}: unknown subcommand to the proxy"
        return found
    return spec


def test_every_listed_command_is_answered_as_direct_or_refused_on_purpose(
    tmp_path: Path, servers: list[int]
) -> None:
    direct_port, *shards = servers
    for port in servers:  # (loading scripts and functions is refused through the proxy)
        with Raw(port) as raw:
            sha = raw.call(b"SCRIPT", b"LOAD", SCRIPT.encode())
            assert raw.call(b"FUNCTION", b"LOAD", LIBRARY.encode()) == b"lib"
    with (
        run_mecha(tmp_path, redis_proxy_config(shards)) as mecha,
        Raw(direct_port) as direct,
        Raw(mecha.port("redis")) as proxied,
    ):
        tag = tag_on(proxied, shards[1])  # not the first endpoint, where keyless ones go
        answered = walk(
            direct,
            proxied,
            tag,
            {b"$SCRIPT": SCRIPT.encode(), b"$SHA": sha, b"$RETURN1": b"return 1"},
        )
        refused = refusals(proxied, listed_commands(direct_port))
        assert "learned 240 commands from the upstream" in mecha.logs()
        local_or_other = {n for n in flatten(listed_commands(direct_port))
                          if n not in answered and n not in refused}  # fmt: skip
        kinds = Counter(effective(n).kind for n in local_or_other)
        pinned = sum(kinds.pop(k, 0) for k in (Kind.TRANSACTION, Kind.BLOCKING))
        assert pinned == 0, "every transaction and blocking command is walked"
        subscribing = kinds.pop(Kind.PUBSUB, 0)  # (test_redis_pinned.py subscribes)
        table = {"answered as direct": len(answered), "refused on purpose": len(refused),
                 "subscribed mode": subscribing,
                 "answered by the proxy": kinds.pop(Kind.LOCAL, 0),
                 "unknown": sum(kinds.values())}  # fmt: skip
        print("\ncoverage of COMMAND through redis_proxy:")
        for row, count in table.items():
            print(f"  {row:<24} {count:>4}")
        assert table["unknown"] == 0, kinds
        keyed = {n for n in flatten(listed_commands(direct_port))
                 if effective(n).kind in (Kind.KEYED, Kind.SPLIT, Kind.TRANSACTION,
                                          Kind.BLOCKING)}  # fmt: skip
        assert keyed <= set(answered), f"keyed commands never sent: {sorted(keyed - set(answered))}"


def tag_on(proxied: Raw, port: int) -> bytes:
    """A hash tag whose keys the proxy puts on the shard at `port`."""
    with Raw(port) as shard:
        for i in range(100):
            tag = b"{tag%d}" % i
            assert proxied.call(b"SET", tag + b"probe", b"1") == b"OK"
            on_shard = shard.call(b"EXISTS", tag + b"probe")
            assert proxied.call(b"DEL", tag + b"probe") == 1
            if on_shard:
                return tag
    raise AssertionError("no tag lands on the second shard")


def walk(direct: Raw, proxied: Raw, tag: bytes, values: dict[bytes, bytes]) -> set[str]:
    answered: set[str] = set()
    errors: list[str] = []
    for line in INVOCATIONS.strip().splitlines():
        words = line.encode().replace(b"{t}", tag).split()
        args = [values.get(word, word) for word in words]
        name = full_name(args)
        expected, got = direct.call(*args), proxied.call(*args)
        if name == "dump":
            values[b"$DUMP"] = expected
        if isinstance(expected, tuple):
            errors.append(line)
        if name in SHAPE_ONLY:
            expected, got = shape(expected), shape(got)
        assert got == expected, f"{line}: direct {expected!r:.200}, through the proxy {got!r:.200}"
        if effective(name).kind is not Kind.LOCAL:
            answered.add(name)
    # Valid invocations: the only error is the one Redis gives for OBJECT FREQ without an
    # LFU maxmemory-policy (the same through the proxy).
    assert errors == ["OBJECT FREQ {t}s"], errors
    return answered


def flatten(listed: dict[str, list[str]]) -> list[str]:
    return [n for name, subs in listed.items() for n in (subs or [name])]


def refusals(proxied: Raw, listed: dict[str, list[str]]) -> set[str]:
    """The commands the proxy refuses, each sent once: the refusal must say so."""
    refused = set()
    for name in flatten(listed):
        if effective(name).kind is not Kind.REFUSED:
            continue
        reply = proxied.call(*(part.encode() for part in name.split("|")))
        assert isinstance(reply, tuple) and "not supported by the proxy" in reply[1], (name, reply)
        refused.add(name)
    return refused
